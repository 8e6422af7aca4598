"""Efficiency and calibration of diffusion-coefficient estimators on walks with a known D.

Prints one table and asserts nothing. For every walk kind of :mod:`aiida_lifdiff.analysis.synthetic_walks`
(36 atoms, 4 mobile, 2000 frames of 0.01 ps, D = 1.33 A^2/ps, one replica per seed) and every estimator:
the mean D over seeds, its scatter (sd over seeds), the mean reported sigma and the 1-sigma coverage
(fraction of seeds with |D - D_true| < sigma). Estimators:

- ``gls``: :func:`aiida_lifdiff.analysis.gls.estimate_diffusivity_gls` with its defaults;
- ``block``: :func:`aiida_lifdiff.analysis.diffusion.estimate_diffusivity` (5 blocks, its default window);
- ``pymatgen``: pymatgen-analysis-diffusion's ``DiffusionAnalyzer`` (default ``smoothed="max"``; its
  ``diffusivity`` and ``diffusivity_std_dev``), tracer rows only;
- ``kinisi``: kinisi's ``DiffusionAnalyzer`` on the same lags as ``gls`` (Bayesian regression with its
  covariance model; D and sigma are the mean and sd of the posterior samples), tracer rows only.

pymatgen and kinisi are benchmark-only extras (``benchmarks/requirements-estimators.txt``); a missing one
prints 'not installed'. With a trajectory path (extxyz with ``time_ps`` in each frame's info, or any file
:func:`aiida_lifdiff.analysis.trajectory_files.read_trajectory` reads) one more row per estimator gives D and
sigma on that trajectory (no true D: no scatter or coverage). Run from the repository root:

    python benchmarks/estimator_efficiency.py --seeds 100
    python benchmarks/estimator_efficiency.py --kinds thermal,hopping --mode collective
    python benchmarks/estimator_efficiency.py run.extxyz --mobile Li --reference F
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiida_lifdiff.analysis.diffusion import estimate_diffusivity  # noqa: E402
from aiida_lifdiff.analysis.gls import estimate_diffusivity_gls  # noqa: E402
from aiida_lifdiff.analysis.synthetic_walks import WALK_KINDS, synthetic_walks  # noqa: E402

#: An estimator maps (trajectories, times_ps, mobile, reference, mode) to (D, sigma) in A^2/ps.
Estimator = Callable[[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray, str], tuple[float, float]]

NOT_APPLICABLE = "n/a"


def _gls(trajs, times, mobile, ref, mode):
    res = estimate_diffusivity_gls(trajs, times, mobile, ref, mode=mode)
    return res.D_A2_ps, res.D_err_A2_ps


def _block(trajs, times, mobile, ref, mode):
    res = estimate_diffusivity(trajs, times, mobile, ref, mode=mode)
    return res.D_A2_ps, res.D_err_A2_ps


def _pymatgen_estimator() -> Estimator | str:
    try:
        from pymatgen.analysis.diffusion.analyzer import DiffusionAnalyzer
        from pymatgen.core import Lattice, Structure
    except ImportError:
        return "not installed"

    def run(trajs, times, mobile, ref, mode):
        if mode != "tracer" or len(trajs) != 1:
            raise NotImplementedError
        pos = trajs[0]
        n_atoms = pos.shape[1]
        species = ["F"] * n_atoms
        for i in mobile:
            species[i] = "Li"
        # Atoms not in mobile or ref would count as framework in pymatgen; the walks have none.
        box = 10.0 * float(np.ptp(pos)) + 100.0
        structure = Structure(Lattice.cubic(box), species, pos[0], coords_are_cartesian=True)
        disp = np.transpose(pos - pos[0], (1, 0, 2))  # (site, step, axis), Cartesian
        dt_fs = float(times[1] - times[0]) * 1000.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            da = DiffusionAnalyzer(structure, disp, "Li", temperature=1000, time_step=dt_fs, step_skip=1)
        return float(da.diffusivity) * 1e4, float(da.diffusivity_std_dev) * 1e4  # cm^2/s -> A^2/ps

    return run


def _kinisi_estimator(n_samples: int) -> Estimator | str:
    try:
        import scipp as sc
        from kinisi.diffusion_analyzer import DiffusionAnalyzer
        from kinisi.displacement import calculate_msd
        from kinisi.parser import Parser
    except ImportError:
        return "not installed"

    def run(trajs, times, mobile, ref, mode):
        if mode != "tracer" or len(trajs) != 1:
            raise NotImplementedError
        pos = trajs[0]
        # Same lags as the GLS default; kinisi fits from the first one on.
        lags = estimate_diffusivity_gls(trajs, times, mobile, ref, max_lags=64).lag_times_ps
        box = 10.0 * float(np.ptp(pos)) + 100.0
        frac = (pos - pos.min() + 0.25 * box) / box
        frac = np.concatenate([frac[:1], frac])  # kinisi's parsers repeat frame 0 (zero first displacement)
        coords = sc.array(dims=["time", "particle", "dimension"], values=frac, unit=sc.units.dimensionless)
        latt = sc.array(
            dims=["time", "dimension1", "dimension2"],
            values=np.broadcast_to(np.eye(3) * box, (frac.shape[0], 3, 3)).copy(),
            unit=sc.units.angstrom,
        )
        dt = float(times[1] - times[0])
        parser = Parser(
            coords=coords,
            latt=latt,
            time_step=sc.scalar(dt, unit="ps"),
            step_skip=sc.scalar(1, unit=sc.units.dimensionless),
            dt=sc.array(dims=["time interval"], values=lags, unit="ps"),
            specie_indices=sc.array(dims=["particle"], values=np.asarray(mobile)),
            drift_indices=sc.array(dims=["particle"], values=np.asarray(ref)),
        )
        analyzer = DiffusionAnalyzer(parser)
        analyzer._dg = calculate_msd(parser, progress=False)  # what DiffusionAnalyzer.from_* do
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analyzer.diffusion(
                sc.scalar(float(lags[0]), unit="ps"), progress=False, n_samples=n_samples, n_burn=n_samples // 2
            )
        d = sc.to_unit(analyzer.D, "angstrom**2/ps").values
        return float(np.mean(d)), float(np.std(d))

    return run


def _stats(values: list[tuple[float, float]], d_true: float | None) -> tuple[str, str, str, str]:
    arr = np.array(values, dtype=float)
    d, err = arr[:, 0], arr[:, 1]
    if d_true is None or d.size < 2:
        return f"{d.mean():.4g}", NOT_APPLICABLE, f"{err.mean():.4g}", NOT_APPLICABLE
    sem = d.std(ddof=1) / np.sqrt(d.size)
    coverage = np.mean(np.abs(d - d_true) < err)
    return f"{d.mean():.4f}+/-{sem:.4f}", f"{d.std(ddof=1):.4f}", f"{err.mean():.4g}", f"{coverage:.3f}"


def _real_trajectory(path: str, mobile_symbol: str, reference_symbol: str):
    from aiida_lifdiff.analysis.trajectory_files import read_trajectory

    data = read_trajectory(path)
    symbols = np.array(data["symbols"])
    mobile = np.flatnonzero(symbols == mobile_symbol)
    ref = np.flatnonzero(symbols == reference_symbol)
    if mobile.size == 0 or ref.size == 0:
        raise SystemExit(f"{path}: no {mobile_symbol!r} or no {reference_symbol!r} atoms")
    return [data["positions"]], data["times_ps"], mobile, ref


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trajectory", nargs="?", help="optional real trajectory (extxyz with time_ps per frame)")
    parser.add_argument("--seeds", type=int, default=300, help="seeds per walk kind (default 300)")
    parser.add_argument("--kinds", default=",".join(WALK_KINDS), help=f"comma-separated subset of {WALK_KINDS}")
    parser.add_argument("--mode", choices=("tracer", "collective"), default="tracer")
    parser.add_argument("--mobile", default="Li", help="mobile species of the real trajectory (default Li)")
    parser.add_argument("--reference", default="F", help="reference species of the real trajectory (default F)")
    parser.add_argument("--kinisi-samples", type=int, default=300, help="kinisi MCMC samples per walker")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(WALK_KINDS))
    if unknown:
        parser.error(f"unknown kinds {unknown}; choose from {WALK_KINDS}")

    start = time.perf_counter()
    estimators: dict[str, Estimator | str] = {
        "gls": _gls,
        "block": _block,
        "pymatgen": _pymatgen_estimator(),
        "kinisi": _kinisi_estimator(args.kinisi_samples),
    }
    timings = {name: 0.0 for name in estimators}
    rows = []

    def evaluate(label: str, cases, d_true: float | None) -> None:
        results: dict[str, list[tuple[float, float]] | str] = {
            name: (est if isinstance(est, str) else []) for name, est in estimators.items()
        }
        for trajs, times, mobile, ref in cases:
            for name, est in estimators.items():
                if isinstance(results[name], str):
                    continue
                t0 = time.perf_counter()
                try:
                    results[name].append(est(trajs, times, mobile, ref, args.mode))
                except NotImplementedError:
                    results[name] = NOT_APPLICABLE
                timings[name] += time.perf_counter() - t0
        for name, res in results.items():
            if isinstance(res, str):
                rows.append((label, name, res, "", "", ""))
            else:
                rows.append((label, name, *_stats(res, d_true)))

    for kind in kinds:
        walks = [synthetic_walks(kind, np.random.default_rng(seed)) for seed in range(args.seeds)]
        d_true = walks[0].D_tracer_A2_ps if args.mode == "tracer" else walks[0].D_collective_A2_ps
        cases = ((w.trajectories, w.times_ps, w.mobile_indices, w.framework_indices) for w in walks)
        evaluate(f"{kind} (D={d_true:g})", cases, d_true)
        print(f"[{kind}: done at {time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
    if args.trajectory:
        evaluate(Path(args.trajectory).name, [_real_trajectory(args.trajectory, args.mobile, args.reference)], None)

    header = ("walks", "estimator", "mean D [A^2/ps]", "scatter", "mean sigma", "coverage")
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    print(f"mode: {args.mode}; {args.seeds} seeds per kind; 1-sigma coverage should be ~0.68")
    for row in (header, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    spent = ", ".join(f"{name} {t:.1f} s" for name, t in timings.items() if t > 0)
    print(f"wall time: {time.perf_counter() - start:.1f} s ({spent})")


if __name__ == "__main__":
    main()
