"""Diffusion coefficient by generalised least squares (GLS) over all lags of whole trajectories.

The block estimator of :mod:`.diffusion` fits each time block separately and takes the scatter of the
block slopes as its error: every block wastes the displacements that straddle block boundaries and the
error bar itself comes from a handful of samples. Here the MSD is taken over all time origins of the
whole trajectory at up to ``max_lags`` lags, and the line ``MSD = 6 D t + c`` is fitted with the
covariance between the MSD values at different lags, so that strongly correlated long lags are not
counted as independent evidence. The error follows from that covariance, not from a scatter.

Covariance model (derived for a process with independent, stationary, isotropic increments). Let ``X(s)``
be the displacement of one walker over a lag ``s``. Two displacements of lags ``t_i`` and ``t_j`` whose
time intervals overlap by ``o`` share exactly the displacement over the overlap and are otherwise
independent, and all cross terms vanish by symmetry, so ``Cov(|X_a|^2, |X_b|^2) = v(o)``: the variance of
one squared displacement over the overlap. For such a process ``v(s) = 24 D^2 s^2 + kappa s`` exactly
(``kappa >= 0`` is the rate of the fourth cumulant; 0 for Brownian motion, ``rate * a^4`` for hops of length
``a`` along the cubic axes). Averaging over all origin pairs of the two MSD estimates gives

    Sigma_ij = (1 / n_walkers) * sum_tau count_ij(tau) v(overlap_ij(tau)) / (n_origins_i n_origins_j),

computed exactly on the discrete frame grid. ``D`` in ``v`` is the current estimate (two passes, starting
from ordinary least squares) and ``kappa`` is measured from the empirical variance of a single squared
displacement, ``v_i - 2/3 m_i^2`` (this removes a Gaussian vibration exactly, since a Gaussian walk plus
Gaussian vibration is still Gaussian). Vibration adds covariance only between displacements that share
an end frame, a fraction ~1/lag (in frames) of the origin pairs; that term is neglected. On the test
walks (vibration of 0.3 A, shortest lag 10 frames) it makes sigma ~5 % too small; in real MD, where the
vibration stays correlated over tau_vib / dt frames, the neglected term is that many times larger, so
the window should not start at lags of only a few vibration periods. No Student-t widening is applied:
on the test walks the effective number of samples is >= 30 and the coverage is already 0.63-0.70 (a t
factor for 30 samples would widen sigma by 1.7 %).

The simpler model ``Sigma_ij = v_min(i,j) / N_max(i,j)`` with ``N = n_walkers T / t`` non-overlapping
observations (as in kinisi) over-states the variance at a lag ``t << T`` by 3/2 for Brownian motion (the
exact factor is ``2 t / 3 T``). Measured on the synthetic walks of the tests (4 of 36 atoms mobile, 2000
frames, one replica, window 0.01-0.5): with the same model ``v`` it reports sigma 0.114 for a scatter of
0.091 (1-sigma coverage 0.78; the overlap model: 0.087 for 0.083, coverage 0.69), and with the raw
empirical ``v_i`` it is not positive definite in most seeds. When ``D`` is not positive (immobile or
vibrating atoms) the model above has no scale; the fit then falls back to weighted least squares with the
empirical ``v_i / N_i`` on the diagonal.

The window should start where the MSD is already linear (past the ballistic and vibrational regime and
past correlated back-and-forth hops): the information on D comes mostly from its shortest lags, so a
default start at 1 % of the trajectory is much more precise than one at 10 % (on the test walks the
scatter grows from 0.09 to 0.26, no better than the block estimator), but it also leans hardest on the
assumption of a diffusive regime from that lag on.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import scipy.linalg

from .diffusion import (
    A2_PS_TO_CM2_S,
    MODES,
    DiffusivityResult,
    _diagnose,
    _excess_over_plateau,
    _loglog_slope,
    _parse_fit_window,
    _validate_times,
    _validate_trajectories,
)
from .msd import _as_indices, remove_drift, summed_displacement

__all__ = ["estimate_diffusivity_gls"]

#: Relative jitter added to the diagonal before the Cholesky factorisation (adjacent lags are almost
#: perfectly correlated, so the model covariance is close to singular).
_JITTER = 1e-9
#: GLS passes: each re-scales the model covariance with the D (and kappa) of the previous one.
_N_PASSES = 2


@lru_cache(maxsize=16)
def _overlap_sums(n_frames: int, lag_frames: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``G_p[i, j] = sum_tau count_ij(tau) overlap_ij(tau)^p / (n_i n_j)`` for p = 1, 2 (overlaps in frames).

    ``count_ij(tau)`` is the number of origin pairs ``(s, s + tau)`` with both windows inside the
    trajectory, ``overlap_ij(tau)`` the number of frame steps that window ``[s, s + k_i]`` shares with
    ``[s + tau, s + tau + k_j]``. Depends only on the geometry, so it is cached.
    """
    lags = np.asarray(lag_frames, dtype=np.int64)
    n_origins = n_frames - lags
    g1 = np.empty((lags.size, lags.size))
    g2 = np.empty((lags.size, lags.size))
    k_max = int(lags.max())
    tau = np.arange(-k_max + 1, k_max)
    for i, k_i in enumerate(lags):
        k_j = lags[:, None]
        n_j = n_origins[:, None]
        overlap = np.minimum(k_i, tau + k_j) - np.maximum(0, tau)
        count = np.minimum(n_origins[i], n_j - tau) - np.maximum(0, -tau)
        weight = np.where((overlap > 0) & (count > 0), count, 0).astype(float)
        overlap = np.clip(overlap, 0, None).astype(float)
        g1[i] = (weight * overlap).sum(axis=1) / (n_origins[i] * n_origins)
        g2[i] = (weight * overlap**2).sum(axis=1) / (n_origins[i] * n_origins)
    g1 = 0.5 * (g1 + g1.T)
    g2 = 0.5 * (g2 + g2.T)
    g1.setflags(write=False)
    g2.setflags(write=False)
    return g1, g2


