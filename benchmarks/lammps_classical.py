"""LAMMPS + Tosi-Fumi LiF: speed, and a quick look at interstitial Li diffusion.

Prints figures; asserts nothing (the tests do that). Run from the repository root:

    python benchmarks/lammps_classical.py speed                 # steps/s, 65 and 217 atoms, Ewald vs PPPM
    python benchmarks/lammps_classical.py explore --ps 50       # D(T) of the 2x2x2+1 cell, 700-1000 K
    python benchmarks/lammps_classical.py sites                 # static energies: tetrahedral vs face site

One MPI rank and OMP_NUM_THREADS=1 throughout, so the numbers compare with the
single-core figures in DESIGN.md section 5. The MSD estimate here is deliberately
crude (multiple time origins, straight-line fit over the middle of the lag range):
it is for choosing demo settings, not for results.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiida_lifdiff.engines.lammps_input import (  # noqa: E402
    INPUT_FILE,
    LOG_FILE,
    THERMO_FILE,
    TRAJECTORY_FILE,
    lammps_command,
    md_input_script,
    write_data_file,
)
from aiida_lifdiff.engines.lammps_output import read_dump, read_thermo, scan_log  # noqa: E402
from aiida_lifdiff.potentials.classical import TOSI_FUMI_LIF, lammps_potential_lines  # noqa: E402
from aiida_lifdiff.structures import build_lif_supercell, species_indices  # noqa: E402

SPECIES = ["Li", "F"]
A2_PER_PS_TO_CM2_PER_S = 1e-4  # 1 A^2/ps = 1e-16 cm^2 / 1e-12 s


def run_md(workdir: Path, atoms, **md) -> tuple[dict, float]:
    """Run one NVT MD in ``workdir``; return the log summary and the wall time (s)."""
    command, env = lammps_command()
    env["OMP_NUM_THREADS"] = "1"
    (workdir / "structure.data").write_text(write_data_file(atoms, SPECIES, TOSI_FUMI_LIF["charges"]))
    (workdir / INPUT_FILE).write_text(md_input_script(species_order=SPECIES, **md))
    start = time.perf_counter()
    process = subprocess.run(
        [*command, "-in", INPUT_FILE], cwd=workdir, env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if process.returncode:
        raise RuntimeError(process.stdout[-2000:] + process.stderr[-2000:])
    return scan_log((workdir / LOG_FILE).read_text()), wall


def speed(args: argparse.Namespace) -> None:
    print(f"{'atoms':>6} {'kspace':>7} {'accuracy':>9} {'steps/s':>9} {'wall s per ps (1 fs)':>21}")
    for repeat in (2, 3):
        atoms = build_lif_supercell(repeat)
        for kspace in ("ewald", "pppm"):
            lines = lammps_potential_lines(TOSI_FUMI_LIF, SPECIES, kspace=kspace, kspace_accuracy=args.accuracy)
            with tempfile.TemporaryDirectory() as tmp:
                report, _ = run_md(
                    Path(tmp),
                    atoms,
                    potential_lines=lines,
                    temperature_K=1000.0,
                    timestep_fs=1.0,
                    n_steps=args.steps,
                    equilibration_steps=200,
                    seed=1,
                    dump_stride=args.steps,
                    thermo_stride=args.steps,
                )
            rate = report["runs"][-1]["steps_per_s"]
            print(f"{len(atoms):>6} {kspace:>7} {args.accuracy:>9.0e} {rate:>9.0f} {1000 / rate:>21.2f}")


def msd_curve(displacements: np.ndarray, max_lag: int) -> np.ndarray:
    """<|x(t0 + lag) - x(t0)|^2> over all time origins, lags 0..max_lag; x is (n_frames, ..., 3)."""
    out = np.zeros(max_lag + 1)
    for lag in range(1, max_lag + 1):
        diff = displacements[lag:] - displacements[:-lag]
        out[lag] = (diff**2).sum(axis=-1).mean()
    return out


def slope_d(msd: np.ndarray, dt_ps: float) -> float:
    """D (A^2/ps) from a straight line through the MSD between 20 % and 80 % of the lags."""
    lags = np.arange(len(msd)) * dt_ps
    lo, hi = int(0.2 * len(msd)), int(0.8 * len(msd))
    slope = np.polyfit(lags[lo:hi], msd[lo:hi], 1)[0]
    return slope / 6.0


def explore(args: argparse.Namespace) -> None:
    atoms = build_lif_supercell(args.repeat, args.lattice_constant, "tetrahedral")
    li, fl = species_indices(atoms, "Li"), species_indices(atoms, "F")
    stride = 100
    dt_ps = stride * 1e-3
    lines = lammps_potential_lines(TOSI_FUMI_LIF, SPECIES, kspace="ewald", kspace_accuracy=1e-5)
    print(
        f"{len(atoms)} atoms, a = {args.lattice_constant} A, {args.ps} ps production after "
        f"{args.equilibration_ps} ps, 1 fs, frames every {dt_ps} ps, Ewald 1e-5, seeds {args.seeds}"
    )
    header = (
        f"{'T/K':>5} {'seed':>5} {'<T>/K':>7} {'D_tracer cm2/s':>15} {'D_sum cm2/s':>13} "
        f"{'MSD_Li(end) A2':>15} {'MSD_F(end) A2':>14} {'Li moved>2A':>11} {'wall s/ps':>9}"
    )
    print(header)
    for temperature in args.temperatures:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                workdir = Path(tmp)
                report, _ = run_md(
                    workdir,
                    atoms,
                    potential_lines=lines,
                    temperature_K=float(temperature),
                    timestep_fs=1.0,
                    n_steps=int(args.ps * 1000),
                    equilibration_steps=int(args.equilibration_ps * 1000),
                    seed=seed,
                    dump_stride=stride,
                    thermo_stride=stride,
                )
                _, positions, _, _ = read_dump(workdir / TRAJECTORY_FILE)
                thermo = read_thermo(workdir / THERMO_FILE)
            if report["lost_atoms"] or report["error"]:
                print(f"{temperature:>5} {seed:>5} failed: {report['error']}")
                continue
            # Displacements in the frame of the F sublattice (removes the centre-of-mass wander).
            disp = positions - positions[0]
            disp -= disp[:, fl].mean(axis=1, keepdims=True)
            max_lag = len(disp) // 2
            msd_li = msd_curve(disp[:, li], max_lag)
            msd_sum = msd_curve(disp[:, li].sum(axis=1), max_lag)  # one defect in the cell
            d_tracer = slope_d(msd_li, dt_ps) * A2_PER_PS_TO_CM2_PER_S
            d_sum = slope_d(msd_sum, dt_ps) * A2_PER_PS_TO_CM2_PER_S
            end_li = (disp[-1, li] ** 2).sum(axis=-1).mean()
            end_f = (disp[-1, fl] ** 2).sum(axis=-1).mean()
            moved = int(((disp[-1, li] ** 2).sum(axis=-1) > 4.0).sum())
            production_wall = report["runs"][-1]["loop_time_s"]
            print(
                f"{temperature:>5} {seed:>5} {thermo['temp_K'].mean():>7.0f} "
                f"{d_tracer:>15.2e} {d_sum:>13.2e} {end_li:>15.2f} {end_f:>14.2f} {moved:>11d} "
                f"{production_wall / args.ps:>9.3f}",
                flush=True,
            )


def sites(args: argparse.Namespace) -> None:
    """Relaxed energies (fixed box) of the interstitial at the tetrahedral and face sites."""
    command, env = lammps_command()
    lines = lammps_potential_lines(TOSI_FUMI_LIF, SPECIES, kspace="ewald", kspace_accuracy=1e-7)
    energies = {}
    for site in ("none", "tetrahedral", "face"):
        atoms = build_lif_supercell(args.repeat, args.lattice_constant, site)
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            (workdir / "structure.data").write_text(write_data_file(atoms, SPECIES, TOSI_FUMI_LIF["charges"]))
            script = "\n".join(
                [
                    "units metal",
                    "atom_style charge",
                    "boundary p p p",
                    "read_data structure.data",
                    *lines,
                    "min_style cg",
                    "minimize 1e-14 1e-8 20000 100000",
                    'print "SITE_E $(pe:%.8f) $(fmax:%.2e)"',
                ]
            )
            (workdir / INPUT_FILE).write_text(script)
            out = subprocess.run(
                [*command, "-in", INPUT_FILE],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        line = [x for x in out.splitlines() if x.startswith("SITE_E")][-1]
        energies[site] = float(line.split()[1])
        print(f"{site:>12}: E = {energies[site]:.4f} eV, fmax = {line.split()[2]} eV/A")
    print(f"face - tetrahedral (direct-hop barrier estimate): {energies['face'] - energies['tetrahedral']:.3f} eV")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_speed = sub.add_parser("speed")
    p_speed.add_argument("--steps", type=int, default=2000)
    p_speed.add_argument("--accuracy", type=float, default=1e-6)
    p_explore = sub.add_parser("explore")
    p_explore.add_argument("--temperatures", type=float, nargs="+", default=[700, 800, 900, 1000])
    p_explore.add_argument("--seeds", type=int, nargs="+", default=[1])
    p_explore.add_argument("--ps", type=float, default=50.0)
    p_explore.add_argument("--equilibration-ps", type=float, default=5.0)
    p_explore.add_argument("--repeat", type=int, default=2)
    p_explore.add_argument("--lattice-constant", type=float, default=4.03)
    p_sites = sub.add_parser("sites")
    p_sites.add_argument("--repeat", type=int, default=3)
    p_sites.add_argument("--lattice-constant", type=float, default=4.01)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    {"speed": speed, "explore": explore, "sites": sites}[args.command](args)


if __name__ == "__main__":
    main()
