"""Tests for the Arrhenius fit, its error propagation, and the plotting helpers."""

import json

import numpy as np
import pytest

from aiida_lifdiff.analysis import (
    K_B_EV_K,
    ArrheniusFitError,
    ArrheniusResult,
    arrhenius_extrapolate,
    fit_arrhenius,
    plot_arrhenius,
    plot_msd,
)

EA = 0.3  # eV
D0 = 1e-3  # cm^2/s
TEMPS = np.array([600.0, 700.0, 800.0, 900.0, 1000.0])
REL_NOISE = 0.05


def _d_true(temps):
    return D0 * np.exp(-EA / (K_B_EV_K * np.asarray(temps)))


def _noisy(rng):
    d = _d_true(TEMPS) * np.exp(REL_NOISE * rng.normal(size=TEMPS.size))
    return d, REL_NOISE * d


def test_exact_data_recovered():
    d = _d_true(TEMPS)
    res = fit_arrhenius(TEMPS, d, 0.05 * d)
    assert res.Ea_eV == pytest.approx(EA, rel=1e-10)
    assert res.D0_cm2_s == pytest.approx(D0, rel=1e-9)
    assert res.chi2_dof == pytest.approx(0.0, abs=1e-15)
    assert res.D300_cm2_s == pytest.approx(_d_true(300.0), rel=1e-9)
    assert res.n_points == 5


def test_errors_match_analytic_weighted_fit():
    # For equal sigma(ln D) = s, var(Ea) = s^2 / sum((beta - mean beta)^2).
    d = _d_true(TEMPS)
    res = fit_arrhenius(TEMPS, d, REL_NOISE * d)
    beta = 1.0 / (K_B_EV_K * TEMPS)
    expected = REL_NOISE / np.sqrt(np.sum((beta - beta.mean()) ** 2))
    assert res.Ea_err_eV == pytest.approx(expected, rel=1e-9)
    cov = np.array(res.covariance)
    assert cov.shape == (2, 2) and cov[0, 1] == pytest.approx(cov[1, 0])
    # Full-covariance propagation at 300 K, checked against Monte Carlo over the parameter distribution.
    rng = np.random.default_rng(0)
    samples = rng.multivariate_normal([np.log(res.D0_cm2_s), res.Ea_eV], cov, size=200_000)
    ln_d300 = samples[:, 0] - samples[:, 1] / (K_B_EV_K * 300.0)
    assert res.D300_err_cm2_s / res.D300_cm2_s == pytest.approx(ln_d300.std(), rel=0.01)
    # Ignoring the (strongly negative) covariance would give a much larger error.
    naive = np.sqrt(cov[0, 0] + cov[1, 1] / (K_B_EV_K * 300.0) ** 2)
    assert res.D300_err_cm2_s / res.D300_cm2_s < 0.9 * naive


def test_noisy_fit_recovers_ea_and_serialises():
    res = fit_arrhenius(TEMPS, *_noisy(np.random.default_rng(42)))
    assert isinstance(res, ArrheniusResult)
    assert abs(res.Ea_eV - EA) < 3 * res.Ea_err_eV
    assert 0.005 < res.Ea_err_eV < 0.05
    d = res.to_dict()
    assert json.loads(json.dumps(d))["Ea_eV"] == pytest.approx(res.Ea_eV)
    assert "absolute" in d["method"]


def test_ea_coverage_and_chi2_over_seeds():
    n_seeds = 500
    ea = np.empty(n_seeds)
    ea_err = np.empty(n_seeds)
    chi2 = np.empty(n_seeds)
    for seed in range(n_seeds):
        res = fit_arrhenius(TEMPS, *_noisy(np.random.default_rng(seed)))
        ea[seed], ea_err[seed], chi2[seed] = res.Ea_eV, res.Ea_err_eV, res.chi2_dof
    coverage = np.mean(np.abs(ea - EA) <= ea_err)
    print(
        f"\narrhenius: mean Ea = {ea.mean():.4f} eV, 1-sigma coverage = {coverage:.3f}, "
        f"mean chi2/dof = {chi2.mean():.3f} over {n_seeds} seeds"
    )
    # Gaussian errors in ln D with known sigma: nominal 0.683. Measured: 0.674.
    assert 0.62 <= coverage <= 0.74
    # chi2/dof with 3 dof has mean 1 and sd 0.82, so the mean over 500 seeds has sd 0.037.
    assert 0.88 <= chi2.mean() <= 1.12
    assert abs(ea.mean() - EA) < 3 * ea.std(ddof=1) / np.sqrt(n_seeds)


