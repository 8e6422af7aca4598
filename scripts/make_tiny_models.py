#!/usr/bin/env python
"""Make the tiny test models of aiida-lifdiff: training data, a MACE model and a DeePMD model.

What it produces (in ``tests/data/models/`` unless ``--out`` says otherwise):

- ``lif-classical-train.extxyz`` / ``lif-classical-test.extxyz``: LiF with one interstitial Li
  (2x2x2 + 1 = 65 atoms; the test file also holds a few 3x3x3 + 1 = 217-atom and perfect
  64-atom frames as transfer checks) sampled from Tosi-Fumi MD in LAMMPS at 300-1200 K plus
  rattled and strained frames, each labelled by
  a LAMMPS single point with the same Tosi-Fumi potential (born/coul/long, 8 A cutoff, Ewald
  1e-7). Keys: ``energy`` (eV, total), ``forces`` (eV/A), ``stress`` (eV/A^3, ASE sign
  convention: -pressure tensor, 6 Voigt components) written through ASE's SinglePointCalculator,
  so ASE, dpdata (``ase/structure``) and ``mace_run_train --energy_key=energy
  --forces_key=forces --stress_key=stress`` read them. Per-frame info: ``config_type``
  (md / rattled / strained / perfect), ``temperature_K`` (MD frames), ``repeat``.
- ``tiny-mace.model``: ``mace_run_train`` from scratch (ScaleShiftMACE, 16x0e, max_L 0,
  r_max 4.5, 2 interactions, float32; E0s from static Tosi-Fumi energies, see
  :func:`reference_energies`), the exact command is :func:`mace_command`.
- ``tiny-deepmd.pb``: ``dp --tf train`` + ``dp --tf freeze`` of an se_e2_a model (rcut 4.5,
  neurons [8, 16], fitting [32, 32], the same E0s as ``atom_ener``), input in :func:`deepmd_input`.
- ``manifest.json`` (settings, timings, errors, sha256 of every file) and ``README.md``
  (the same for people).

How long, on 2 CPU cores: ~30 s of LAMMPS for the data; MACE ~3 min (24 epochs of ~7 s on
free cores; 17 min when the cores were shared); DeePMD ~2-3 min (20000 steps + freeze);
~5 min of checks (test errors, MD stability and speed, plugin loading). Scratch
files go to ``build/tiny_models/`` (``--workdir``). Fixed seeds throughout; LAMMPS and the
trainers are deterministic for a given machine and thread count, so reruns give the same
labels and, up to floating-point reduction order, the same models (the sha256 recorded in
README.md identifies the files actually shipped).

Usage::

    python scripts/make_tiny_models.py                 # everything
    python scripts/make_tiny_models.py --stage data    # or mace / deepmd / report
    python scripts/make_tiny_models.py --stage readme  # README.md from manifest.json only

Needs: the project venv (lammps[mpi]==2025.7.22.2.0, mace-torch, deepmd-kit[cpu,lmp]==3.2.0)
and ``dpdata`` (extxyz -> DeePMD npy; ``pip install dpdata``, 1.1.0 was used).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiida_lifdiff.engines import lammps_labels  # noqa: E402
from aiida_lifdiff.engines.lammps_input import (  # noqa: E402
    INPUT_FILE,
    TRAJECTORY_FILE,
    lammps_command,
    md_input_script,
    write_data_file,
)
from aiida_lifdiff.engines.lammps_output import read_dump  # noqa: E402
from aiida_lifdiff.potentials.classical import TOSI_FUMI_LIF, lammps_potential_lines  # noqa: E402
from aiida_lifdiff.potentials.deepmd import (  # noqa: E402
    lammps_deepmd_command,
    lammps_deepmd_environment,
)
from aiida_lifdiff.potentials.deepmd import lammps_potential_lines as deepmd_lammps_lines  # noqa: E402
from aiida_lifdiff.structures import build_lif_supercell  # noqa: E402

SPECIES = ["Li", "F"]
LATTICE_CONSTANT = 4.03
SEED = 20240611

TRAIN_FILE = "lif-classical-train.extxyz"
TEST_FILE = "lif-classical-test.extxyz"
MACE_FILE = "tiny-mace.model"
DEEPMD_FILE = "tiny-deepmd.pb"
MANIFEST_FILE = "manifest.json"

#: Label settings (see aiida_lifdiff.engines.lammps_labels): tighter than the MD default so that the
#: labels' own error (~1e-7 relative in the reciprocal-space forces) is far below any model error.
LABEL_CUTOFF = lammps_labels.DEFAULT_CUTOFF
LABEL_EWALD_ACCURACY = lammps_labels.DEFAULT_KSPACE_ACCURACY

#: MD sampling of the 65-atom cell: (temperature K, frames); one frame every 100 fs after 2 ps.
MD_PLAN_2 = [(300, 40), (500, 45), (700, 45), (900, 45), (1100, 45), (1200, 40)]
#: MD of the perfect 64-atom crystal, TEST ONLY: a transfer check of the E0s (see README: adding
#: such neutral frames to the training set made both models' energies worse).
MD_PLAN_PERFECT = [(300, 3), (1100, 3)]
#: A few 217-atom frames, for the test file only (see README: finite-size Ewald term).
MD_PLAN_3 = [(600, 6), (1000, 6)]
MD_STRIDE = 100
MD_EQUILIBRATION = 2000
N_RATTLED = 45
N_STRAINED = 45
N_TRAIN = 300

MACE_NAME = "tiny-mace"
#: The exact ``mace_run_train`` command (run in the work directory, paths relative to it).
MACE_COMMAND = [
    "mace_run_train",
    f"--name={MACE_NAME}",
    "--model=ScaleShiftMACE",
    f"--train_file={TRAIN_FILE}",
    "--valid_fraction=0.1",
    f"--test_file={TEST_FILE}",
    "--energy_key=energy",
    "--forces_key=forces",
    "--stress_key=stress",
    "--hidden_irreps=16x0e",
    "--max_L=0",
    "--correlation=2",
    "--r_max=4.5",
    "--max_ell=2",
    "--num_radial_basis=6",
    "--num_interactions=2",
    "--MLP_irreps=16x0e",
    "--radial_MLP=[32,32]",
    "--loss=weighted",
    "--energy_weight=1.0",
    "--forces_weight=100.0",
    "--batch_size=5",
    "--valid_batch_size=20",
    "--lr=0.01",
    "--max_num_epochs=24",
    "--scheduler_patience=3",
    "--patience=50",
    "--eval_interval=4",
    "--ema",
    "--ema_decay=0.99",
    "--swa",
    "--start_swa=18",
    "--swa_lr=0.001",
    "--swa_energy_weight=100.0",
    "--swa_forces_weight=100.0",
    "--default_dtype=float32",
    "--device=cpu",
    "--seed=7",
    "--save_cpu",
    "--num_workers=0",
    "--plot=False",
]

DEEPMD_STEPS = 20000
DEEPMD_RCUT = 4.5
DEEPMD_RCUT_SMTH = 0.5


def log(message: str) -> None:
    print(f"[make_tiny_models {time.strftime('%H:%M:%S')}] {message}", flush=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_lammps(workdir: Path, script: str) -> str:
    command, env = lammps_command()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / INPUT_FILE).write_text(script)
    process = subprocess.run(
        [*command, "-in", INPUT_FILE], cwd=workdir, env=env, capture_output=True, text=True, check=False
    )
    if process.returncode != 0:
        raise RuntimeError(f"LAMMPS failed in {workdir}:\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}")
    return process.stdout


# ----------------------------------------------------------------------------------------- data


def sample_md(
    workdir: Path, repeat: int, temperature: float, n_frames: int, seed: int, site: str = "tetrahedral"
) -> list[Atoms]:
    """Frames of Tosi-Fumi NVT MD started from the interstitial at ``site`` (``'none'``: perfect crystal)."""
    atoms = build_lif_supercell(repeat, LATTICE_CONSTANT, site)
    config_type = "perfect" if site == "none" else "md"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "structure.data").write_text(write_data_file(atoms, SPECIES, TOSI_FUMI_LIF["charges"]))
    script = md_input_script(
        potential_lines=lammps_potential_lines(TOSI_FUMI_LIF, SPECIES),
        species_order=SPECIES,
        temperature_K=float(temperature),
        timestep_fs=1.0,
        n_steps=n_frames * MD_STRIDE,
        equilibration_steps=MD_EQUILIBRATION,
        seed=seed,
        dump_stride=MD_STRIDE,
        thermo_stride=MD_STRIDE,
    )
    run_lammps(workdir, script)
    _, positions, _, cells = read_dump(workdir / TRAJECTORY_FILE)
    frames = []
    # Frame 0 is the end of equilibration; frames 1..n are the samples.
    for position, cell in zip(positions[1:], cells[1:]):
        frame = Atoms(atoms.get_chemical_symbols(), positions=position, cell=cell, pbc=True)
        frame.wrap()
        frame.info.update(config_type=config_type, temperature_K=float(temperature), repeat=repeat)
        frames.append(frame)
    if len(frames) != n_frames:
        raise RuntimeError(f"expected {n_frames} MD frames at {temperature} K, got {len(frames)}")
    return frames


def _far_enough(atoms: Atoms, position: np.ndarray, minimum: float) -> bool:
    probe = atoms.copy()
    probe.append("Li")
    probe.positions[-1] = position
    return bool(probe.get_distances(len(probe) - 1, range(len(atoms)), mic=True).min() >= minimum)


def rattled_frames(rng: np.random.Generator, count: int) -> list[Atoms]:
    """The interstitial at a random open position (>= 1.55 A from every ion) in a rattled lattice.

    Covers configurations MD visits rarely at these temperatures (interstitial near the
    face site, compressed Li-Li and Li-F contacts) so that neither model extrapolates there.
    """
    frames = []
    perfect = build_lif_supercell(2, LATTICE_CONSTANT, "none")
    while len(frames) < count:
        host = perfect.copy()
        host.info = {}
        if len(frames) % 3 == 0:
            # Near the face site (the hop saddle of the direct mechanism).
            target = np.array([0.0, 0.25, 0.25]) * LATTICE_CONSTANT + rng.normal(0.0, 0.25, 3)
        else:
            target = rng.uniform(0.0, 1.0, 3) @ host.cell.array
        if not _far_enough(host, target, 1.55):
            continue
        host.append("Li")
        host.positions[-1] = target
        sigma = rng.uniform(0.03, 0.12)
        host.positions += rng.normal(0.0, sigma, host.positions.shape)
        host.wrap()
        host.info.update(config_type="rattled", rattle_sigma_A=float(sigma), repeat=2)
        frames.append(host)
    return frames


def strained_frames(rng: np.random.Generator, source: list[Atoms], count: int) -> list[Atoms]:
    """MD frames under a random strain of up to +-3 % (volume and shear).

    The deformation is lower-triangular in ASE's row-vector convention so the cell stays in
    LAMMPS' restricted-triclinic form: LAMMPS then uses the same Cartesian axes as ASE and
    its forces and stress need no rotation back.
    """
    frames = []
    picks = rng.choice(len(source), size=count, replace=False)
    for pick in picks:
        frame = source[int(pick)].copy()
        deformation = np.eye(3) + np.tril(rng.uniform(-0.03, 0.03, (3, 3)))
        frame.set_cell(frame.cell.array @ deformation, scale_atoms=True)
        frame.info.update(config_type="strained", repeat=frame.info.get("repeat", 2))
        frame.info.pop("temperature_K", None)
        frames.append(frame)
    return frames


def label_frames(workdir: Path, frames: list[Atoms]) -> list[Atoms]:
    """Energy, forces and stress of every frame from LAMMPS single points (one process, a loop).

    The procedure (and the background-stress term of the charged cells) lives in
    :mod:`aiida_lifdiff.engines.lammps_labels`, shared with ``lifdiff-label``.
    """
    return lammps_labels.label_frames(
        workdir, frames, TOSI_FUMI_LIF, SPECIES, cutoff=LABEL_CUTOFF, kspace_accuracy=LABEL_EWALD_ACCURACY
    )


def reference_energies(workdir: Path) -> dict:
    """Per-element reference energies (E0s) from two static Tosi-Fumi energies at a = 4.03 A.

    With one composition in the training set (Li33F32) only 33 E0(Li) + 32 E0(F) is fixed by
    the data; a least-squares fit then splits it arbitrarily and the models' energies of any
    other composition (the 217-atom Li109F108 cell) come out off by tens of meV/atom. Here:
    E0(Li) + E0(F) = energy per LiF pair of the static perfect crystal, and
    33 E0(Li) + 32 E0(F) = energy of the 65-atom cell with the interstitial relaxed (atoms
    only, cell fixed). The models then learn thermal and configurational energies only, and
    an extra LiF pair costs what it costs in the crystal.
    """
    potential = lammps_potential_lines(
        TOSI_FUMI_LIF, SPECIES, cutoff=LABEL_CUTOFF, kspace="ewald", kspace_accuracy=LABEL_EWALD_ACCURACY
    )
    energies = {}
    for name, site, relax in (("perfect", "none", False), ("interstitial", "tetrahedral", True)):
        atoms = build_lif_supercell(2, LATTICE_CONSTANT, site)
        directory = workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "structure.data").write_text(write_data_file(atoms, SPECIES, TOSI_FUMI_LIF["charges"]))
        script = [
            "units metal",
            "atom_style charge",
            "boundary p p p",
            "read_data structure.data",
            *potential,
            "thermo_style custom step pe fmax",
        ]
        # Nudge the interstitial off the symmetric site so the minimiser finds the lowest
        # state (tetrahedral or split), not a saddle that symmetry would keep it on.
        script += (
            ["displace_atoms all random 0.01 0.01 0.01 12345", "minimize 0 1e-6 10000 100000"] if relax else ["run 0"]
        )
        script += ['print "LIFDIFF_E $(pe:%.10f) $(fmax:%.3e)"', ""]
        output = run_lammps(directory, "\n".join(script))
        line = next(line for line in output.splitlines() if line.startswith("LIFDIFF_E"))
        energies[name] = float(line.split()[1])
        energies[f"{name}_fmax_eV_per_A"] = float(line.split()[2])
    pair = energies["perfect"] / 32.0
    e0_li = energies["interstitial"] - 32.0 * pair
    return {
        "perfect_64_static_eV": energies["perfect"],
        "interstitial_65_relaxed_eV": energies["interstitial"],
        "interstitial_fmax_eV_per_A": energies["interstitial_fmax_eV_per_A"],
        "e0s": {"Li": round(e0_li, 6), "F": round(pair - e0_li, 6)},
    }


def make_data(workdir: Path, out: Path) -> dict:
    rng = np.random.default_rng(SEED)
    start = time.perf_counter()
    md2: list[Atoms] = []
    for number, (temperature, count) in enumerate(MD_PLAN_2):
        log(f"MD 2x2x2 at {temperature} K ({count} frames)")
        md2 += sample_md(workdir / f"md2_{temperature}K", 2, temperature, count, seed=1000 + number)
    perfect: list[Atoms] = []
    for number, (temperature, count) in enumerate(MD_PLAN_PERFECT):
        log(f"MD perfect 2x2x2 at {temperature} K ({count} frames)")
        perfect += sample_md(workdir / f"perfect_{temperature}K", 2, temperature, count, 3000 + number, site="none")
    md3: list[Atoms] = []
    for number, (temperature, count) in enumerate(MD_PLAN_3):
        log(f"MD 3x3x3 at {temperature} K ({count} frames)")
        md3 += sample_md(workdir / f"md3_{temperature}K", 3, temperature, count, seed=2000 + number)
    frames2 = md2 + rattled_frames(rng, N_RATTLED) + strained_frames(rng, md2, N_STRAINED)
    log(f"labelling {len(frames2) + len(perfect) + len(md3)} frames with LAMMPS single points")
    labelled = label_frames(workdir / "label", frames2 + perfect + md3)
    labelled2, labelled3 = labelled[: len(frames2)], labelled[len(frames2) :]

    order = rng.permutation(len(labelled2))
    test_ids = set(order[: len(labelled2) - N_TRAIN].tolist())
    train = [frame for i, frame in enumerate(labelled2) if i not in test_ids]
    test = [frame for i, frame in enumerate(labelled2) if i in test_ids] + labelled3
    out.mkdir(parents=True, exist_ok=True)
    write(out / TRAIN_FILE, train, format="extxyz")
    write(out / TEST_FILE, test, format="extxyz")
    references = reference_energies(workdir / "reference")
    elapsed = time.perf_counter() - start
    log(f"data: {len(train)} train, {len(test)} test frames in {elapsed:.0f} s; E0s {references['e0s']}")

    def summary(frames: list[Atoms]) -> dict:
        kinds: dict[str, int] = {}
        for frame in frames:
            key = f"{frame.info['config_type']}_{len(frame)}atoms"
            kinds[key] = kinds.get(key, 0) + 1
        return {"n_frames": len(frames), "by_type": kinds}

    return {
        "seconds": round(elapsed, 1),
        "reference_energies": references,
        "train": summary(train),
        "test": summary(test),
        "labels": {
            "potential": TOSI_FUMI_LIF["name"],
            "engine": "LAMMPS single points, pair_style born/coul/long",
            "cutoff_A": LABEL_CUTOFF,
            "kspace": f"ewald {LABEL_EWALD_ACCURACY:g}",
            "keys": {"energy": "energy (eV)", "forces": "forces (eV/A)", "stress": "stress (eV/A^3, -pressure)"},
        },
        "sampling": {
            "lattice_constant_A": LATTICE_CONSTANT,
            "md_2x2x2": MD_PLAN_2,
            "md_perfect_2x2x2": MD_PLAN_PERFECT,
            "md_3x3x3_test_only": MD_PLAN_3,
            "md_stride_fs": MD_STRIDE,
            "md_equilibration_fs": MD_EQUILIBRATION,
            "rattled": N_RATTLED,
            "strained": N_STRAINED,
            "seed": SEED,
        },
    }


# ----------------------------------------------------------------------------------------- MACE


def mace_command(e0s: dict[str, float]) -> list[str]:
    """:data:`MACE_COMMAND` with the reference energies (``--E0s``, keyed by atomic number)."""
    return [*MACE_COMMAND, f"--E0s={{3: {e0s['Li']!r}, 9: {e0s['F']!r}}}"]


def make_mace(workdir: Path, out: Path, e0s: dict[str, float]) -> dict:
    """Train :func:`mace_command` in ``workdir/mace`` and copy the stage-two model to ``out``."""
    run_dir = workdir / "mace"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    for name in (TRAIN_FILE, TEST_FILE):
        shutil.copy(out / name, run_dir / name)
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    command = mace_command(e0s)
    log("training MACE: " + " ".join(command))
    start = time.perf_counter()
    with open(run_dir / "mace_run_train.log", "w") as handle:
        subprocess.run(command, cwd=run_dir, env=env, stdout=handle, stderr=subprocess.STDOUT, check=True)
    elapsed = time.perf_counter() - start
    # With --swa the model to use is the stage-two one (energy-weighted, lower lr at the end).
    shutil.copy(run_dir / f"{MACE_NAME}_stagetwo.model", out / MACE_FILE)
    log(f"MACE trained in {elapsed:.0f} s")
    return {"command": command, "train_seconds": round(elapsed, 1), "e0s": e0s}


# --------------------------------------------------------------------------------------- DeePMD


def neighbour_counts(frames: list[Atoms], cutoff: float) -> dict[str, int]:
    """Largest number of neighbours of each species within ``cutoff`` around any atom."""
    from ase.neighborlist import neighbor_list

    largest = dict.fromkeys(SPECIES, 0)
    for frame in frames:
        first, second = neighbor_list("ij", frame, cutoff)
        symbols = np.array(frame.get_chemical_symbols())
        for species in SPECIES:
            mask = symbols[second] == species
            counts = np.bincount(first[mask], minlength=len(frame))
            largest[species] = max(largest[species], int(counts.max()))
    return largest


def deepmd_input(sel: list[int], train_systems: list[str], valid_systems: list[str], e0s: dict[str, float]) -> dict:
    """The ``dp --tf train`` input: a tiny se_e2_a model fitted to energies and forces."""
    return {
        "model": {
            "type_map": SPECIES,
            "descriptor": {
                "type": "se_e2_a",
                "rcut": DEEPMD_RCUT,
                "rcut_smth": DEEPMD_RCUT_SMTH,
                "sel": sel,
                "neuron": [8, 16],
                "axis_neuron": 4,
                "resnet_dt": False,
                "seed": 11,
            },
            # atom_ener fixes the per-type energy bias to the reference E0s (see reference_energies)
            # instead of deepmd-kit's least-squares fit, which is degenerate for one composition.
            "fitting_net": {
                "neuron": [32, 32],
                "resnet_dt": True,
                "seed": 12,
                "atom_ener": [e0s[species] for species in SPECIES],
            },
        },
        "learning_rate": {"type": "exp", "start_lr": 2e-3, "stop_lr": 1e-5, "decay_steps": 200},
        # Energies and forces only, like the MACE model (the MD is NVT).
        "loss": {
            "type": "ener",
            "start_pref_e": 0.02,
            "limit_pref_e": 2.0,
            "start_pref_f": 1000.0,
            "limit_pref_f": 1.0,
            "start_pref_v": 0.0,
            "limit_pref_v": 0.0,
        },
        "training": {
            "training_data": {"systems": train_systems, "batch_size": "auto"},
            "validation_data": {"systems": valid_systems, "batch_size": "auto", "numb_btch": 1},
            "numb_steps": DEEPMD_STEPS,
            "seed": 13,
            "disp_file": "lcurve.out",
            "disp_freq": 200,
            "save_freq": DEEPMD_STEPS,
        },
    }


def to_deepmd_npy(frames: list[Atoms], directory: Path) -> list[str]:
    """extxyz frames -> DeePMD npy systems (one per atom count) with dpdata; returns the system dirs."""
    import dpdata

    systems = dpdata.MultiSystems(type_map=SPECIES)
    for frame in frames:
        systems.append(dpdata.LabeledSystem(frame, fmt="ase/structure", type_map=SPECIES))
    if directory.exists():
        shutil.rmtree(directory)
    systems.to_deepmd_npy(str(directory))
    return sorted(str(path.parent) for path in directory.glob("*/type.raw"))


def make_deepmd(workdir: Path, out: Path, e0s: dict[str, float]) -> dict:
    run_dir = workdir / "deepmd"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    train = read(out / TRAIN_FILE, ":")
    test = read(out / TEST_FILE, ":")
    largest = neighbour_counts(train + test, DEEPMD_RCUT)
    # ~25 % headroom over the largest count seen in the data (dense hot or compressed frames).
    sel = [int(np.ceil(1.25 * largest[species] / 4.0) * 4) for species in SPECIES]
    train_systems = [os.path.relpath(path, run_dir) for path in to_deepmd_npy(train, run_dir / "train")]
    test_systems = [os.path.relpath(path, run_dir) for path in to_deepmd_npy(test, run_dir / "test")]
    (run_dir / "input.json").write_text(json.dumps(deepmd_input(sel, train_systems, test_systems, e0s), indent=2))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    log(f"training DeePMD (sel {sel} from max neighbours {largest} within {DEEPMD_RCUT} A)")
    start = time.perf_counter()
    with open(run_dir / "train.log", "w") as handle:
        subprocess.run(
            ["dp", "--tf", "train", "input.json"],
            cwd=run_dir,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=True,
        )
    train_seconds = time.perf_counter() - start
    with open(run_dir / "freeze.log", "w") as handle:
        subprocess.run(
            ["dp", "--tf", "freeze", "-o", DEEPMD_FILE],
            cwd=run_dir,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=True,
        )
    total_seconds = time.perf_counter() - start
    shutil.copy(run_dir / DEEPMD_FILE, out / DEEPMD_FILE)
    lcurve = np.genfromtxt(run_dir / "lcurve.out", names=True)
    last = {name: float(lcurve[name][-1]) for name in lcurve.dtype.names}
    log(f"DeePMD trained in {train_seconds:.0f} s (+ freeze: {total_seconds:.0f} s); lcurve end {last}")
    return {
        "command": ["dp", "--tf", "train", "input.json", "&&", "dp", "--tf", "freeze", "-o", DEEPMD_FILE],
        "input": deepmd_input(sel, ["<train systems>"], ["<test systems>"], e0s),
        "max_neighbours_in_data": largest,
        "sel": sel,
        "train_seconds": round(train_seconds, 1),
        "train_and_freeze_seconds": round(total_seconds, 1),
        "lcurve_final": last,
        "conversion": "dpdata (ase/structure -> deepmd/npy); virial = -V * stress",
    }


# --------------------------------------------------------------------------------------- report


def test_groups(frames: list[Atoms]) -> dict[str, list[Atoms]]:
    """Test frames by cell size and, for the 65-atom cell, by kind (md / rattled / strained)."""
    groups: dict[str, list[Atoms]] = {}
    for frame in frames:
        size = f"{len(frame)} atoms"
        groups.setdefault(size, []).append(frame)
        if len(frame) == 65:
            groups.setdefault(f"65 atoms, {frame.info['config_type']}", []).append(frame)
    return groups


def errors(frames: list[Atoms], predicted: list[tuple[float, np.ndarray]]) -> dict[str, float]:
    """RMSEs (meV/atom, meV/A) of predicted (energy, forces) against the frames' labels.

    ``energy_rmse_offset_removed`` drops the mean energy error first: for the 217-atom cell
    the mean is the finite-size term of the charged cell's Ewald energy (see README), which
    no local model can represent, while the spread is the model's error.
    """
    energy_error = np.array([(e - f.get_potential_energy()) / len(f) for f, (e, _) in zip(frames, predicted)])
    force_error = np.concatenate([(forces - f.get_forces()).ravel() for f, (_, forces) in zip(frames, predicted)])
    reference = np.concatenate([f.get_forces().ravel() for f in frames])
    return {
        "n_frames": len(frames),
        "energy_rmse_meV_per_atom": round(1e3 * float(np.sqrt(np.mean(energy_error**2))), 3),
        "energy_mean_error_meV_per_atom": round(1e3 * float(np.mean(energy_error)), 3),
        "energy_rmse_offset_removed_meV_per_atom": round(1e3 * float(np.std(energy_error)), 3),
        "force_rmse_meV_per_A": round(1e3 * float(np.sqrt(np.mean(force_error**2))), 2),
        "force_max_abs_error_meV_per_A": round(1e3 * float(np.abs(force_error).max()), 1),
        "force_rms_label_meV_per_A": round(1e3 * float(np.sqrt(np.mean(reference**2))), 1),
    }


def mace_calculator(path: Path):
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    from mace.calculators import MACECalculator

    return MACECalculator(model_paths=str(path), device="cpu", default_dtype="float32")


def predict_ase(calculator, frames: list[Atoms]) -> list[tuple[float, np.ndarray]]:
    results = []
    for frame in frames:
        probe = frame.copy()
        probe.calc = calculator
        results.append((float(probe.get_potential_energy()), probe.get_forces().copy()))
    return results


def predict_deepmd(path: Path, frames: list[Atoms]) -> list[tuple[float, np.ndarray]]:
    from deepmd.infer import DeepPot

    potential = DeepPot(str(path))
    type_of = {symbol: index for index, symbol in enumerate(potential.get_type_map())}
    results = []
    for frame in frames:
        types = [type_of[symbol] for symbol in frame.get_chemical_symbols()]
        energy, forces, _ = potential.eval(frame.positions.reshape(1, -1), frame.cell.array.reshape(1, -1), types)
        results.append((float(np.ravel(energy)[0]), np.asarray(forces).reshape(-1, 3)))
    return results


def model_errors(predict, train: list[Atoms], test: list[Atoms]) -> dict:
    report = {"train": errors(train, predict(train))}
    for name, frames in test_groups(test).items():
        report[f"test {name}"] = errors(frames, predict(frames))
    return report


def li_msd(positions: np.ndarray, symbols: list[str]) -> dict[str, float]:
    """Mean-square displacements (A^2) at the end of an unwrapped trajectory, F frame as reference.

    Also the number of Li that moved more than 1.4 A (more than a vibration: a hop of the
    interstitial or a knock-off of a lattice Li) and the largest F displacement (melting check).
    """
    symbols_array = np.array(symbols)
    li, fluorine = symbols_array == "Li", symbols_array == "F"
    drift = positions[:, fluorine].mean(axis=1, keepdims=True) - positions[0, fluorine].mean(axis=0)
    displacement = positions - positions[0] - drift
    final = (displacement[-1] ** 2).sum(axis=1)
    return {
        "li_msd_A2": round(float(final[li].mean()), 4),
        "f_msd_A2": round(float(final[fluorine].mean()), 4),
        "li_moved_gt_1.4A": int((np.sqrt(final[li]) > 1.4).sum()),
        "f_max_displacement_A": round(float(np.sqrt(final[fluorine]).max()), 3),
    }


def ase_md(calculator, atoms: Atoms, temperature: float, steps: int, seed: int, stride: int = 50) -> dict:
    """Langevin MD (1 fs, friction 0.01/fs) with an ASE calculator; stability and mobility figures."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    atoms = atoms.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    dynamics = Langevin(atoms, 1.0 * units.fs, temperature_K=temperature, friction=0.01 / units.fs, rng=rng)
    positions, temperatures, max_force = [atoms.positions.copy()], [], 0.0
    start = time.perf_counter()
    for _ in range(steps // stride):
        dynamics.run(stride)
        positions.append(atoms.get_positions(wrap=False).copy())
        temperatures.append(atoms.get_temperature())
        max_force = max(max_force, float(np.abs(atoms.get_forces()).max()))
    elapsed = time.perf_counter() - start
    distances = atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)]
    result = {
        "temperature_K": temperature,
        "steps": steps,
        "ms_per_step": round(1e3 * elapsed / steps, 1),
        "mean_T_K": round(float(np.mean(temperatures[len(temperatures) // 5 :])), 1),
        "max_abs_force_eV_per_A": round(max_force, 2),
        "final_min_distance_A": round(float(distances.min()), 3),
        "finite": bool(np.all(np.isfinite(atoms.positions))),
    }
    result.update(li_msd(np.array(positions), atoms.get_chemical_symbols()))
    return result


def lammps_md(
    workdir: Path, potential_lines: list[str], repeat: int, temperature: float, steps: int, deepmd: bool
) -> dict:
    """NVT MD in LAMMPS (1 fs, Nose-Hoover) from the tetrahedral interstitial; speed and mobility."""
    from aiida_lifdiff.engines.lammps_output import scan_log

    atoms = build_lif_supercell(repeat, LATTICE_CONSTANT, "tetrahedral")
    workdir.mkdir(parents=True, exist_ok=True)
    for path in workdir.glob("*"):
        if path.is_file():
            path.unlink()
    (workdir / "structure.data").write_text(write_data_file(atoms, SPECIES, TOSI_FUMI_LIF["charges"]))
    script = md_input_script(
        potential_lines=potential_lines,
        species_order=SPECIES,
        temperature_K=float(temperature),
        timestep_fs=1.0,
        n_steps=steps,
        equilibration_steps=0,
        seed=4242,
        dump_stride=50,
        thermo_stride=50,
    )
    (workdir / INPUT_FILE).write_text(script)
    command, env = lammps_deepmd_command() if deepmd else lammps_command()
    # One core, one thread: the figure to compare with MACE per core.
    env.update(OMP_NUM_THREADS="1", DP_INTRA_OP_PARALLELISM_THREADS="1", DP_INTER_OP_PARALLELISM_THREADS="1")
    start = time.perf_counter()
    process = subprocess.run(
        [*command, "-in", INPUT_FILE], cwd=workdir, env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"LAMMPS failed in {workdir}:\n{process.stdout[-2000:]}\n{process.stderr[-2000:]}")
    summary = scan_log(process.stdout)
    _, positions, _, _ = read_dump(workdir / TRAJECTORY_FILE)
    result = {
        "atoms": len(atoms),
        "temperature_K": temperature,
        "steps": steps,
        "steps_per_s": summary["steps_per_s"],
        "process_wall_s": round(wall, 1),
        "finite": bool(np.all(np.isfinite(positions))),
    }
    result.update(li_msd(positions, atoms.get_chemical_symbols()))
    return result


def plugin_loading(workdir: Path, model: Path) -> dict:
    """Which LAMMPS launches load deepmd-kit's plugin, and how long each takes to start."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, workdir / DEEPMD_FILE)
    atoms = build_lif_supercell(2, LATTICE_CONSTANT, "tetrahedral")
    (workdir / "structure.data").write_text(write_data_file(atoms, SPECIES, TOSI_FUMI_LIF["charges"]))
    (workdir / INPUT_FILE).write_text(
        "\n".join(
            ["units metal", "atom_style charge", "boundary p p p", "read_data structure.data"]
            + deepmd_lammps_lines(DEEPMD_FILE, SPECIES)
            + ["run 0", ""]
        )
    )
    raw, raw_env = lammps_command()
    extra = lammps_deepmd_environment()
    base = {key: value for key, value in raw_env.items() if key != "LAMMPS_PLUGIN_PATH"}
    tensorflow_only = os.pathsep.join(
        [path for path in extra["LD_LIBRARY_PATH"].split(os.pathsep) if path.endswith("tensorflow")]
        + [base.get("LD_LIBRARY_PATH", "")]
    )
    cases = {
        "raw lmp, LD_LIBRARY_PATH=<prefix>/lib only": (raw, base),
        "raw lmp + LAMMPS_PLUGIN_PATH": (raw, dict(base, LAMMPS_PLUGIN_PATH=extra["LAMMPS_PLUGIN_PATH"])),
        "raw lmp + LAMMPS_PLUGIN_PATH + tensorflow dir on LD_LIBRARY_PATH": (
            raw,
            dict(base, LAMMPS_PLUGIN_PATH=extra["LAMMPS_PLUGIN_PATH"], LD_LIBRARY_PATH=tensorflow_only),
        ),
        "raw lmp + lammps_deepmd_environment()": (
            raw,
            dict(
                base,
                LAMMPS_PLUGIN_PATH=extra["LAMMPS_PLUGIN_PATH"],
                LD_LIBRARY_PATH=extra["LD_LIBRARY_PATH"] + os.pathsep + base.get("LD_LIBRARY_PATH", ""),
            ),
        ),
        "lmp console script (no extra variables)": (
            [shutil.which("lmp") or "lmp"],
            {key: value for key, value in os.environ.items() if key != "LAMMPS_PLUGIN_PATH"},
        ),
    }
    report = {}
    for name, (command, env) in cases.items():
        start = time.perf_counter()
        process = subprocess.run(
            [*command, "-in", INPUT_FILE], cwd=workdir, env=env, capture_output=True, text=True, check=False
        )
        output = process.stdout + process.stderr
        error = next((line.strip() for line in output.splitlines() if line.startswith("ERROR")), None)
        report[name] = {
            "works": process.returncode == 0 and error is None,
            "seconds": round(time.perf_counter() - start, 1),
            "error": error[:160] if error else None,
        }
    return report


def mace_epoch_seconds(log_path: Path) -> dict:
    """Seconds per epoch from the time stamps of mace_run_train's validation lines (every eval_interval)."""
    from datetime import datetime

    stamps = []
    for line in log_path.read_text().splitlines():
        if " INFO: Epoch " in line:
            epoch = int(line.split(" INFO: Epoch ")[1].split(":")[0])
            stamps.append((epoch, datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")))
    rates = [
        (later - earlier).total_seconds() / (later_epoch - epoch)
        for (epoch, earlier), (later_epoch, later) in zip(stamps, stamps[1:])
    ]
    if not rates:
        return {}
    return {"min": round(min(rates), 1), "median": round(float(np.median(rates)), 1), "max": round(max(rates), 1)}


def make_report(workdir: Path, out: Path) -> dict:
    import torch

    report: dict = {"torch_threads": torch.get_num_threads()}
    mace_log = workdir.parent / "mace" / "mace_run_train.log"
    if mace_log.exists():
        report["mace_seconds_per_epoch"] = mace_epoch_seconds(mace_log)
    train = read(out / TRAIN_FILE, ":")
    test = read(out / TEST_FILE, ":")

    log("MACE errors")
    mace = mace_calculator(out / MACE_FILE)
    report["mace_parameters"] = int(sum(parameter.numel() for parameter in mace.models[0].parameters()))
    report["mace_errors"] = model_errors(lambda frames: predict_ase(mace, frames), train, test)
    log("DeePMD errors")
    report["deepmd_errors"] = model_errors(lambda frames: predict_deepmd(out / DEEPMD_FILE, frames), train, test)

    log("MACE MD speed")
    speed = {}
    for repeat in (2, 3):
        atoms = build_lif_supercell(repeat, LATTICE_CONSTANT, "tetrahedral")
        for threads in (1, 2):
            torch.set_num_threads(threads)
            run = ase_md(mace, atoms, 300.0, 40, seed=1, stride=20)
            speed[f"{len(atoms)} atoms, {threads} thread(s)"] = run["ms_per_step"]
    torch.set_num_threads(report["torch_threads"])
    report["mace_ms_per_step"] = speed

    log("MD checks: MACE (ASE), DeePMD and Tosi-Fumi (LAMMPS)")
    cell = build_lif_supercell(2, LATTICE_CONSTANT, "tetrahedral")
    report["mace_md"] = [ase_md(mace, cell, temperature, 2000, seed=11) for temperature in (500.0, 900.0)]
    deepmd_lines = deepmd_lammps_lines(str(out / DEEPMD_FILE), SPECIES)
    classical_lines = lammps_potential_lines(TOSI_FUMI_LIF, SPECIES)
    report["deepmd_lammps_md"] = []
    report["classical_lammps_md"] = []
    for temperature in (500.0, 900.0):
        report["deepmd_lammps_md"].append(
            lammps_md(workdir / "md_deepmd", deepmd_lines, 2, temperature, 3000, deepmd=True)
        )
        report["classical_lammps_md"].append(
            lammps_md(workdir / "md_classical", classical_lines, 2, temperature, 3000, deepmd=False)
        )
    report["deepmd_lammps_speed"] = [
        lammps_md(workdir / "speed_deepmd", deepmd_lines, repeat, 900.0, 1000, deepmd=True) for repeat in (2, 3)
    ]
    log("plugin loading")
    report["plugin_loading"] = plugin_loading(workdir / "plugin", out / DEEPMD_FILE)
    return report


# ------------------------------------------------------------------------------------ manifest


def load_manifest(out: Path) -> dict:
    path = out / MANIFEST_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def save_manifest(out: Path, manifest: dict) -> None:
    manifest["files"] = {
        path.name: {"bytes": path.stat().st_size, "sha256": sha256(path)}
        for path in sorted(out.iterdir())
        if path.name not in (MANIFEST_FILE, "README.md") and path.is_file()
    }
    manifest["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    write_readme(out, manifest)


def _table(rows: list[list], header: list[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _error_rows(report: dict) -> list[list]:
    rows = []
    for name, values in report.items():
        rows.append(
            [
                name,
                values["n_frames"],
                values["energy_rmse_meV_per_atom"],
                values["energy_rmse_offset_removed_meV_per_atom"],
                values["force_rmse_meV_per_A"],
                values["force_max_abs_error_meV_per_A"],
                values["force_rms_label_meV_per_A"],
            ]
        )
    return rows


ERROR_HEADER = [
    "frames",
    "n",
    "E RMSE (meV/atom)",
    "E RMSE, mean offset removed",
    "F RMSE (meV/A)",
    "max abs F error (meV/A)",
    "RMS of F labels (meV/A)",
]


def write_readme(out: Path, manifest: dict) -> None:
    """README.md from the manifest: what each file is, how it was made, what it achieves."""
    data, mace, deepmd, report = (manifest.get(key, {}) for key in ("data", "mace", "deepmd", "report"))
    files = manifest.get("files", {})
    lines = [
        "# Tiny LiF models for tests and the CPU demo",
        "",
        "Made by `python scripts/make_tiny_models.py` (all stages; `--stage data|mace|deepmd|report` for one).",
        "Everything below is generated from `manifest.json` by that script: do not edit by hand, rerun it.",
        "A changed file must come with a rerun: `tests/test_tiny_models.py` compares the sha256 sums at",
        "the end of this file with the files.",
        "",
        "| file | bytes | what |",
        "|---|---|---|",
        f"| `{TRAIN_FILE}` | {files.get(TRAIN_FILE, {}).get('bytes')} | training frames, Tosi-Fumi labels |",
        f"| `{TEST_FILE}` | {files.get(TEST_FILE, {}).get('bytes')} | held-out frames: 65 atoms; 64 (perfect) and 217 "
        "atoms as transfer checks |",
        f"| `{MACE_FILE}` | {files.get(MACE_FILE, {}).get('bytes')} | MACE model (`torch.save` of the module, "
        "float32, CPU), load with `mace.calculators.MACECalculator(model_paths=..., default_dtype='float32')` |",
        f"| `{DEEPMD_FILE}` | {files.get(DEEPMD_FILE, {}).get('bytes')} | DeePMD se_e2_a model frozen with "
        "`dp --tf freeze` (TensorFlow graph) for `pair_style deepmd` and `deepmd.calculator.DP` |",
        f"| `{MANIFEST_FILE}` | - | every setting, timing and error below, machine readable |",
        "",
        "These are TOY models of a classical potential, small enough to train in minutes and run",
        "MD on a laptop CPU. They exist to test the machinery (training CalcJobs, MD engines, the",
        "Arrhenius analysis) against a known reference; they are not LiF physics.",
        "",
        "## Data",
        "",
    ]
    if data:
        sampling = data["sampling"]
        lines += [
            "LiF rock salt with one interstitial Li (start: tetrahedral site), a = "
            f"{sampling['lattice_constant_A']} A. Frames:",
            "",
            f"- Tosi-Fumi NVT MD in LAMMPS (1 fs, Nose-Hoover chain), 2x2x2 + 1 = 65 atoms at (T K, frames) "
            f"{sampling['md_2x2x2']}, one frame every {sampling['md_stride_fs']} fs after "
            f"{sampling['md_equilibration_fs']} fs;",
            f"- the perfect crystal (2x2x2 = 64 atoms, Li32F32) in MD at (T K, frames) "
            f"{sampling['md_perfect_2x2x2']}: TEST ONLY, checks the E0s (below);",
            f"- {sampling['rattled']} rattled frames: perfect lattice with the interstitial at a random open "
            "position (every third one near the face-centre hop saddle), Gaussian rattle 0.03-0.12 A;",
            f"- {sampling['strained']} strained frames: MD frames under a random lower-triangular strain "
            "of up to +-3 %;",
            f"- 3x3x3 + 1 = 217 atoms MD at (T K, frames) {sampling['md_3x3x3_test_only']}: TEST ONLY.",
            "",
            f"Split (seed {sampling['seed']}): train {data['train']['by_type']}, test {data['test']['by_type']}.",
            "",
            "Labels: LAMMPS single points of every frame (one LAMMPS process, `clear` + `read_data` per "
            f"frame) with the project's Tosi-Fumi lines: `born/coul/long` {data['labels']['cutoff_A']} A, "
            f"`kspace_style {data['labels']['kspace']}`. Keys (ASE SinglePointCalculator, read by ASE, "
            "dpdata `ase/structure` and `mace_run_train --energy_key=energy --forces_key=forces "
            "--stress_key=stress`):",
            "",
            "- `energy`: total potential energy (eV);",
            "- `forces`: eV/A;",
            "- `stress`: eV/A^3, ASE convention (= -pressure, Voigt xx yy zz yz xz xy). It is LAMMPS'",
            "  virial PLUS the isotropic term of the neutralising background, pi Q^2 k_e / (2 g^2 V^2),",
            "  which LAMMPS' Ewald energy contains but its virial does not: with it the stress is the",
            "  strain derivative of `energy` (finite differences agree to ~4e-5 eV/A^3, LAMMPS' own",
            "  level for a neutral cell; without it they differ by ~3.5e-4 eV/A^3 = 0.06 GPa).",
            "",
            "The interstitial cell has net charge +1 (the extra Li+): LAMMPS' Ewald sum adds a uniform",
            "neutralising background and its energy, so the energies of charged cells contain a",
            "finite-size term (Madelung-like, ~1/L) and the Coulomb energy of every ion in the",
            "defect's field, which no local model can learn in general. All TRAINING frames therefore",
            "have the same cell and charge (65 atoms, 8.06 A, +1), which keeps the labels consistent:",
            "the models absorb those terms into the interstitial's surroundings. Neutral perfect-crystal",
            "frames were tried in the training set (30 and 60 of 300) and made things worse: energy",
            "RMSE 3-5 meV/atom instead of <1, with the perfect frames off by 7-15 meV/atom, because the",
            "same local geometry then has two energies (with and without the defect's field nearby).",
            "The 64-atom perfect and 217-atom test frames show the transfer to another composition",
            "and size: their mean energy error per atom is the non-local part (plus E0 error), the",
            "spread after removing it is the model error (column 'mean offset removed').",
            "",
            "E0s (MACE `--E0s`, DeePMD `fitting_net.atom_ener`, the same numbers): NOT isolated-atom"
            " energies and NOT a least-squares fit, which with one composition fixes only"
            " 33 E0(Li) + 32 E0(F) and split it arbitrarily (first attempt: the 217-atom Li109F108"
            " cell came out 17 (MACE) and 33 (DeePMD) meV/atom off). Instead, from two static"
            " Tosi-Fumi energies at a = 4.03 A: E0(Li) + E0(F) = energy per LiF pair of the perfect"
            " crystal, 33 E0(Li) + 32 E0(F) = the 65-atom cell with the interstitial relaxed: "
            f"{data.get('reference_energies')}. The models learn thermal and configurational"
            " energies on top; an extra LiF pair costs what it costs in the crystal.",
            "",
            f"Data generation took {data['seconds']} s.",
            "",
        ]
    if mace:
        lines += [
            "## MACE",
            "",
            "Trained from scratch with the real CLI (float32, CPU), in a directory holding the two extxyz files:",
            "",
            "```",
            " \\\n    ".join(shlex.quote(part) for part in mace["command"]),
            "```",
            "",
            f"The shipped file is the stage-two (SWA) model `tiny-mace_stagetwo.model` renamed. Training took "
            f"{mace['train_seconds']} s wall time on the 2-core machine shared with other jobs; seconds per "
            f"epoch (min/median/max over the validation intervals): {report.get('mace_seconds_per_epoch')}. "
            f"Parameters: {report.get('mace_parameters', '?')}.",
            "",
        ]
        if "mace_errors" in report:
            lines += _table(_error_rows(report["mace_errors"]), ERROR_HEADER) + [""]
    if deepmd:
        descriptor = deepmd["input"]["model"]["descriptor"]
        lines += [
            "## DeePMD",
            "",
            "```",
            "dp --tf train input.json && dp --tf freeze -o tiny-deepmd.pb",
            "```",
            "",
            f"se_e2_a, rcut {descriptor['rcut']} A (rcut_smth {descriptor['rcut_smth']}), embedding "
            f"{descriptor['neuron']}, axis_neuron {descriptor['axis_neuron']}, fitting "
            f"{deepmd['input']['model']['fitting_net']['neuron']}, float64; "
            f"{deepmd['input']['training']['numb_steps']} steps, batch auto (1 frame of 65 atoms), lr "
            f"{deepmd['input']['learning_rate']['start_lr']} -> {deepmd['input']['learning_rate']['stop_lr']}; "
            "loss on energies and forces only (start/limit prefactors e 0.02/2, f 1000/1, v 0).",
            f"sel = {deepmd['sel']}: the largest number of Li / F neighbours within rcut over all frames is "
            f"{deepmd['max_neighbours_in_data']} (a perfect 4.03 A lattice has 28 + 28 within 4.5 A: the "
            "fifth shell at 4.51 A is just outside), plus ~25 % headroom.",
            f"Data conversion: {deepmd['conversion']}. Training took {deepmd['train_seconds']} s "
            f"({deepmd['train_and_freeze_seconds']} s with freeze). Final lcurve (eV/atom, eV/A; validation "
            f"= one random test frame per line): {deepmd['lcurve_final']}.",
            "",
        ]
        if "deepmd_errors" in report:
            lines += _table(_error_rows(report["deepmd_errors"]), ERROR_HEADER) + [""]
    if report:
        lines += [
            "## MD checks (65 atoms, 1 fs, from the tetrahedral interstitial)",
            "",
            "LAMMPS runs: 3 ps NVT (Nose-Hoover); MACE: 2 ps Langevin (friction 0.01/fs) in ASE. Li/F MSD",
            "(A^2) at the end, F sublattice as reference frame; 'Li moved' = Li displaced by more than",
            "1.4 A (interstitial hops and knock-offs). One short run each: MSDs are noisy to a factor of",
            "~2 or more; they show that the interstitial moves and nothing melts, not a diffusion coefficient.",
            "",
        ]
        rows = []
        for engine, key in (
            ("Tosi-Fumi, LAMMPS", "classical_lammps_md"),
            ("DeePMD, LAMMPS", "deepmd_lammps_md"),
            ("MACE, ASE Langevin", "mace_md"),
        ):
            for run in report.get(key, []):
                rows.append(
                    [
                        engine,
                        run["temperature_K"],
                        run["li_msd_A2"],
                        run["f_msd_A2"],
                        run["li_moved_gt_1.4A"],
                        run["f_max_displacement_A"],
                        run.get("finite"),
                    ]
                )
        lines += _table(rows, ["engine", "T (K)", "Li MSD", "F MSD", "Li moved", "max F displacement (A)", "finite"])
        lines += [
            "",
            "## Speed",
            "",
            f"MACE, ASE calculator (float32, CPU), ms per MD step: {report.get('mace_ms_per_step')}.",
            "",
            "DeePMD in LAMMPS (raw binary, 1 MPI rank, OMP_NUM_THREADS = DP_INTRA/INTER_OP_PARALLELISM_THREADS"
            " = 1): "
            + ", ".join(
                f"{run['atoms']} atoms: {run['steps_per_s']} steps/s" for run in report.get("deepmd_lammps_speed", [])
            )
            + ".",
            "",
            "The machine (2 cores) was shared with other jobs while these were measured: treat them as",
            "lower bounds of what a free core does.",
            "",
            "## LAMMPS + deepmd-kit plugin",
            "",
            "`aiida_lifdiff.potentials.deepmd.lammps_deepmd_environment()` gives the variables; measured here:",
            "",
        ]
        rows = [
            [name, value["works"], value["seconds"], value["error"] or ""]
            for name, value in report.get("plugin_loading", {}).items()
        ]
        lines += _table(rows, ["launch", "pair_style deepmd works", "seconds (run 0, 65 atoms)", "error"])
        lines += [""]
    lines += ["## Checksums (sha256)", "", "```"]
    lines += [f"{values['sha256']}  {name}" for name, values in files.items()]
    lines += ["```", ""]
    (out / "README.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=["all", "data", "mace", "deepmd", "report", "readme"], default="all")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "models")
    parser.add_argument("--workdir", type=Path, default=REPO / "build" / "tiny_models")
    args = parser.parse_args(argv)
    out, workdir = args.out.resolve(), args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(out)
    if args.stage in ("all", "data"):
        manifest["data"] = make_data(workdir / "data", out)
        save_manifest(out, manifest)
    if args.stage in ("all", "mace"):
        manifest["mace"] = make_mace(workdir, out, manifest["data"]["reference_energies"]["e0s"])
        save_manifest(out, manifest)
    if args.stage in ("all", "deepmd"):
        manifest["deepmd"] = make_deepmd(workdir, out, manifest["data"]["reference_energies"]["e0s"])
        save_manifest(out, manifest)
    if args.stage in ("all", "report"):
        manifest["report"] = make_report(workdir / "report", out)
        save_manifest(out, manifest)
    if args.stage == "readme":
        save_manifest(out, manifest)


if __name__ == "__main__":
    main()
