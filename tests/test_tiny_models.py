"""The shipped tiny models and their training data (tests/data/models, see its README.md).

- the files are the ones README.md describes (sha256), so a silently replaced model fails here;
- the labels are what they claim: Tosi-Fumi single points in LAMMPS (recomputed for a few frames);
- the MACE and DeePMD models reproduce the classical labels of the held-out 65-atom frames
  within tolerances set from the errors measured when they were made (README) with margin.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

MODELS = Path(__file__).parent / "data" / "models"
TRAIN = MODELS / "lif-classical-train.extxyz"
TEST = MODELS / "lif-classical-test.extxyz"
MACE_MODEL = MODELS / "tiny-mace.model"
DEEPMD_MODEL = MODELS / "tiny-deepmd.pb"
SPECIES = ["Li", "F"]

# Tolerances on the held-out 65-atom frames: the errors measured when the models were made
# (README.md: MACE 0.56 meV/atom and 23 meV/A, DeePMD 1.4 meV/atom and 62 meV/A) with ~50 %
# margin, far below what a broken or wrong model gives (~40 meV/atom and ~700 meV/A for an
# untrained one; the RMS of the force labels is ~700 meV/A).
MACE_FORCE_RMSE = 0.035  # eV/A
MACE_ENERGY_RMSE = 0.0015  # eV/atom
DEEPMD_FORCE_RMSE = 0.090  # eV/A
DEEPMD_ENERGY_RMSE = 0.0025  # eV/atom
# Transfer to other compositions (64-atom perfect crystal, 217-atom cell): the mean energy
# error per atom, measured 3.0 / -0.8 (MACE) and -3.5 / -4.3 (DeePMD) meV/atom. It guards the
# reference energies (E0s): a least-squares E0 fit on the single training composition gave
# 17 and 33 meV/atom for the 217-atom cell.
TRANSFER_MEAN_ENERGY_ERROR = 0.008  # eV/atom


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded_checksums() -> dict[str, str]:
    text = (MODELS / "README.md").read_text()
    block = text.split("## Checksums (sha256)", 1)[1]
    return {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", block, flags=re.MULTILINE)}


@pytest.fixture(scope="module")
def test_frames():
    return [atoms for atoms in read(TEST, ":") if len(atoms) == 65]


@pytest.fixture(scope="module")
def transfer_frames():
    """Held-out frames of other compositions: {64: perfect crystal, 217: 3x3x3 + interstitial}."""
    frames = read(TEST, ":")
    return {size: [atoms for atoms in frames if len(atoms) == size] for size in (64, 217)}


def mean_energy_error(frames, energies) -> float:
    return float(np.mean([(e - atoms.get_potential_energy()) / len(atoms) for atoms, e in zip(frames, energies)]))


def rmse(frames, predictions) -> tuple[float, float]:
    energy = np.array([(e - atoms.get_potential_energy()) / len(atoms) for atoms, (e, _) in zip(frames, predictions)])
    forces = np.concatenate([(f - atoms.get_forces()).ravel() for atoms, (_, f) in zip(frames, predictions)])
    return float(np.sqrt(np.mean(energy**2))), float(np.sqrt(np.mean(forces**2)))


def test_files_match_the_checksums_in_readme():
    recorded = recorded_checksums()
    for path in (TRAIN, TEST, MACE_MODEL, DEEPMD_MODEL):
        assert path.name in recorded, f"{path.name} has no sha256 line in {MODELS / 'README.md'}"
        assert sha256(path) == recorded[path.name], (
            f"{path.name} differs from the file README.md describes: rerun scripts/make_tiny_models.py "
            "(it rewrites README.md) instead of replacing files by hand"
        )


def test_training_data_layout():
    train = read(TRAIN, ":")
    test = read(TEST, ":")
    assert len(train) == 300 and len(test) >= 50
    for atoms in train + test:
        assert set(atoms.get_chemical_symbols()) == {"Li", "F"}
        symbols = atoms.get_chemical_symbols()
        # One interstitial Li, or none (perfect-crystal test frames).
        assert symbols.count("Li") - symbols.count("F") == (0 if atoms.info["config_type"] == "perfect" else 1)
        results = atoms.calc.results
        assert set(results) >= {"energy", "forces", "stress"}
        assert results["forces"].shape == (len(atoms), 3)
        assert np.abs(results["forces"].sum(axis=0)).max() < 1e-6  # LAMMPS forces sum to zero
        assert -5.5 < results["energy"] / len(atoms) < -5.0  # Tosi-Fumi lattice energy: -5.40 eV/atom
    # Training frames share one cell and charge: a charged cell's Ewald energy has non-local terms.
    assert {len(atoms) for atoms in train} == {65}
    assert {atoms.info["config_type"] for atoms in train} == {"md", "rattled", "strained"}
    assert {len(atoms) for atoms in test} == {64, 65, 217}


@pytest.mark.lammps
def test_labels_are_tosi_fumi_single_points(tmp_path):
    """Recompute three test frames with the project's Tosi-Fumi LAMMPS lines: labels agree."""
    from aiida_lifdiff.engines.lammps_input import INPUT_FILE, lammps_command, write_data_file
    from aiida_lifdiff.engines.lammps_output import read_dump
    from aiida_lifdiff.potentials.classical import TOSI_FUMI_LIF, lammps_potential_lines

    try:
        command, env = lammps_command()
    except FileNotFoundError as error:
        # `make test` installs LAMMPS: a missing binary is a broken install, never a reason to skip.
        pytest.fail(str(error))
    frames = read(TEST, ":")
    picks = [frames[0], next(a for a in frames if a.info["config_type"] == "strained"), frames[-1]]
    for index, atoms in enumerate(picks):
        workdir = tmp_path / str(index)
        workdir.mkdir()
        (workdir / "structure.data").write_text(write_data_file(atoms, SPECIES, TOSI_FUMI_LIF["charges"]))
        lines = lammps_potential_lines(TOSI_FUMI_LIF, SPECIES, cutoff=8.0, kspace="ewald", kspace_accuracy=1e-7)
        script = "\n".join(
            [
                "units metal",
                "atom_style charge",
                "boundary p p p",
                "read_data structure.data",
                *lines,
                "run 0",
                'print "LIFDIFF_PE $(pe:%.10f)"',
                "write_dump all custom forces.dump id type fx fy fz modify sort id format float %.12e",
                "",
            ]
        )
        (workdir / INPUT_FILE).write_text(script)
        process = subprocess.run(
            [*command, "-in", INPUT_FILE], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
        )
        assert process.returncode == 0, process.stdout[-2000:]
        energy = float(next(line.split()[1] for line in process.stdout.splitlines() if line.startswith("LIFDIFF_PE")))
        _, forces, _, _ = read_dump(workdir / "forces.dump", columns=("fx", "fy", "fz"))
        assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
        assert np.abs(forces[0] - atoms.get_forces()).max() < 1e-6


