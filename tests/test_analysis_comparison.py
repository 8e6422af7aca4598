"""The comparison table's arithmetic: differences to the reference in units of the combined error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiida_lifdiff.analysis import fit_arrhenius
from aiida_lifdiff.analysis.comparison import comparison_row, difference, ea_error


def _record(ea: float, err: float, chi2: float = 1.0, scaled: float | None = None) -> dict:
    record = {"fit_ok": True, "Ea_eV": ea, "Ea_err_eV": err, "chi2_dof": chi2, "D0_cm2_s": 1e-3, "points": []}
    if scaled is not None:
        record["Ea_err_scaled_eV"] = scaled
    return record


def test_difference_is_in_units_of_the_quadrature_error():
    result = difference(0.30, 0.03, 0.26, 0.04)
    assert result["delta_Ea_eV"] == pytest.approx(0.04)
    assert result["delta_Ea_err_eV"] == pytest.approx(0.05)  # 3-4-5
    assert result["delta_sigma"] == pytest.approx(0.8)


def test_a_poor_fit_is_compared_with_its_birge_scaled_error():
    assert ea_error(_record(0.2, 0.01, chi2=4.0, scaled=0.02)) == 0.02
    # chi2/dof < 1 never shrinks the error below the statistical one.
    assert ea_error(_record(0.2, 0.01, chi2=0.25, scaled=0.005)) == 0.01


def test_rows_keep_missing_numbers_missing():
    reference = _record(0.25, 0.02)
    failed = {"fit_ok": False, "reason": "only 2 of 3 temperatures diffusive", "points": []}
    row = comparison_row("mace", failed, reference, errors={"force_rmse_meV_per_A": 31.0, "n_frames": 12})
    assert row["fit_ok"] is False and "delta_sigma" not in row and row["reason"].startswith("only 2")
    assert row["eval_force_rmse_meV_per_A"] == 31.0 and row["eval_n_frames"] == 12
    row = comparison_row("deepmd", None, reference)
    assert row["fit_ok"] is False and "diffusion work chain failed" in row["reason"]
    # No difference against a reference without a fit.
    row = comparison_row("mace", _record(0.3, 0.02), {"fit_ok": False, "reason": "x"})
    assert row["fit_ok"] and "delta_sigma" not in row


def test_two_fits_of_the_same_arrhenius_law_agree_within_their_combined_error():
    """Synthetic D(T) with a known Ea and 5 % noise, two independent 'potentials', 400 seeds: the pull
    delta/combined error is standard normal, so |pull| < 1 about 68 % of the time."""
    temperatures = np.array([500.0, 600.0, 700.0, 800.0, 900.0])
    k_b = 8.617333262e-5
    truth = 1e-3 * np.exp(-0.3 / (k_b * temperatures))
    pulls = []
    for seed in range(400):
        rng = np.random.default_rng(seed)
        fits = []
        for _ in range(2):
            d = truth * (1 + 0.05 * rng.standard_normal(temperatures.size))
            fits.append(fit_arrhenius(temperatures, d, 0.05 * truth).to_dict())
        first = comparison_row("a", {**fits[0], "fit_ok": True, "points": []}, {**fits[1], "fit_ok": True})
        pulls.append(first["delta_sigma"])
    pulls = np.array(pulls)
    assert abs(pulls.mean()) < 0.15
    assert 0.60 < np.mean(np.abs(pulls) < 1.0) < 0.76
    assert math.isfinite(pulls.std()) and 0.85 < pulls.std() < 1.15


def test_static_columns_compare_converged_barriers_only():
    from aiida_lifdiff.analysis.comparison import static_columns

    reference = {
        "a0_A": 4.01,
        "B0_GPa": 72.9,
        "barriers_eV": {"knockoff_collinear": 0.20, "knockoff_noncollinear": 0.35, "direct": 0.60},
        "converged": {"knockoff_collinear": True, "knockoff_noncollinear": True, "direct": True},
    }
    candidate = {
        "a0_A": 4.09,
        "barriers_eV": {"knockoff_collinear": 0.25, "knockoff_noncollinear": 0.30, "direct": 0.90},
        "converged": {"knockoff_collinear": True, "knockoff_noncollinear": True, "direct": False},
        "max_force_eV_A": {"knockoff_collinear": 0.01, "knockoff_noncollinear": 0.02, "direct": 0.4},
    }
    lattice = {"a0_A": 4.085, "B0_GPa": 60.0}
    row = static_columns(lattice, candidate, None, reference)
    # The lattice relaxation's a0 wins over the barrier run's; the difference is to the reference's.
    assert row["a0_A"] == 4.085 and row["B0_GPa"] == 60.0
    assert abs(row["delta_a0_A"] - 0.075) < 1e-12
    assert abs(row["delta_barrier_knockoff_collinear_eV"] - 0.05) < 1e-12
    assert abs(row["delta_barrier_knockoff_noncollinear_eV"] + 0.05) < 1e-12
    # An unconverged band is kept and flagged, never compared.
    assert row["barrier_direct_eV"] == 0.90 and row["barrier_direct_converged"] is False
    assert "delta_barrier_direct_eV" not in row
    assert row["a0_relaxed"] is True
    assert static_columns(None, None) == {}


def test_a_fixed_lattice_is_flagged_and_not_compared():
    from aiida_lifdiff.analysis.comparison import static_columns

    fixed = {"a0_A": 4.03, "B0_GPa": None, "barriers_eV": {"direct": 0.3}, "converged": {"direct": True}}
    relaxed_reference = {"a0_A": 4.0096, "B0_GPa": 72.9, "barriers_eV": {"direct": 0.31}, "converged": {"direct": True}}
    row = static_columns(None, fixed, None, relaxed_reference)
    # The study's lattice is not the potential's result: no B0, no a0 difference; the barriers still compare.
    assert row["a0_A"] == 4.03 and row["a0_relaxed"] is False
    assert "B0_GPa" not in row and "delta_a0_A" not in row
    assert abs(row["delta_barrier_direct_eV"] + 0.01) < 1e-12
    # A relaxed candidate against a reference at a fixed lattice has nothing to compare its a0 with either.
    relaxed = static_columns({"a0_A": 4.09, "B0_GPa": 55.0}, None, None, fixed)
    assert relaxed["a0_relaxed"] is True and "delta_a0_A" not in relaxed
