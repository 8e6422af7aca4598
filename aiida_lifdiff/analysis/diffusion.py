"""Diffusion coefficients from unwrapped MD trajectories, with block/replica error bars.

Units: positions in Angstrom, times in ps, D in A^2/ps and cm^2/s (1 A^2/ps = 1e-4 cm^2/s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg

from .msd import _as_indices, msd_fft, remove_drift, summed_displacement

__all__ = [
    "A2_PS_TO_CM2_S",
    "DiffusivityResult",
    "estimate_diffusivity",
]

#: 1 A^2/ps = 1e-16 cm^2 / 1e-12 s.
A2_PS_TO_CM2_S = 1.0e-4

MIN_FRAMES_PER_BLOCK = 10
LOGLOG_SLOPE_RANGE = (0.7, 1.3)
MODES = ("tracer", "collective")


@dataclass(frozen=True)
class DiffusivityResult:
    """Diffusivity estimate with its uncertainty and a diffusive-regime diagnosis.

    ``msd_A2``/``msd_err_A2`` are the mean and standard error over the block samples, on the lag grid
    ``lag_times_ps`` of one block. In collective mode the MSD is that of the summed displacement of
    the mobile atoms.
    """

    D_A2_ps: float
    D_err_A2_ps: float
    D_cm2_s: float
    D_err_cm2_s: float
    mode: str
    n_samples: int
    n_replicas: int
    n_blocks_per_replica: int
    fit_window_ps: tuple[float, float]
    error_method: str
    loglog_slope: float
    excess_loglog_slope: float
    plateau_A2: float
    diffusive: bool
    diagnosis: str
    lag_times_ps: np.ndarray = field(repr=False, compare=False)
    msd_A2: np.ndarray = field(repr=False, compare=False)
    msd_err_A2: np.ndarray = field(repr=False, compare=False)
    block_D_A2_ps: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (scalars, strings, short lists); the MSD curves are left out."""
        return {
            "D_A2_ps": float(self.D_A2_ps),
            "D_err_A2_ps": float(self.D_err_A2_ps),
            "D_cm2_s": float(self.D_cm2_s),
            "D_err_cm2_s": float(self.D_err_cm2_s),
            "mode": str(self.mode),
            "n_samples": int(self.n_samples),
            "n_replicas": int(self.n_replicas),
            "n_blocks_per_replica": int(self.n_blocks_per_replica),
            "fit_window_ps": [float(self.fit_window_ps[0]), float(self.fit_window_ps[1])],
            "error_method": str(self.error_method),
            "loglog_slope": float(self.loglog_slope),
            "excess_loglog_slope": float(self.excess_loglog_slope),
            "plateau_A2": float(self.plateau_A2),
            "diffusive": bool(self.diffusive),
            "diagnosis": str(self.diagnosis),
            "block_D_A2_ps": [float(v) for v in np.asarray(self.block_D_A2_ps).ravel()],
        }


def _validate_times(times_ps: np.ndarray, n_frames: int) -> float:
    times = np.asarray(times_ps, dtype=float)
    if times.ndim != 1 or times.size != n_frames:
        raise ValueError(f"times_ps must be a 1-D array with one entry per frame ({n_frames}); got shape {times.shape}")
    if not np.all(np.isfinite(times)):
        raise ValueError("times_ps contains non-finite values")
    steps = np.diff(times)
    dt = (times[-1] - times[0]) / (n_frames - 1)
    if dt <= 0 or np.any(steps <= 0):
        raise ValueError("times_ps must be strictly increasing")
    # Loose enough for times printed with few decimals, tight enough to catch a dropped frame (2 dt).
    if np.max(np.abs(steps - dt)) > 1e-3 * dt:
        worst = int(np.argmax(np.abs(steps - dt)))
        raise ValueError(
            "times_ps must be equally spaced (the FFT MSD assumes a uniform lag grid); mean spacing is "
            f"{dt:.6g} ps but step {worst} -> {worst + 1} is {steps[worst]:.6g} ps"
        )
    return float(dt)


