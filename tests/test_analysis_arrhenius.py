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


def test_extrapolated_d_is_a_calibrated_interval_in_log_space():
    """D(300 K) from 600-1000 K data: the 1-sigma factor covers the true D300 in ~68 % of noisy repeats."""
    from aiida_lifdiff.analysis.arrhenius import extrapolation_interval

    rng = np.random.default_rng(7)
    true300 = _d_true(300.0)
    covered, factors = 0, []
    trials = 400
    for _ in range(trials):
        d, d_err = _noisy(rng)
        interval = extrapolation_interval(fit_arrhenius(TEMPS, d, d_err), 300.0, birge=False)
        assert interval["low_cm2_s"] < interval["D_cm2_s"] < interval["high_cm2_s"]
        covered += interval["low_cm2_s"] <= true300 <= interval["high_cm2_s"]
        factors.append(interval["factor"])
    assert 0.62 <= covered / trials <= 0.74
    # Extrapolating 2-3x below the data: the error is a factor well above 1, never a negative lower bound.
    assert min(factors) > 1.2


def test_extrapolation_interval_takes_the_birge_scale_when_the_points_scatter():
    from aiida_lifdiff.analysis.arrhenius import extrapolation_interval

    d = _d_true(TEMPS) * np.array([1.0, 1.3, 0.8, 1.25, 0.85])  # 5 % errors claimed, 20-30 % scatter
    result = fit_arrhenius(TEMPS, d, 0.05 * d)
    assert result.chi2_dof > 4
    plain = extrapolation_interval(result, 300.0, birge=False)
    scaled = extrapolation_interval(result, 300.0)
    assert scaled["birge_scale"] == pytest.approx(np.sqrt(result.chi2_dof))
    assert np.log(scaled["factor"]) == pytest.approx(np.log(plain["factor"]) * np.sqrt(result.chi2_dof))
    with pytest.raises(ArrheniusFitError, match="> 0 K"):
        extrapolation_interval(result, -5.0)


def _diffusivity_entry(temperature, d, diffusive=True):
    record = {"D_cm2_s": d, "D_err_cm2_s": 0.05 * d, "diffusive": diffusive, "diagnosis": "" if diffusive else "flat"}
    return {"temperature_K": temperature, "tracer": record, "collective": record}


def test_a_dropped_temperature_is_named_and_its_effect_on_ea_reported(aiida_profile):
    """A non-diffusive temperature is left out of the fit, said so, and the fit with it is reported beside."""
    from aiida import orm

    from aiida_lifdiff.workflows.functions.arrhenius import fit_arrhenius as fit_calcfunction

    temperatures = [500.0, 600.0, 700.0, 800.0, 900.0]
    d = _d_true(temperatures)
    d_low = d[0] * 10  # the 500 K run never left its plateau: an apparent D far above the Arrhenius line
    entries = {
        f"T_{i}": orm.Dict(_diffusivity_entry(t, d_low if i == 0 else v, diffusive=i != 0))
        for i, (t, v) in enumerate(zip(temperatures, d))
    }
    result = fit_calcfunction(orm.Dict({"primary_mode": "tracer"}), **entries)["arrhenius"]["tracer"]
    assert result["fit_ok"] and result["Ea_eV"] == pytest.approx(EA, rel=1e-6)
    assert [x["temperature_K"] for x in result["excluded"]] == [500.0]
    sensitivity = result["sensitivity"]
    assert sensitivity["excluded_temperatures_K"] == [500.0]
    assert sensitivity["Ea_with_excluded_eV"] < EA - 0.05  # the plateau point flattens the line: Ea drops
    assert sensitivity["delta_Ea_eV"] == pytest.approx(sensitivity["Ea_with_excluded_eV"] - result["Ea_eV"])
    low, high = result["D300_interval_cm2_s"]
    assert low < result["D300_cm2_s"] < high and result["D300_factor"] == pytest.approx(high / result["D300_cm2_s"])
