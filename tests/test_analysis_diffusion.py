"""Tests for the block/replica diffusivity estimator on synthetic trajectories with known D."""

import json

import numpy as np
import pytest

from aiida_lifdiff.analysis.diffusion import DiffusivityResult, estimate_diffusivity
from aiida_lifdiff.analysis.msd import msd_fft

D_TRUE = 0.05  # A^2/ps
DT = 0.1  # ps
N_FRAMES = 500
N_MOBILE = 8
N_FRAMEWORK = 4


def _random_walk(rng, n_replicas, n_frames=N_FRAMES, n_walkers=N_MOBILE, n_still=0, n_framework=N_FRAMEWORK):
    """Walkers first, then ``n_still`` mobile-listed atoms that never move, then a rigid framework."""
    steps = rng.normal(scale=np.sqrt(2.0 * D_TRUE * DT), size=(n_replicas, n_frames, n_walkers, 3))
    steps[:, 0] = 0.0
    walkers = 10.0 + np.cumsum(steps, axis=1)
    still = np.broadcast_to(
        rng.uniform(0, 10, size=(1, 1, n_still + n_framework, 3)),
        (n_replicas, n_frames, n_still + n_framework, 3),
    )
    return [np.concatenate([walkers[r], still[r]], axis=1) for r in range(n_replicas)]


TIMES = np.arange(N_FRAMES) * DT
MOBILE = list(range(N_MOBILE))
FRAMEWORK = list(range(N_MOBILE, N_MOBILE + N_FRAMEWORK))


def test_single_random_walk_is_diffusive_and_serialisable():
    trajs = _random_walk(np.random.default_rng(123), 2)
    res = estimate_diffusivity(trajs, TIMES, MOBILE, FRAMEWORK)
    assert isinstance(res, DiffusivityResult)
    assert res.diffusive, res.diagnosis
    assert res.diagnosis == ""
    assert 0.85 < res.loglog_slope < 1.15
    assert abs(res.D_A2_ps - D_TRUE) < 4 * res.D_err_A2_ps
    assert res.D_cm2_s == pytest.approx(res.D_A2_ps * 1e-4)
    assert res.D_err_cm2_s == pytest.approx(res.D_err_A2_ps * 1e-4)
    assert (res.n_samples, res.n_replicas, res.n_blocks_per_replica) == (10, 2, 5)
    assert "2 replica(s) x 5 block(s)" in res.error_method
    blocks = res.block_D_A2_ps
    assert blocks.shape == (10,)
    assert res.D_A2_ps == pytest.approx(blocks.mean(), rel=1e-12)
    assert res.D_err_A2_ps == pytest.approx(blocks.std(ddof=1) / np.sqrt(10), rel=1e-12)
    # Block of 100 frames -> 9.9 ps; window 0.1..0.6 of it, snapped to the lag grid.
    assert res.fit_window_ps == pytest.approx((1.0, 5.9))
    assert res.lag_times_ps.shape == res.msd_A2.shape == res.msd_err_A2.shape == (100,)
    np.testing.assert_allclose(res.msd_A2[10:60], 6 * D_TRUE * res.lag_times_ps[10:60], rtol=0.25)
    d = res.to_dict()
    json.dumps(d)
    assert "msd_A2" not in d and "lag_times_ps" not in d
    assert d["diffusive"] is True and d["n_samples"] == 10


def test_random_walk_estimator_unbiased_with_calibrated_errors():
    n_seeds = 300
    est = np.empty(n_seeds)
    err = np.empty(n_seeds)
    for seed in range(n_seeds):
        trajs = _random_walk(np.random.default_rng(seed), 2)
        res = estimate_diffusivity(trajs, TIMES, MOBILE, FRAMEWORK, n_blocks=5)
        est[seed], err[seed] = res.D_A2_ps, res.D_err_A2_ps
    sem = est.std(ddof=1) / np.sqrt(n_seeds)
    coverage = np.mean(np.abs(est - D_TRUE) <= err)
    print(
        f"\nrandom walk: mean D = {est.mean():.5f} +/- {sem:.5f} (true {D_TRUE}); "
        f"1-sigma coverage = {coverage:.3f} over {n_seeds} seeds"
    )
    assert abs(est.mean() - D_TRUE) < 3 * sem
    # 10 independent blocks -> t-distribution with 9 dof: P(|t| <= 1) = 0.657. Measured: 0.673.
    assert 0.55 <= coverage <= 0.80
    # The error bar must also be about the right size on average, not just cover by luck.
    assert 0.8 < np.mean(err) / est.std(ddof=1) < 1.2