def test_chi2_flags_underestimated_errors():
    d, _ = _noisy(np.random.default_rng(1))
    honest = fit_arrhenius(TEMPS, d, REL_NOISE * d)
    optimistic = fit_arrhenius(TEMPS, d, 0.1 * REL_NOISE * d)
    assert optimistic.chi2_dof == pytest.approx(100 * honest.chi2_dof, rel=1e-9)
    # Absolute sigma: the parameter errors shrink with the input errors, no chi2 rescaling.
    assert optimistic.Ea_err_eV == pytest.approx(0.1 * honest.Ea_err_eV, rel=1e-9)
    assert optimistic.Ea_eV == pytest.approx(honest.Ea_eV, rel=1e-12)


def test_extrapolate_scalar_and_array():
    res = fit_arrhenius(TEMPS, *_noisy(np.random.default_rng(3)))
    d300, err300 = arrhenius_extrapolate(res, 300.0)
    assert isinstance(d300, float)
    assert d300 == pytest.approx(res.D300_cm2_s, rel=1e-12)
    assert err300 == pytest.approx(res.D300_err_cm2_s, rel=1e-12)
    d_arr, err_arr = arrhenius_extrapolate(res, [600.0, 1000.0])
    assert d_arr.shape == err_arr.shape == (2,)
    # Relative error is smallest inside the fitted range and grows outside it.
    assert err300 / d300 > err_arr[0] / d_arr[0]
    with pytest.raises(ArrheniusFitError, match="> 0 K"):
        arrhenius_extrapolate(res, 0.0)


@pytest.mark.parametrize(
    ("temps", "d", "d_err", "match"),
    [
        ([600, 800], [1e-6, 1e-5], [1e-7, 1e-6], "at least 3 temperatures"),
        ([600, 600, 800], [1e-6, 1e-6, 1e-5], [1e-7, 1e-7, 1e-6], "duplicate temperatures"),
        ([0, 600, 800], [1e-6, 1e-6, 1e-5], [1e-7, 1e-7, 1e-6], "must be > 0 K"),
        ([-5, 600, 800], [1e-6, 1e-6, 1e-5], [1e-7, 1e-7, 1e-6], "must be > 0 K"),
        ([500, 600, 800], [0.0, 1e-6, 1e-5], [1e-7, 1e-7, 1e-6], "all D must be > 0"),
        ([500, 600, 800], [-1e-7, 1e-6, 1e-5], [1e-7, 1e-7, 1e-6], "all D must be > 0"),
        ([500, 600, 800], [1e-7, 1e-6, 1e-5], [0.0, 1e-7, 1e-6], "all D_err must be > 0"),
        ([500, 600, 800], [1e-7, 1e-6, 1e-5], [-1e-8, 1e-7, 1e-6], "all D_err must be > 0"),
        ([500, np.nan, 800], [1e-7, 1e-6, 1e-5], [1e-8, 1e-7, 1e-6], "temperatures_K contains non-finite"),
        ([500, 600, 800], [1e-7, np.inf, 1e-5], [1e-8, 1e-7, 1e-6], "D contains non-finite"),
        ([500, 600, 800], [1e-7, 1e-6, 1e-5], [1e-8, np.nan, 1e-6], "D_err contains non-finite"),
        ([500, 600, 800], [1e-7, 1e-6], [1e-8, 1e-7, 1e-6], "equal lengths"),
    ],
)
def test_bad_input_raises(temps, d, d_err, match):
    with pytest.raises(ArrheniusFitError, match=match) as excinfo:
        fit_arrhenius(temps, d, d_err)
    assert isinstance(excinfo.value, ValueError)


def _png_ok(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_arrhenius_writes_png(tmp_path):
    res = fit_arrhenius(TEMPS, *_noisy(np.random.default_rng(5)))
    out = plot_arrhenius(
        res,
        tmp_path / "arrhenius.png",
        title="LiF Li diffusion",
        extra_points=[(500.0, 2e-7, 1e-7, "500 K (not diffusive)")],
    )
    assert out == tmp_path / "arrhenius.png"
    assert _png_ok(out)
    plot_arrhenius(res, tmp_path / "plain.png")
    assert _png_ok(tmp_path / "plain.png")


def test_plot_msd_writes_png(tmp_path):
    t = np.arange(100) * 0.1
    msd = 0.3 * t + 0.05
    out = plot_msd(t, msd, 0.02 * msd + 0.01, (1.0, 5.9), 0.05, str(tmp_path / "msd.png"), title="tracer")
    assert _png_ok(out)