def _validate_trajectories(trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(trajectories, np.ndarray) and trajectories.ndim == 3:
        raise ValueError(
            "trajectories must be a sequence of (n_frames, n_atoms, 3) arrays, one per replica; "
            "wrap a single trajectory in a list"
        )
    trajs = [np.asarray(t, dtype=float) for t in trajectories]
    if not trajs:
        raise ValueError("trajectories is empty; expected at least one (n_frames, n_atoms, 3) array")
    shape0 = trajs[0].shape
    for i, t in enumerate(trajs):
        if t.ndim != 3 or t.shape[2] != 3:
            raise ValueError(f"trajectory {i} must have shape (n_frames, n_atoms, 3); got {t.shape}")
        if t.shape != shape0:
            raise ValueError(
                f"all replicas must share frames and atoms (they share times_ps); trajectory 0 has shape "
                f"{shape0} but trajectory {i} has {t.shape}"
            )
        if not np.all(np.isfinite(t)):
            raise ValueError(f"trajectory {i} contains non-finite positions")
    return trajs


def _parse_fit_window(fit_window: tuple[float, float], of: str) -> tuple[float, float]:
    """``(start, end)`` fractions of the ``of`` duration (block, trajectory), checked: 0 <= start < end <= 1."""
    try:
        fw_lo, fw_hi = (float(v) for v in fit_window)
    except (TypeError, ValueError):
        raise ValueError(f"fit_window must be a pair of fractions (start, end); got {fit_window!r}") from None
    if not (0.0 <= fw_lo < fw_hi <= 1.0):
        raise ValueError(
            f"fit_window must satisfy 0 <= start < end <= 1 (fractions of the {of} duration); got {fit_window!r}"
        )
    return fw_lo, fw_hi


def _fit_slopes(lags: np.ndarray, msd_blocks: np.ndarray) -> np.ndarray:
    """Ordinary least-squares slopes of every column of ``msd_blocks`` against ``lags``."""
    design = np.column_stack([lags, np.ones_like(lags)])
    coef, *_ = scipy.linalg.lstsq(design, msd_blocks)
    return coef[0]


def _loglog_slope(lags: np.ndarray, msd: np.ndarray) -> float:
    if np.any(msd <= 0) or lags.size < 2:
        return float("nan")
    return float(np.polyfit(np.log(lags), np.log(msd), 1)[0])


def _excess_over_plateau(lags: np.ndarray, msd: np.ndarray) -> tuple[np.ndarray, float]:
    """MSD minus its vibrational plateau: the positive intercept of the straight-line fit in the window.

    In a crystal every atom vibrates, so the MSD jumps within a fraction of a ps to a plateau of a few
    0.1 A^2 per atom and only then grows linearly. When few atoms move (one interstitial among many Li),
    that plateau dominates the MSD for a long time and the raw log-log exponent stays well below 1 even
    though the growth above the plateau is perfectly linear. The exponent of the excess is the test of a
    diffusive regime; a negative intercept is not a plateau and is not removed.
    """
    slope, intercept = np.polyfit(lags, msd, 1)
    plateau = max(float(intercept), 0.0)
    return msd - plateau, plateau


def _diagnose(slope: float, d: float, d_err: float) -> tuple[bool, str]:
    problems = []
    lo, hi = LOGLOG_SLOPE_RANGE
    if not np.isfinite(slope):
        problems.append(
            "MSD does not rise above its vibrational plateau everywhere in the fit window, so no power law "
            "can be fitted (atoms immobile, vibrating only, or window too close to lag 0)"
        )
    elif slope < lo:
        problems.append(
            f"MSD above its plateau grows as t^{slope:.2f} in the fit window (sub-diffusive; expected "
            f"exponent in [{lo}, {hi}]): no diffusive regime"
        )
    elif slope > hi:
        problems.append(
            f"MSD above its plateau grows as t^{slope:.2f} in the fit window (super-diffusive/ballistic; "
            f"expected exponent in [{lo}, {hi}]): check for uncorrected drift or a too short trajectory"
        )
    if not d > 0:
        problems.append(f"fitted D = {d:.3g} A^2/ps is not positive")
    elif not d > 2.0 * d_err:
        problems.append(f"D = {d:.3g} +/- {d_err:.2g} A^2/ps is not resolved from zero (need D > 2 sigma)")
    return (not problems), "; ".join(problems)


def estimate_diffusivity(
    trajectories: Sequence[np.ndarray],
    times_ps: np.ndarray,
    mobile_indices: Sequence[int],
    reference_indices: Sequence[int] | None = None,
    mode: str = "tracer",
    n_blocks: int = 5,
    fit_window: tuple[float, float] = (0.1, 0.6),
) -> DiffusivityResult:
    """Estimate D from replicas of unwrapped trajectories, with a block-averaged standard error.

    Every replica is drift-corrected with ``reference_indices`` (``None``: mean of all atoms, which
    also absorbs 1/n_atoms of the mobile atoms' own motion; pass the framework atoms explicitly), then
    cut into ``n_blocks`` contiguous, non-overlapping time blocks (trailing frames that do not fill a
    block are dropped). In each block the all-origin FFT MSD is fitted by ordinary least squares with
    ``MSD = 6 D t + c`` over lags ``fit_window * block duration``. D is the mean of all block estimates
    and its error the standard error of that mean (ddof=1) over all blocks of all replicas.

    Modes:
        ``tracer``: single-particle MSD averaged over the mobile atoms.
        ``collective``: MSD of the summed displacement of the mobile atoms (the diffusivity of one
        defect carried by those atoms, e.g. an interstitial).

    A non-diffusive run does not raise: ``diffusive`` is False and ``diagnosis`` says why (log-log
    slope of the mean MSD above its vibrational plateau outside [0.7, 1.3], D not positive, or D not
    above 2 sigma). ``loglog_slope`` is the raw exponent, kept for information.

    Args:
        trajectories: one unwrapped ``(n_frames, n_atoms, 3)`` array (Angstrom) per independent replica.
        times_ps: frame times shared by all replicas, equally spaced, ps.
        mobile_indices: atoms whose diffusion is measured (e.g. Li).
        reference_indices: atoms defining the rest frame (e.g. F); ``None`` for all atoms.
        mode: ``"tracer"`` or ``"collective"``.
        n_blocks: number of time blocks per replica (>= 1, at least 10 frames each).
        fit_window: fractions ``(start, end)`` of the block duration used for the linear fit.

    Raises:
        ValueError: inconsistent shapes, unequal time spacing, too few frames per block, fewer than two
            block samples in total, bad indices, fit window or mode.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, (int, np.integer)) or n_blocks < 1:
        raise ValueError(f"n_blocks must be an integer >= 1; got {n_blocks!r}")
    fw_lo, fw_hi = _parse_fit_window(fit_window, "block")

    trajs = _validate_trajectories(trajectories)
    n_frames, n_atoms, _ = trajs[0].shape
    if n_frames < 2:
        raise ValueError(f"need at least 2 frames per trajectory; got {n_frames}")
    dt = _validate_times(times_ps, n_frames)
    mobile = _as_indices(mobile_indices, n_atoms, "mobile_indices")
    if reference_indices is not None:
        _as_indices(reference_indices, n_atoms, "reference_indices")

    block_len = n_frames // n_blocks
    if block_len < MIN_FRAMES_PER_BLOCK:
        raise ValueError(
            f"{n_frames} frames split into {n_blocks} blocks gives {block_len} frames per block; need at "
            f"least {MIN_FRAMES_PER_BLOCK} (use fewer blocks or a longer trajectory)"
        )
    n_samples = len(trajs) * n_blocks
    if n_samples < 2:
        raise ValueError(
            f"need at least 2 independent samples for an error bar; got {len(trajs)} replica(s) x "
            f"{n_blocks} block(s). Use n_blocks >= 2 or more replicas"
        )

    lags = np.arange(block_len) * dt
    duration = lags[-1]
    # Relative tolerance so that a window edge landing exactly on a lag (up to rounding) is included.
    tol = 1e-9 * duration
    in_window = (lags >= fw_lo * duration - tol) & (lags <= fw_hi * duration + tol)
    fit_mask = in_window & (lags > 0)
    if np.count_nonzero(fit_mask) < 2:
        raise ValueError(
            f"fit window {fit_window} of a {duration:.4g} ps block contains {np.count_nonzero(fit_mask)} "
            "non-zero lag(s); need at least 2 (widen the window or use fewer blocks)"
        )

    msd_blocks = np.empty((block_len, n_samples))
    col = 0
    for traj in trajs:
        corrected = remove_drift(traj, reference_indices)
        for b in range(n_blocks):
            block = corrected[b * block_len : (b + 1) * block_len]
            if mode == "tracer":
                msd_blocks[:, col] = msd_fft(block[:, mobile, :])
            else:
                msd_blocks[:, col] = msd_fft(summed_displacement(block, mobile))
            col += 1

    block_d = _fit_slopes(lags[fit_mask], msd_blocks[fit_mask]) / 6.0
    d_mean = float(block_d.mean())
    d_err = float(block_d.std(ddof=1) / np.sqrt(n_samples))

    msd_mean = msd_blocks.mean(axis=1)
    msd_err = msd_blocks.std(axis=1, ddof=1) / np.sqrt(n_samples)
    slope = _loglog_slope(lags[fit_mask], msd_mean[fit_mask])
    excess, plateau = _excess_over_plateau(lags[fit_mask], msd_mean[fit_mask])
    excess_slope = _loglog_slope(lags[fit_mask], excess)
    diffusive, diagnosis = _diagnose(excess_slope, d_mean, d_err)

    window_ps = (float(lags[fit_mask][0]), float(lags[fit_mask][-1]))
    error_method = (
        f"standard error of the mean over {len(trajs)} replica(s) x {n_blocks} block(s) "
        f"(independent time blocks of {block_len} frames = {duration:.4g} ps)"
    )
    return DiffusivityResult(
        D_A2_ps=d_mean,
        D_err_A2_ps=d_err,
        D_cm2_s=d_mean * A2_PS_TO_CM2_S,
        D_err_cm2_s=d_err * A2_PS_TO_CM2_S,
        mode=mode,
        n_samples=n_samples,
        n_replicas=len(trajs),
        n_blocks_per_replica=n_blocks,
        fit_window_ps=window_ps,
        error_method=error_method,
        loglog_slope=slope,
        excess_loglog_slope=excess_slope,
        plateau_A2=plateau,
        diffusive=diffusive,
        diagnosis=diagnosis,
        lag_times_ps=lags,
        msd_A2=msd_mean,
        msd_err_A2=msd_err,
        block_D_A2_ps=block_d,
    )