def test_collective_mode_single_mover():
    n_mobile_listed = 4  # one walker + 3 atoms that belong to the defect but do not move
    n_frames = 2000
    times = np.arange(n_frames) * DT
    mobile = list(range(n_mobile_listed))
    framework = list(range(n_mobile_listed, n_mobile_listed + N_FRAMEWORK))
    # One particle gives skewed, noisy block estimates (single runs can sit 3-4 sigma off), so the
    # bias check is made on the mean over independent seeds.
    est = []
    for seed in range(30):
        trajs = _random_walk(np.random.default_rng(seed), 2, n_frames=n_frames, n_walkers=1, n_still=3)
        coll = estimate_diffusivity(trajs, times, mobile, framework, mode="collective")
        est.append(coll.D_A2_ps)
    est = np.array(est)
    sem = est.std(ddof=1) / np.sqrt(est.size)
    assert abs(est.mean() - D_TRUE) < 3 * sem
    assert abs(est.mean() - D_TRUE) < 0.1 * D_TRUE

    tracer = estimate_diffusivity(trajs, times, mobile, framework, mode="tracer")
    assert coll.mode == "collective" and coll.n_samples == 10
    # Tracer averages the one mover with three immobile atoms.
    assert tracer.D_A2_ps == pytest.approx(coll.D_A2_ps / n_mobile_listed, rel=1e-10)


def test_collective_mode_correlated_movers_differs_from_tracer():
    # Two atoms that always move together: summed displacement is 2x, so collective D = 4 D_tracer.
    base = _random_walk(np.random.default_rng(3), 2, n_walkers=1)
    trajs = [np.concatenate([b[:, :1], b[:, :1] + 1.0, b[:, 1:]], axis=1) for b in base]
    fw = list(range(2, 2 + N_FRAMEWORK))
    coll = estimate_diffusivity(trajs, TIMES, [0, 1], fw, mode="collective")
    tracer = estimate_diffusivity(trajs, TIMES, [0, 1], fw, mode="tracer")
    assert coll.D_A2_ps == pytest.approx(4 * tracer.D_A2_ps, rel=1e-10)


def _vibrations(rng, n_frames, n_atoms, amplitude=0.3):
    """Bounded THz-like oscillations plus noise, one independent set per call."""
    t = np.arange(n_frames) * DT
    omega = rng.uniform(5.0, 30.0, size=(1, n_atoms, 3))  # rad/ps
    phase = rng.uniform(0, 2 * np.pi, size=(1, n_atoms, 3))
    return amplitude * np.sin(omega * t[:, None, None] + phase) + 0.02 * rng.normal(size=(n_frames, n_atoms, 3))


def test_vibrating_atoms_flagged_non_diffusive():
    rng = np.random.default_rng(11)
    n_frames = 500
    t = np.arange(n_frames) * DT
    sites = rng.uniform(0, 10, size=(1, N_MOBILE + N_FRAMEWORK, 3))
    trajs = [sites + _vibrations(rng, n_frames, N_MOBILE + N_FRAMEWORK, 0.1) for _ in range(2)]
    res = estimate_diffusivity(trajs, t, MOBILE, FRAMEWORK)
    assert res.diffusive is False
    assert abs(res.loglog_slope) < 0.3
    assert "plateau" in res.diagnosis
    assert res.to_dict()["diagnosis"] == res.diagnosis


def test_one_mover_among_many_vibrating_atoms_is_diffusive():
    # The crystal case: 1 of 32 mobile-listed atoms hops, all vibrate. The vibrational plateau dominates
    # the tracer MSD, so its raw exponent is far below 1, yet D is the hopper's D / 32 and is diffusive.
    rng = np.random.default_rng(5)
    n_mobile, n_frames, d_hopper = 32, 1000, 0.5
    t = np.arange(n_frames) * DT
    trajs = []
    for _ in range(2):
        steps = rng.normal(scale=np.sqrt(2 * d_hopper * DT), size=(n_frames, 1, 3))
        steps[0] = 0
        positions = np.broadcast_to(
            rng.uniform(0, 10, size=(1, n_mobile + N_FRAMEWORK, 3)), (n_frames, n_mobile + N_FRAMEWORK, 3)
        ).copy()
        positions[:, :1] += np.cumsum(steps, axis=0)
        positions[:, :n_mobile] += _vibrations(rng, n_frames, n_mobile)
        trajs.append(positions)
    framework = list(range(n_mobile, n_mobile + N_FRAMEWORK))
    res = estimate_diffusivity(trajs, t, list(range(n_mobile)), framework, n_blocks=5)
    print(
        f"raw exponent {res.loglog_slope:.2f}, above plateau {res.excess_loglog_slope:.2f}, "
        f"plateau {res.plateau_A2:.3f} A^2, D = {res.D_A2_ps:.4f} +- {res.D_err_A2_ps:.4f}"
    )
    assert res.loglog_slope < 0.7, "the raw exponent alone would call this non-diffusive"
    assert res.diffusive, res.diagnosis
    assert 0.7 <= res.excess_loglog_slope <= 1.3
    assert res.plateau_A2 > 0
    assert abs(res.D_A2_ps - d_hopper / n_mobile) < 3 * res.D_err_A2_ps


