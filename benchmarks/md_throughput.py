"""MD throughput (atom-steps per second) of the engines this project drives.

Prints figures; asserts nothing. Run from the repository root:

    python benchmarks/md_throughput.py                                  # CPU defaults
    python benchmarks/md_throughput.py --device cuda --dtype float32 --steps 50
    python benchmarks/md_throughput.py --deepmd-model path/to/frozen.pb  # adds LAMMPS + DeePMD

Rows, all on the 217-atom cell (3x3x3 LiF + 1 tetrahedral interstitial):

- ``ase-md``: ASE velocity Verlet with mace-torch's ``MACECalculator``, one system.
- ``lifdiff-md``: the batched runner's integrator + MACE evaluator
  (:mod:`aiida_lifdiff.runner`), N members (copies with different seeds) per model call.
  Timed on the runner's own step loop without file output; the first two steps are
  warm-up and not counted.
- ``lammps``: LAMMPS with the Tosi-Fumi potential (Ewald 1e-5, one MPI rank,
  OMP_NUM_THREADS=1), and with a DeePMD model when ``--deepmd-model`` is given.

MACE sizes (random weights: speed does not depend on their values): ``tiny`` (16x0e,
max_ell 1, r_max 4, 2 interactions) and ``mpa0`` (the MACE-MPA-0 medium architecture:
128x0e+128x1o, max_ell 3, correlation 3, r_max 6, 2 interactions). On a CPU the mpa0 rows
are limited to ``--cpu-mpa0-members`` members and ``--cpu-mpa0-steps`` steps, because one
step of 217 atoms takes seconds there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

from aiida_lifdiff.structures import build_lif_supercell  # noqa: E402

SPECIES = ["Li", "F"]
WARMUP_STEPS = 2


def _cell():
    return build_lif_supercell(3, interstitial_site="tetrahedral")


def _row(engine: str, size: str, members: int, atom_steps: float, seconds: float, note: str = "") -> None:
    rate = atom_steps / seconds if seconds > 0 else float("nan")
    per_step = seconds / (atom_steps / (217 * members)) if atom_steps else float("nan")
    print(f"{engine:<12} {size:<9} {members:>7} {rate:>14.0f} {per_step * 1e3:>12.1f}   {note}", flush=True)


def bench_ase(model_path: Path, size: str, device: str, dtype: str, steps: int) -> None:
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    from aiida_lifdiff.potentials.mace import mace_calculator

    atoms = _cell()
    atoms.calc = mace_calculator(model_path, device=device, dtype=dtype)
    thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(1))
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dynamics.run(WARMUP_STEPS)
    start = time.perf_counter()
    dynamics.run(steps)
    _row("ase-md", size, 1, len(atoms) * steps, time.perf_counter() - start, f"{steps} steps")


def bench_runner(model_path: Path, size: str, device: str, dtype: str, steps: int, members: int) -> None:
    import torch

    from aiida_lifdiff.runner.integrator import BatchedNVT
    from aiida_lifdiff.runner.models import MaceModel

    model = MaceModel(model_path, device=device, dtype=dtype)
    atoms_list = [_cell() for _ in range(members)]
    try:
        nvt = BatchedNVT(
            model.evaluator(atoms_list),
            atoms_list,
            [600.0] * members,
            [np.random.default_rng(seed) for seed in range(members)],
            timestep_fs=1.0,
            tau_fs=100.0,
            device=model.device,
        )
        for j in range(members):
            nvt.initialise_velocities(j)
        nvt.compute()
        for _ in range(WARMUP_STEPS):
            nvt.step()
            nvt.health()
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for step in range(steps):
            # As in the runner: stress on thermo steps only, one health check per step.
            nvt.step(compute_stress=step % 10 == 0)
            nvt.health()
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    except torch.cuda.OutOfMemoryError:
        print(f"{'lifdiff-md':<12} {size:<9} {members:>7} {'out of memory':>14}", flush=True)
        torch.cuda.empty_cache()
        return
    timings = nvt.evaluator.timings
    note = f"{steps} steps, {timings['rebuilds']} list builds"
    _row("lifdiff-md", size, members, 217 * members * steps, seconds, note)


def bench_lammps(potential: str, steps: int, deepmd_model: Path | None = None) -> None:
    from aiida_lifdiff.engines.lammps_input import INPUT_FILE, LOG_FILE, lammps_command, md_input_script
    from aiida_lifdiff.engines.lammps_input import write_data_file as lammps_data
    from aiida_lifdiff.engines.lammps_output import scan_log
    from aiida_lifdiff.potentials.classical import TOSI_FUMI_LIF, lammps_potential_lines

    command, env = lammps_command()
    env["OMP_NUM_THREADS"] = "1"
    atoms = _cell()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if deepmd_model is None:
            lines = lammps_potential_lines(TOSI_FUMI_LIF, SPECIES, kspace="ewald", kspace_accuracy=1e-5)
        else:
            from aiida_lifdiff.potentials.deepmd import lammps_potential_lines as deepmd_lines

            shutil.copy(deepmd_model, workdir / deepmd_model.name)
            lines = deepmd_lines(deepmd_model.name, SPECIES)
        (workdir / "structure.data").write_text(lammps_data(atoms, SPECIES, TOSI_FUMI_LIF["charges"]))
        script = md_input_script(
            potential_lines=lines,
            species_order=SPECIES,
            temperature_K=600.0,
            timestep_fs=1.0,
            n_steps=steps,
            equilibration_steps=0,
            seed=1,
            dump_stride=steps,
            thermo_stride=steps,
        )
        (workdir / INPUT_FILE).write_text(script)
        process = subprocess.run(
            [*command, "-in", INPUT_FILE], cwd=workdir, env=env, capture_output=True, text=True, check=False
        )
        if process.returncode:
            print(f"{'lammps':<12} {potential:<9} failed: {(process.stdout + process.stderr)[-300:]}", flush=True)
            return
        report = scan_log((workdir / LOG_FILE).read_text())
    run = report["runs"][-1]
    _row("lammps", potential, 1, len(atoms) * run["n_steps"], run["loop_time_s"], f"{run['n_steps']} steps, 1 rank")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per MACE row (after 2 warm-up steps)")
    parser.add_argument("--members", default="1,4,16,64", help="batch sizes of the lifdiff-md rows")
    parser.add_argument("--sizes", default="tiny,mpa0", help="MACE sizes: tiny, mpa0")
    parser.add_argument("--lammps-steps", type=int, default=2000)
    parser.add_argument("--deepmd-model", type=Path, default=None, help="frozen DeePMD model for a LAMMPS row")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--cpu-mpa0-steps", type=int, default=2)
    parser.add_argument("--cpu-mpa0-members", type=int, default=4)
    parser.add_argument("--skip", default="", help="comma list of: ase, runner, lammps")
    args = parser.parse_args()

    import torch
    from helpers_mace import build_random_mace

    from aiida_lifdiff.potentials.mace import check_device

    check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    members = [int(n) for n in args.members.split(",")]
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(
        f"device {device_name}, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"dtype {args.dtype}, 217-atom LiF cell; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'engine':<12} {'model':<9} {'members':>7} {'atom-steps/s':>14} {'ms/step':>12}   note")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            model_path = build_random_mace(Path(tmp) / f"{size}.model", size, dtype=args.dtype)
            steps, sizes = args.steps, members
            cpu_note = ""
            if size == "mpa0" and args.device == "cpu":
                steps = min(steps, args.cpu_mpa0_steps)
                sizes = [n for n in members if n <= args.cpu_mpa0_members]
                cpu_note = f" (CPU: mpa0 limited to {steps} steps and <= {args.cpu_mpa0_members} members)"
                print(f"# mpa0 on the CPU takes seconds per step{cpu_note}")
            if "ase" not in skip:
                bench_ase(model_path, size, args.device, args.dtype, steps)
            if "runner" not in skip:
                for n in sizes:
                    bench_runner(model_path, size, args.device, args.dtype, steps, n)
    if "lammps" not in skip:
        bench_lammps("tosi-fumi", args.lammps_steps)
        if args.deepmd_model is not None:
            bench_lammps("deepmd", max(args.lammps_steps // 10, 50), deepmd_model=args.deepmd_model.resolve())


if __name__ == "__main__":
    main()
