"""Tests for the MSD kernels and trajectory preprocessing."""

import numpy as np
import pytest

from aiida_lifdiff.analysis.msd import (
    msd_fft,
    msd_fft_per_particle,
    remove_drift,
    summed_displacement,
    unwrap,
)


def _msd_brute_force(x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    out = np.zeros((n, x.shape[1]))
    for lag in range(1, n):
        acc = np.zeros(x.shape[1])
        for origin in range(n - lag):
            acc += np.sum((x[origin + lag] - x[origin]) ** 2, axis=-1)
        out[lag] = acc / (n - lag)
    return out


@pytest.mark.parametrize("n_frames", [1, 2, 7, 64, 101])
def test_msd_fft_matches_double_loop(n_frames):
    rng = np.random.default_rng(n_frames)
    # Large offset plus a random walk: checks that cancellation between S1 and 2*S2 stays harmless.
    x = 50.0 + np.cumsum(rng.normal(size=(n_frames, 5, 3)), axis=0)
    expected = _msd_brute_force(x)
    got = msd_fft_per_particle(x)
    assert got.shape == (n_frames, 5)
    np.testing.assert_allclose(got[1:], expected[1:], rtol=1e-10)
    np.testing.assert_allclose(msd_fft(x), expected.mean(axis=1), rtol=1e-10, atol=0)
    assert got[0].tolist() == [0.0] * 5


def test_msd_fft_pure_random_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, size=(40, 3, 3))
    np.testing.assert_allclose(msd_fft_per_particle(x)[1:], _msd_brute_force(x)[1:], rtol=1e-10)


def _wrap(positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    frac = positions @ np.linalg.inv(cell)
    return (frac - np.floor(frac)) @ cell


@pytest.mark.parametrize(
    "cell",
    [
        np.diag([4.0, 4.0, 4.0]),
        np.array([[5.0, 0.0, 0.0], [2.1, 4.3, 0.0], [-1.2, 1.4, 4.6]]),
    ],
    ids=["cubic", "triclinic"],
)
def test_unwrap_constant_velocity_crosses_box_many_times(cell):
    dt = 0.05
    n_frames = 400
    t = np.arange(n_frames) * dt
    velocities = np.array([[13.0, -7.0, 9.5], [-4.0, 11.0, -15.0]])
    start = np.array([[0.3, 0.2, 0.1], [1.0, 2.0, 3.0]])
    true = start[None] + t[:, None, None] * velocities[None]
    # Many box lengths travelled, yet each frame-to-frame step is well below half a cell.
    assert np.ptp(true[:, 0, 0]) > 10 * cell[0, 0]
    wrapped = _wrap(true, cell)
    assert np.max(np.abs(wrapped - true)) > cell[0, 0]  # wrapping really happened

    unwrapped = unwrap(wrapped, cell)
    shift = unwrapped[0] - true[0]  # unwrap keeps frame 0 in the home cell
    np.testing.assert_allclose(unwrapped - shift, true, rtol=0, atol=1e-8)

    expected = (np.linalg.norm(velocities, axis=1)[None, :] * t[:, None]) ** 2
    np.testing.assert_allclose(msd_fft_per_particle(unwrapped), expected, rtol=1e-8, atol=1e-8)


def test_unwrap_rejects_bad_cell():
    x = np.zeros((3, 1, 3))
    with pytest.raises(ValueError, match="cell must be a"):
        unwrap(x, np.eye(2))
    with pytest.raises(ValueError, match="singular"):
        unwrap(x, np.zeros((3, 3)))


def test_remove_drift_uses_reference_only():
    rng = np.random.default_rng(1)
    n_frames = 20
    framework = rng.normal(size=(1, 4, 3)) + 0.01 * rng.normal(size=(n_frames, 4, 3))
    mobile = np.cumsum(rng.normal(size=(n_frames, 2, 3)), axis=0)
    drift = np.linspace(0, 5, n_frames)[:, None, None] * np.array([1.0, -2.0, 0.5])
    x = np.concatenate([mobile, framework], axis=1) + drift
    corrected = remove_drift(x, [2, 3, 4, 5])
    ref_disp = corrected[:, 2:] - corrected[0, 2:]
    np.testing.assert_allclose(ref_disp.mean(axis=1), 0.0, atol=1e-12)
    # The mobile atoms get the same correction: their motion relative to the framework is preserved.
    rel = x[:, :2] - x[:, 2:].mean(axis=1, keepdims=True)
    rel_c = corrected[:, :2] - corrected[:, 2:].mean(axis=1, keepdims=True)
    np.testing.assert_allclose(rel - rel[0], rel_c - rel_c[0], atol=1e-12)
    # None -> all atoms: the all-atom mean displacement vanishes.
    all_c = remove_drift(x, None)
    np.testing.assert_allclose((all_c - all_c[0]).mean(axis=1), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="reference_indices must lie in"):
        remove_drift(x, [0, 99])


def test_summed_displacement():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 5, 3))
    s = summed_displacement(x, [1, 3])
    assert s.shape == (10, 1, 3)
    np.testing.assert_allclose(s[:, 0], (x[:, 1] - x[0, 1]) + (x[:, 3] - x[0, 3]))
    assert np.all(s[0] == 0)


def test_msd_shape_validation():
    with pytest.raises(ValueError, match=r"must have shape \(n_frames, n_atoms, 3\)"):
        msd_fft(np.zeros((10, 3)))
