"""D, Haven ratio and hop mechanisms straight from trajectory files (no AiiDA, no profile).

The function behind ``aiida-lifdiff analyse``: reads any ASE-readable trajectory (extxyz with ``time_ps`` in
each frame's info, a LAMMPS text dump, ...), several files being independent replicas, unwraps the
positions (a no-op on positions that are already unwrapped, as long as no atom moves half a cell between
two stored frames), removes the drift of the reference species and computes the tracer and collective
diffusivities (:func:`aiida_lifdiff.analysis.diffusion.estimate_diffusivity`), the Haven ratio and the hop
events of :mod:`aiida_lifdiff.analysis.mechanisms`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .diffusion import MODES, DiffusivityResult, estimate_diffusivity
from .gls import estimate_diffusivity_gls
from .mechanisms import (
    EVENT_TYPES,
    analyse_mechanisms,
    combine_event_counts,
    event_rates,
    geometric_factor,
    haven_ratio,
    hop_diffusivities,
)
from .msd import unwrap

__all__ = ["analyse_trajectory_files", "format_table", "json_safe", "read_trajectory"]

#: LAMMPS dumps carry atom types, not elements; this project writes its data files with Li = 1, F = 2.
DEFAULT_LAMMPS_TYPES = ("Li", "F")


def read_trajectory(
    path: str | os.PathLike,
    timestep_ps: float | None = None,
    lammps_types: Sequence[str] = DEFAULT_LAMMPS_TYPES,
    file_format: str | None = None,
) -> dict[str, Any]:
    """Positions (unwrapped), cell, symbols and frame times of one trajectory file.

    Frame times come from ``info['time_ps']`` when every frame has it; otherwise from ``timestep_ps`` (the
    time between stored frames). When both are given they must agree (to 0.1 %).
    """
    import ase.io

    path = os.fspath(path)
    fmt = file_format
    kwargs: dict[str, Any] = {}
    if fmt is None and (path.endswith(".dump") or ".lammpstrj" in path or os.path.basename(path).startswith("dump")):
        fmt = "lammps-dump-text"
    if fmt == "lammps-dump-text":
        kwargs["specorder"] = list(lammps_types)
    frames = ase.io.read(path, index=":", format=fmt, **kwargs)
    if not isinstance(frames, list):
        frames = [frames]
    if len(frames) < 2:
        raise ValueError(f"{path}: need at least 2 frames, found {len(frames)}")
    symbols = frames[0].get_chemical_symbols()
    cell = np.array(frames[0].get_cell())
    for k, frame in enumerate(frames):
        if frame.get_chemical_symbols() != symbols:
            raise ValueError(f"{path}: frame {k} has different atoms than frame 0")
        if not np.allclose(np.array(frame.get_cell()), cell, atol=1e-6):
            raise ValueError(f"{path}: the cell changes at frame {k}; the analysis needs a fixed cell (NVT/NVE)")
    raw = np.array([frame.get_positions() for frame in frames])
    positions = unwrap(raw, cell)

    if all("time_ps" in frame.info for frame in frames):
        times = np.array([float(frame.info["time_ps"]) for frame in frames])
        if timestep_ps is not None:
            spacing = (times[-1] - times[0]) / (len(times) - 1)
            if not math.isclose(spacing, float(timestep_ps), rel_tol=1e-3):
                raise ValueError(
                    f"{path}: frames are {spacing:.6g} ps apart by their time_ps, but --timestep-ps is {timestep_ps}"
                )
        source = "time_ps"
    elif timestep_ps is not None:
        if not float(timestep_ps) > 0:
            raise ValueError(f"timestep_ps must be > 0; got {timestep_ps!r}")
        times = np.arange(len(frames)) * float(timestep_ps)
        source = "timestep_ps"
    else:
        raise ValueError(f"{path}: frames carry no time_ps; give the time between stored frames (timestep_ps)")
    return {"positions": positions, "cell": cell, "symbols": symbols, "times_ps": times, "time_source": source}


def json_safe(value: Any) -> Any:
    """Copy of ``value`` with NaN/inf floats replaced by None and numpy scalars by Python ones (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def analyse_trajectory_files(
    paths: Sequence[str | os.PathLike],
    timestep_ps: float | None = None,
    mobile: str = "Li",
    reference: str | None = "F",
    n_blocks: int = 5,
    fit_window: tuple[float, float] = (0.1, 0.6),
    r_in: float | None = None,
    dwell: int = 3,
    window: int = 2,
    lammps_types: Sequence[str] = DEFAULT_LAMMPS_TYPES,
    file_format: str | None = None,
    with_event_list: bool = False,
) -> dict[str, Any]:
    """Tracer and collective D, Haven ratio and hop events of one or more replica trajectories.

    Args:
        paths: trajectory files, one per independent replica (same atoms and cell). Replicas of different
            length are cut to the shortest for the diffusivities (``frames_used``); the events use all frames.
        timestep_ps: time between stored frames, when the frames carry no ``time_ps``.
        mobile: the diffusing species (all its atoms: N in the Haven ratio).
        reference: the drift-reference species (its mean displacement is removed; its frame-0 positions
            define the rock-salt sites), ``None`` for the mean of all atoms (then no site analysis).
        n_blocks, fit_window: of :func:`estimate_diffusivity`.
        r_in, dwell, window: of :func:`aiida_lifdiff.analysis.mechanisms.analyse_mechanisms`.
        lammps_types: element of LAMMPS atom type 1, 2, ... for dumps.
        file_format: an ASE format name, when the file name does not tell.
        with_event_list: add every event (kind, atoms, frames, sites) per replica.

    Returns:
        A JSON-serialisable dict; see the keys below (``D_*_A2_ps``, ``haven_ratio``, ``events``, ``rates``...).
    """
    if not paths:
        raise ValueError("give at least one trajectory file")
    trajectories = [read_trajectory(p, timestep_ps, lammps_types, file_format) for p in paths]
    symbols = trajectories[0]["symbols"]
    for path, traj in zip(paths, trajectories, strict=True):
        if traj["symbols"] != symbols:
            raise ValueError(f"{path}: different atoms than {paths[0]}; replicas must share the system")
    mobile_idx = [i for i, s in enumerate(symbols) if s == mobile]
    if not mobile_idx:
        raise ValueError(f"no {mobile!r} atoms in {paths[0]} (species present: {sorted(set(symbols))})")
    ref_idx = None
    if reference is not None:
        ref_idx = [i for i, s in enumerate(symbols) if s == reference]
        if not ref_idx:
            raise ValueError(f"no {reference!r} atoms in {paths[0]} (species present: {sorted(set(symbols))})")

    n_used = min(len(t["times_ps"]) for t in trajectories)
    times = trajectories[0]["times_ps"][:n_used]
    positions = [t["positions"][:n_used] for t in trajectories]
    tracer = estimate_diffusivity(positions, times, mobile_idx, ref_idx, "tracer", n_blocks, fit_window)
    collective = estimate_diffusivity(positions, times, mobile_idx, ref_idx, "collective", n_blocks, fit_window)
    out: dict[str, Any] = {
        "files": [os.fspath(p) for p in paths],
        "n_replicas": len(paths),
        "n_atoms": len(symbols),
        "mobile": mobile,
        "reference": reference,
        "n_mobile": len(mobile_idx),
        "frames_used": int(n_used),
        "frame_spacing_ps": float((times[-1] - times[0]) / (n_used - 1)),
        "time_source": trajectories[0]["time_source"],
    }
    replicas = [(t["positions"], t["cell"], t["times_ps"]) for t in trajectories]
    out.update(summarise_mechanisms(replicas, mobile_idx, ref_idx, tracer, collective, r_in, dwell, window))
    results = out.pop("_results")
    # The GLS estimator (all origins and lags, with their covariance) beside the block estimator above, which
    # stays the primary D because the Haven ratio needs the block covariance of the two modes.
    out["gls"] = {}
    for mode in MODES:
        try:
            out["gls"][mode] = estimate_diffusivity_gls(positions, times, mobile_idx, ref_idx, mode).to_dict()
        except ValueError as exception:
            out["gls"][mode] = {"error": str(exception)}
    if with_event_list:
        out["event_list"] = [[e.to_dict() for e in r.events] for r in results]
    return json_safe(out)


def format_table(result: dict[str, Any]) -> str:
    """Plain-text summary of :func:`analyse_trajectory_files`'s result."""

    def pm(value, err, spec=".4g"):
        if value is None:
            return "n/a"
        return f"{value:{spec}} +/- {err:{spec}}" if err is not None else f"{value:{spec}}"

    lines = [
        f"{result['n_replicas']} replica(s), {result['n_atoms']} atoms, {result['n_mobile']} {result['mobile']}, "
        f"{result['frames_used']} frames every {result['frame_spacing_ps']:.4g} ps, drift reference "
        f"{result['reference']}",
        f"D_tracer     {pm(result['D_tracer_A2_ps'], result['D_tracer_err_A2_ps'])} A^2/ps"
        + ("" if result["tracer"]["diffusive"] else f"  (not diffusive: {result['tracer']['diagnosis']})"),
        f"D_collective {pm(result['D_collective_A2_ps'], result['D_collective_err_A2_ps'])} A^2/ps"
        + ("" if result["collective"]["diffusive"] else f"  (not diffusive: {result['collective']['diagnosis']})"),
        f"Haven ratio  {pm(result['haven_ratio'], result['haven_ratio_err'], '.3f')}  (N D_tracer / D_collective)",
        *[
            f"GLS {mode:<10} {pm(fit['D_A2_ps'], fit['D_err_A2_ps'])} A^2/ps"
            if "error" not in fit
            else f"GLS {mode:<10} not estimated: {fit['error']}"
            for mode, fit in result.get("gls", {}).items()
        ],
    ]
    if result.get("events") is not None:
        lines.append(
            f"events over {result['event_duration_ps']:.4g} ps (r_in {result['r_in_A']:.2f} A, dwell "
            f"{result['dwell_frames']} frames, window {result['window_frames']} frames):"
        )
        lines.append(f"  {'type':<22} {'N':>5} {'rate 1/ps':>22} {'95% upper':>10} {'fraction':>9}")
        for kind in EVENT_TYPES:
            rate = result["rates"][kind]
            frac = "" if rate["fraction"] is None else f"{rate['fraction']:.2f}"
            lines.append(
                f"  {kind:<22} {rate['count']:>5} {pm(rate['rate_per_ps'], rate['rate_err_per_ps'], '.3g'):>22} "
                f"{rate['upper_limit_per_ps']:>10.3g} {frac:>9}"
            )
        if result.get("correlation_factor") is not None:
            lines.append(
                f"geometric factor g = {result['geometric_factor']:.3f}, implied tracer correlation factor "
                f"f = H / g = {result['correlation_factor']:.3f}"
            )
        lines.append(
            f"uncorrelated-hop estimates: D_tracer_hops {result['D_tracer_hops_A2_ps']:.4g}, D_defect_hops "
            f"{result['D_defect_hops_A2_ps']:.4g} A^2/ps; D_tracer / D_tracer_hops = "
            + ("n/a" if result["tracer_correlation_factor"] is None else f"{result['tracer_correlation_factor']:.3f}")
        )
    return "\n".join(lines)


def summarise_mechanisms(
    replicas: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    mobile_idx: Sequence[int],
    ref_idx: Sequence[int] | None,
    tracer: DiffusivityResult,
    collective: DiffusivityResult,
    r_in: float | None = None,
    dwell: int = 3,
    window: int = 2,
) -> dict[str, Any]:
    """D tracer/collective, the Haven ratio and the hop events of replicas ``(positions, cell, times_ps)``.

    The part of :func:`analyse_trajectory_files` that does not read files, shared with the AiiDA calcfunction
    ``compute_diffusivity`` so that both report the same numbers. ``_results`` holds the per-replica
    :class:`MechanismResult` (not JSON; callers pop it).
    """
    h, h_err = haven_ratio(
        tracer.D_A2_ps,
        tracer.D_err_A2_ps,
        collective.D_A2_ps,
        collective.D_err_A2_ps,
        len(mobile_idx),
        tracer.block_D_A2_ps,
        collective.block_D_A2_ps,
    )

    out: dict[str, Any] = {
        "D_tracer_A2_ps": tracer.D_A2_ps,
        "D_tracer_err_A2_ps": tracer.D_err_A2_ps,
        "D_tracer_cm2_s": tracer.D_cm2_s,
        "D_tracer_err_cm2_s": tracer.D_err_cm2_s,
        "D_collective_A2_ps": collective.D_A2_ps,
        "D_collective_err_A2_ps": collective.D_err_A2_ps,
        "D_collective_cm2_s": collective.D_cm2_s,
        "D_collective_err_cm2_s": collective.D_err_cm2_s,
        "tracer": tracer.to_dict(),
        "collective": collective.to_dict(),
        "haven_ratio": _finite(h),
        "haven_ratio_err": _finite(h_err),
        "haven_definition": "H = N D_tracer / D_collective (= D_tracer / D_sigma, D_sigma = D_collective / N); "
        "error with the block covariance of the two D",
    }

    if ref_idx is None:
        out.update(events=None, rates=None, event_note="no reference species: no site analysis", _results=[])
        return out
    results = [
        analyse_mechanisms(positions, cell, times, mobile_idx, ref_idx, None, r_in, dwell, window)
        for positions, cell, times in replicas
    ]
    counts, duration = combine_event_counts(results)
    all_events = [e for r in results for e in r.events]
    g = geometric_factor(all_events)
    hops = hop_diffusivities(all_events, duration, len(mobile_idx))
    f_direct = tracer.D_A2_ps / hops["D_tracer_hops_A2_ps"] if hops["D_tracer_hops_A2_ps"] > 0 else float("nan")
    out.update(
        events={k: int(counts[k]) for k in EVENT_TYPES},
        events_total=int(sum(counts.values())),
        events_per_replica=[dict(r.counts) for r in results],
        event_duration_ps=duration,
        rates=event_rates(counts, duration),
        geometric_factor=_finite(g),
        correlation_factor=_finite(h / g) if math.isfinite(h) and math.isfinite(g) else None,
        D_tracer_hops_A2_ps=hops["D_tracer_hops_A2_ps"],
        D_defect_hops_A2_ps=hops["D_defect_hops_A2_ps"],
        tracer_correlation_factor=_finite(f_direct),
        sites={
            "repeat": list(results[0].sites.repeat or ()),
            "lattice_constant_A": list(results[0].sites.lattice_constant or ()),
            "n_lattice": int(sum(k == "lattice" for k in results[0].sites.kinds)),
            "n_interstitial": int(sum(k == "interstitial" for k in results[0].sites.kinds)),
        },
        r_in_A=results[0].r_in_A,
        dwell_frames=int(dwell),
        window_frames=int(window),
    )
    out["_results"] = results
    return out