def _squared_displacement_moments(x: np.ndarray, lag_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``|dr|^2`` and of ``|dr|^4`` over all origins and particles of ``x`` at each lag."""
    m2 = np.empty(lag_frames.size)
    m4 = np.empty(lag_frames.size)
    for i, k in enumerate(lag_frames):
        d = x[k:] - x[:-k]
        sq = np.einsum("tpd,tpd->tp", d, d)
        m2[i] = sq.mean()
        m4[i] = np.mean(sq * sq)
    return m2, m4


def _fourth_cumulant_rate(lags: np.ndarray, msd: np.ndarray, var1: np.ndarray, var_msd: np.ndarray) -> float:
    """Rate ``kappa`` of ``v(t) = 2/3 m(t)^2 + kappa t``, from the empirical variances ``var1`` (>= 0).

    ``var1 - 2/3 msd^2`` estimated from the same data is biased low by ``5/3 Var(msd)`` (``E[msd^2]`` and the
    mean of squares both carry that variance); ``var_msd`` is the current model of ``Var(msd)``. The noise of
    the per-lag estimate grows as ``t^1.5``, so the lags are weighted by ``t^-3`` (inverse variance).
    """
    per_lag = (var1 - (2.0 / 3.0) * msd**2 + (5.0 / 3.0) * var_msd) / lags
    weights = lags**-3.0
    return max(float(np.sum(weights * per_lag) / np.sum(weights)), 0.0)


def _gls_line(t: np.ndarray, y: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GLS fit of ``y = a t + b`` with covariance ``cov``: coefficients and their covariance.

    With ``cov = L L^T`` the fit is ordinary least squares of ``L^-1 y`` on ``L^-1 X``; the coefficient
    covariance is ``(X^T cov^-1 X)^-1``. No inverse of ``cov`` is formed.
    """
    cov = cov + _JITTER * np.mean(np.diag(cov)) * np.eye(t.size)
    chol = scipy.linalg.cholesky(cov, lower=True)
    whitened = scipy.linalg.solve_triangular(chol, np.column_stack([t, np.ones_like(t), y]), lower=True)
    xw, yw = whitened[:, :2], whitened[:, 2]
    fisher = xw.T @ xw
    sol = scipy.linalg.solve(fisher, np.column_stack([xw.T @ yw, np.eye(2)]), assume_a="pos")
    return sol[:, 0], sol[:, 1:]


def estimate_diffusivity_gls(
    trajectories: Sequence[np.ndarray],
    times_ps: np.ndarray,
    mobile_indices: Sequence[int],
    reference_indices: Sequence[int] | None = None,
    mode: str = "tracer",
    fit_window: tuple[float, float] = (0.01, 0.5),
    max_lags: int = 64,
) -> DiffusivityResult:
    """Estimate D from replicas of unwrapped trajectories by GLS over the MSD at many lags.

    Every replica is drift-corrected with ``reference_indices`` (``None``: mean of all atoms; pass the
    framework atoms explicitly). At up to ``max_lags`` lags evenly spread over ``fit_window`` (fractions of
    the WHOLE trajectory duration; lag 0 excluded), the mean squared displacement is taken over all time
    origins and all mobile atoms (``tracer``) or of the summed displacement of the mobile atoms
    (``collective``), and averaged over replicas. ``MSD = 6 D t + c`` is then fitted by generalised least
    squares with the model covariance of the module docstring; ``D_err`` is the GLS standard error.

    ``n_samples`` is the effective number of independent 3-D squared displacements: the number that
    would give D the same relative variance, ``(2/3) / (D_err / D)^2``. ``block_D_A2_ps`` holds the GLS D of
    each replica on its own when there are several, else it is empty; ``msd_err_A2`` is the model
    standard error of the MSD at each fitted lag (square root of the diagonal of the covariance used in
    the fit) and ``lag_times_ps`` the fitted lags (not a full grid). ``n_blocks_per_replica`` is 1.

    A non-diffusive run does not raise; ``diffusive``/``diagnosis`` are as in
    :func:`~aiida_lifdiff.analysis.diffusion.estimate_diffusivity`.

    Raises:
        ValueError: inconsistent shapes, unequal time spacing, bad indices, fit window, ``max_lags`` or
            mode, or fewer than two non-zero lags in the fit window.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    if isinstance(max_lags, bool) or not isinstance(max_lags, (int, np.integer)) or max_lags < 2:
        raise ValueError(f"max_lags must be an integer >= 2; got {max_lags!r}")
    fw_lo, fw_hi = _parse_fit_window(fit_window, "trajectory")

    trajs = _validate_trajectories(trajectories)
    n_frames, n_atoms, _ = trajs[0].shape
    if n_frames < 3:
        raise ValueError(f"need at least 3 frames per trajectory; got {n_frames}")
    dt = _validate_times(times_ps, n_frames)
    mobile = _as_indices(mobile_indices, n_atoms, "mobile_indices")
    if reference_indices is not None:
        _as_indices(reference_indices, n_atoms, "reference_indices")

    last = n_frames - 1
    duration = last * dt
    # Window edges in frames, with a tolerance so that an edge landing exactly on a lag is included.
    k_lo = max(1, int(np.ceil(fw_lo * last - 1e-9 * last)))
    k_hi = min(last, int(np.floor(fw_hi * last + 1e-9 * last)))
    if k_hi - k_lo + 1 < 2:
        raise ValueError(
            f"fit window {fit_window} of a {duration:.4g} ps trajectory contains {max(k_hi - k_lo + 1, 0)} "
            "non-zero lag(s); need at least 2 (widen the window or use a longer trajectory)"
        )
    lag_frames = np.unique(np.round(np.linspace(k_lo, k_hi, min(max_lags, k_hi - k_lo + 1))).astype(np.int64))
    lags = lag_frames * dt

    n_rep = len(trajs)
    n_walkers = mobile.size if mode == "tracer" else 1
    m2 = np.empty((n_rep, lag_frames.size))
    m4 = np.empty((n_rep, lag_frames.size))
    for r, traj in enumerate(trajs):
        corrected = remove_drift(traj, reference_indices)
        x = corrected[:, mobile, :] if mode == "tracer" else summed_displacement(corrected, mobile)
        m2[r], m4[r] = _squared_displacement_moments(x, lag_frames)

    g1, g2 = _overlap_sums(n_frames, tuple(int(k) for k in lag_frames))

    def fit(msd: np.ndarray, fourth: np.ndarray, n_indep: int) -> tuple[float, float, np.ndarray, str]:
        """D, its standard error, the model variance of the MSD at each lag, and which model was used."""
        var1 = np.clip(fourth - msd**2, 0.0, None)  # variance of one squared displacement per lag
        d_cur = float(scipy.linalg.lstsq(np.column_stack([lags, np.ones_like(lags)]), msd)[0][0]) / 6.0
        kappa = 0.0
        for _ in range(_N_PASSES):
            if not d_cur > 0:
                break
            cov = (24.0 * (d_cur * dt) ** 2 * g2 + kappa * dt * g1) / n_indep
            kappa = _fourth_cumulant_rate(lags, msd, var1, np.diag(cov))
            cov = (24.0 * (d_cur * dt) ** 2 * g2 + kappa * dt * g1) / n_indep
            coef, coef_cov = _gls_line(lags, msd, cov)
            d_cur = float(coef[0]) / 6.0
        if d_cur > 0:
            return d_cur, float(np.sqrt(coef_cov[0, 0])) / 6.0, np.diag(cov).copy(), "overlap"
        # No positive D to scale the model (immobile or only vibrating atoms): weighted least squares
        # with the empirical variance of each MSD value, v_i / N_i, and no correlation between lags. The
        # error bar is rough, but such a run is flagged as non-diffusive anyway.
        n_obs = n_indep * duration / lags  # non-overlapping observations per lag
        floor = 1e-12 * (float(var1.max()) if var1.max() > 0 else 1.0)  # all-zero variances: immobile atoms
        var_msd = np.maximum(var1, floor) / n_obs
        coef, coef_cov = _gls_line(lags, msd, np.diag(var_msd))
        return float(coef[0]) / 6.0, float(np.sqrt(coef_cov[0, 0])) / 6.0, var_msd, "empirical"

    msd_mean = m2.mean(axis=0)
    d_hat, d_err, var_msd, cov_kind = fit(msd_mean, m4.mean(axis=0), n_rep * n_walkers)
    per_replica = np.array([fit(m2[r], m4[r], n_walkers)[0] for r in range(n_rep)]) if n_rep > 1 else np.empty(0)

    rel = d_err / abs(d_hat) if d_hat != 0 else np.inf
    n_eff = (2.0 / 3.0) / rel**2 if np.isfinite(rel) and rel > 0 else 0.0
    n_samples = max(int(round(n_eff)), 1)

    msd_err = np.sqrt(var_msd)
    slope = _loglog_slope(lags, msd_mean)
    excess, plateau = _excess_over_plateau(lags, msd_mean)
    excess_slope = _loglog_slope(lags, excess)
    diffusive, diagnosis = _diagnose(excess_slope, d_hat, d_err)

    what = "tracer MSD over all mobile atoms" if mode == "tracer" else "MSD of the summed displacement"
    model = (
        "covariance between lags from the overlap of their time windows (independent-increment model, "
        "v(s) = 24 D^2 s^2 + kappa s)"
        if cov_kind == "overlap"
        else "weighted least squares with the empirical variance at each lag (D not positive, no model scale)"
    )
    error_method = (
        f"generalised least squares of MSD = 6 D t + c over {lag_frames.size} lags in "
        f"{lags[0]:.4g}-{lags[-1]:.4g} ps of the whole {duration:.4g} ps trajectory ({what}, all time "
        f"origins, {n_rep} replica(s)), {model}; D_err is the GLS standard error, worth ~{n_samples} "
        "independent squared displacements"
    )
    return DiffusivityResult(
        D_A2_ps=d_hat,
        D_err_A2_ps=d_err,
        D_cm2_s=d_hat * A2_PS_TO_CM2_S,
        D_err_cm2_s=d_err * A2_PS_TO_CM2_S,
        mode=mode,
        n_samples=n_samples,
        n_replicas=n_rep,
        n_blocks_per_replica=1,
        fit_window_ps=(float(lags[0]), float(lags[-1])),
        error_method=error_method,
        loglog_slope=slope,
        excess_loglog_slope=excess_slope,
        plateau_A2=plateau,
        diffusive=diffusive,
        diagnosis=diagnosis,
        lag_times_ps=lags,
        msd_A2=msd_mean,
        msd_err_A2=msd_err,
        block_D_A2_ps=per_replica,
    )