def test_mace_model_reproduces_classical_labels(test_frames, transfer_frames):
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    calculators = pytest.importorskip("mace.calculators")
    calculator = calculators.MACECalculator(model_paths=str(MACE_MODEL), device="cpu", default_dtype="float32")
    model = calculator.models[0]
    assert sorted(int(z) for z in model.atomic_numbers) == [3, 9]  # Li, F
    assert float(model.r_max) == pytest.approx(4.5)
    predictions = []
    for atoms in test_frames:
        probe = atoms.copy()
        probe.calc = calculator
        predictions.append((probe.get_potential_energy(), probe.get_forces()))
    energy_rmse, force_rmse = rmse(test_frames, predictions)
    print(f"MACE on {len(test_frames)} test frames: E {1e3 * energy_rmse:.2f} meV/atom, F {1e3 * force_rmse:.1f} meV/A")
    assert force_rmse < MACE_FORCE_RMSE
    assert energy_rmse < MACE_ENERGY_RMSE
    for size, frames in transfer_frames.items():
        energies = []
        for atoms in frames:
            probe = atoms.copy()
            probe.calc = calculator
            energies.append(probe.get_potential_energy())
        offset = mean_energy_error(frames, energies)
        print(f"MACE, {size}-atom frames: mean energy error {1e3 * offset:.2f} meV/atom")
        assert abs(offset) < TRANSFER_MEAN_ENERGY_ERROR


def test_deepmd_model_reproduces_classical_labels(test_frames, transfer_frames):
    from aiida_lifdiff.potentials.deepmd import model_info

    info = model_info(DEEPMD_MODEL)
    assert set(info["type_map"]) == set(SPECIES)
    infer = pytest.importorskip("deepmd.infer")
    potential = infer.DeepPot(str(DEEPMD_MODEL))
    assert potential.get_type_map() == info["type_map"]
    types = [potential.get_type_map().index(symbol) for symbol in test_frames[0].get_chemical_symbols()]
    assert all(atoms.get_chemical_symbols() == test_frames[0].get_chemical_symbols() for atoms in test_frames)
    coordinates = np.array([atoms.positions.ravel() for atoms in test_frames])
    cells = np.array([atoms.cell.array.ravel() for atoms in test_frames])
    energies, forces, _ = potential.eval(coordinates, cells, types)
    predictions = [(float(e), np.asarray(f).reshape(-1, 3)) for e, f in zip(np.ravel(energies), forces)]
    energy_rmse, force_rmse = rmse(test_frames, predictions)
    print(f"DeePMD, {len(test_frames)} test frames: E {1e3 * energy_rmse:.2f} meV/atom, F {1e3 * force_rmse:.1f} meV/A")
    assert force_rmse < DEEPMD_FORCE_RMSE
    assert energy_rmse < DEEPMD_ENERGY_RMSE
    for size, frames in transfer_frames.items():
        kinds = [potential.get_type_map().index(symbol) for symbol in frames[0].get_chemical_symbols()]
        energies = [
            float(np.ravel(potential.eval(a.positions.reshape(1, -1), a.cell.array.reshape(1, -1), kinds)[0])[0])
            for a in frames
        ]
        offset = mean_energy_error(frames, energies)
        print(f"DeePMD, {size}-atom frames: mean energy error {1e3 * offset:.2f} meV/atom")
        assert abs(offset) < TRANSFER_MEAN_ENERGY_ERROR

    # The ASE calculator the project hands out is the same model.
    from aiida_lifdiff.potentials.deepmd import deepmd_calculator

    probe = test_frames[0].copy()
    probe.calc = deepmd_calculator(DEEPMD_MODEL)
    assert probe.get_potential_energy() == pytest.approx(predictions[0][0], rel=1e-10)
    assert np.allclose(probe.get_forces(), predictions[0][1], atol=1e-8)