def test_immobile_atoms_do_not_raise():
    still = _random_walk(np.random.default_rng(0), 2, n_walkers=0, n_still=N_MOBILE)
    res = estimate_diffusivity(still, TIMES, MOBILE, FRAMEWORK)
    assert res.diffusive is False
    assert "not positive" in res.diagnosis


def test_drift_is_removed():
    trajs = _random_walk(np.random.default_rng(5), 2)
    drift = (0.3 * TIMES)[:, None, None] * np.array([1.0, 0.0, 0.0])  # 0.3 A/ps rigid-body drift
    drifted = [t + drift for t in trajs]
    clean = estimate_diffusivity(trajs, TIMES, MOBILE, FRAMEWORK)
    corrected = estimate_diffusivity(drifted, TIMES, MOBILE, FRAMEWORK)
    assert corrected.D_A2_ps == pytest.approx(clean.D_A2_ps, rel=1e-9)
    # Sanity check that the drift was large enough to matter: the raw MSD would be far off.
    raw = msd_fft(drifted[0][:100, MOBILE])
    assert raw[50] > 2 * corrected.msd_A2[50]


def _base_args():
    return _random_walk(np.random.default_rng(0), 2, n_frames=100), np.arange(100) * DT


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "bogus"}, "mode must be one of"),
        ({"n_blocks": 0}, "n_blocks must be an integer >= 1"),
        ({"n_blocks": 11}, "frames per block; need at least 10"),
        ({"fit_window": (0.6, 0.1)}, "0 <= start < end <= 1"),
        ({"fit_window": (0.0, 1.5)}, "0 <= start < end <= 1"),
        ({"fit_window": (0.5, 0.52)}, "need at least 2"),
        ({"mobile_indices": [0, 500]}, "mobile_indices must lie in"),
        ({"mobile_indices": []}, "non-empty"),
        ({"reference_indices": [-1]}, "reference_indices must lie in"),
    ],
)
def test_validation_errors(kwargs, match):
    trajs, times = _base_args()
    args = {
        "trajectories": trajs,
        "times_ps": times,
        "mobile_indices": MOBILE,
        "reference_indices": FRAMEWORK,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        estimate_diffusivity(**args)


def test_validation_times_and_shapes():
    trajs, times = _base_args()
    bad_times = times.copy()
    bad_times[50:] += DT  # a dropped frame
    with pytest.raises(ValueError, match="equally spaced"):
        estimate_diffusivity(trajs, bad_times, MOBILE, FRAMEWORK)
    with pytest.raises(ValueError, match="strictly increasing"):
        estimate_diffusivity(trajs, times[::-1], MOBILE, FRAMEWORK)
    with pytest.raises(ValueError, match="one entry per frame"):
        estimate_diffusivity(trajs, times[:-1], MOBILE, FRAMEWORK)
    with pytest.raises(ValueError, match="must share frames and atoms"):
        estimate_diffusivity([trajs[0], trajs[1][:-1]], times, MOBILE, FRAMEWORK)
    with pytest.raises(ValueError, match="one per replica"):
        estimate_diffusivity(trajs[0], times, MOBILE, FRAMEWORK)
    with pytest.raises(ValueError, match="at least 2 independent samples"):
        estimate_diffusivity(trajs[:1], times, MOBILE, FRAMEWORK, n_blocks=1)
    # One replica cut in two blocks is allowed.
    assert estimate_diffusivity(trajs[:1], times, MOBILE, FRAMEWORK, n_blocks=2).n_samples == 2
