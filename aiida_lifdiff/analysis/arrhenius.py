"""Weighted Arrhenius fit ``D(T) = D0 exp(-Ea / (k_B T))`` with propagated uncertainties.

The fit is unit-agnostic in D: the fields are named ``*_cm2_s`` because the workflow passes cm^2/s,
but D0 and the extrapolated D come out in whatever unit D was given in. Ea is always in eV.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.linalg

__all__ = [
    "K_B_EV_K",
    "ArrheniusFitError",
    "ArrheniusResult",
    "arrhenius_extrapolate",
    "extrapolation_interval",
    "fit_arrhenius",
]

#: Boltzmann constant in eV/K (CODATA 2018).
K_B_EV_K = 8.617333262e-5


class ArrheniusFitError(ValueError):
    """Raised when the input to :func:`fit_arrhenius` cannot give a meaningful fit."""


@dataclass(frozen=True)
class ArrheniusResult:
    """Result of :func:`fit_arrhenius`.

    ``covariance`` is the 2x2 covariance matrix of ``(ln D0, Ea)`` from the absolute input errors (not
    rescaled by chi^2; compare ``chi2_dof`` with 1 to judge the misfit). ``D0_err_cm2_s`` and
    ``D300_err_cm2_s`` are first-order (``D * sigma_lnD``) errors of log-normal quantities.
    """

    Ea_eV: float
    Ea_err_eV: float
    D0_cm2_s: float
    D0_err_cm2_s: float
    chi2_dof: float
    n_points: int
    temperatures_K: list[float]
    D_cm2_s: list[float]
    D_err_cm2_s: list[float]
    D300_cm2_s: float
    D300_err_cm2_s: float
    covariance: list[list[float]]
    method: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy of all fields."""
        return {
            "Ea_eV": float(self.Ea_eV),
            "Ea_err_eV": float(self.Ea_err_eV),
            "D0_cm2_s": float(self.D0_cm2_s),
            "D0_err_cm2_s": float(self.D0_err_cm2_s),
            "chi2_dof": float(self.chi2_dof),
            "n_points": int(self.n_points),
            "temperatures_K": [float(v) for v in self.temperatures_K],
            "D_cm2_s": [float(v) for v in self.D_cm2_s],
            "D_err_cm2_s": [float(v) for v in self.D_err_cm2_s],
            "D300_cm2_s": float(self.D300_cm2_s),
            "D300_err_cm2_s": float(self.D300_err_cm2_s),
            "covariance": [[float(v) for v in row] for row in self.covariance],
            "method": str(self.method),
        }


def _validated_inputs(
    temperatures_K: Sequence[float], D: Sequence[float], D_err: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = []
    for name, values in (("temperatures_K", temperatures_K), ("D", D), ("D_err", D_err)):
        try:
            arr = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            raise ArrheniusFitError(f"{name} must be a 1-D sequence of numbers; got {values!r}") from None
        if arr.ndim != 1:
            raise ArrheniusFitError(f"{name} must be 1-D; got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ArrheniusFitError(f"{name} contains non-finite values (NaN or inf): {arr.tolist()}")
        arrays.append(arr)
    temps, d, d_err = arrays
    if not temps.size == d.size == d_err.size:
        raise ArrheniusFitError(
            f"temperatures_K, D and D_err must have equal lengths; got {temps.size}, {d.size}, {d_err.size}"
        )
    if temps.size < 3:
        raise ArrheniusFitError(
            f"need at least 3 temperatures for a 2-parameter fit with a misfit estimate; got {temps.size}"
        )
    if np.any(temps <= 0):
        raise ArrheniusFitError(f"temperatures must be > 0 K; got {temps.tolist()}")
    if np.unique(temps).size != temps.size:
        raise ArrheniusFitError(
            f"duplicate temperatures {temps.tolist()}; combine repeated runs at one temperature into a "
            "single D +/- D_err first"
        )
    if np.any(d <= 0):
        raise ArrheniusFitError(f"all D must be > 0 (the fit is in ln D); got {d.tolist()}")
    if np.any(d_err <= 0):
        raise ArrheniusFitError(f"all D_err must be > 0 (they set the fit weights); got {d_err.tolist()}")
    return temps, d, d_err


def _ln_d_and_sigma(result: ArrheniusResult, temperature: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cov = np.asarray(result.covariance, dtype=float)
    ln_d0 = np.log(result.D0_cm2_s)
    beta = 1.0 / (K_B_EV_K * temperature)
    # ln D = ln D0 - Ea * beta, so the gradient w.r.t. (ln D0, Ea) is (1, -beta).
    ln_d = ln_d0 - result.Ea_eV * beta
    var = cov[0, 0] + beta**2 * cov[1, 1] - 2.0 * beta * cov[0, 1]
    return ln_d, np.sqrt(np.maximum(var, 0.0))


def fit_arrhenius(temperatures_K: Sequence[float], D: Sequence[float], D_err: Sequence[float]) -> ArrheniusResult:
    """Weighted linear least-squares fit of ``ln D = ln D0 - Ea / (k_B T)``.

    Each point is weighted with ``sigma(ln D) = D_err / D``. The parameter covariance uses these
    absolute errors without chi^2 rescaling; ``chi2_dof`` reports the misfit.

    Args:
        temperatures_K: temperatures in K (>= 3 distinct, positive).
        D: diffusivities, > 0, in any unit (cm^2/s in this package); D0 is returned in that unit.
        D_err: one-sigma errors of D, > 0, same unit as D.

    Raises:
        ArrheniusFitError: fewer than 3 points, mismatched lengths, duplicate temperatures, T <= 0,
            D <= 0, D_err <= 0 or non-finite values.
    """
    temps, d, d_err = _validated_inputs(temperatures_K, D, D_err)
    beta = 1.0 / (K_B_EV_K * temps)
    y = np.log(d)
    sigma = d_err / d

    # Parameters (ln D0, Ea): y = ln D0 - Ea * beta. Dividing rows by sigma turns the weighted problem
    # into an ordinary one whose (A^T A)^-1 is the covariance for absolute sigmas.
    design = np.column_stack([np.ones_like(beta), -beta]) / sigma[:, None]
    params, *_ = scipy.linalg.lstsq(design, y / sigma)
    covariance = scipy.linalg.inv(design.T @ design)
    ln_d0, ea = (float(p) for p in params)

    residuals = (y - (ln_d0 - ea * beta)) / sigma
    dof = temps.size - 2
    chi2_dof = float(residuals @ residuals / dof)

    d0 = float(np.exp(ln_d0))
    partial = ArrheniusResult(
        Ea_eV=ea,
        Ea_err_eV=float(np.sqrt(covariance[1, 1])),
        D0_cm2_s=d0,
        D0_err_cm2_s=float(d0 * np.sqrt(covariance[0, 0])),
        chi2_dof=chi2_dof,
        n_points=int(temps.size),
        temperatures_K=temps.tolist(),
        D_cm2_s=d.tolist(),
        D_err_cm2_s=d_err.tolist(),
        D300_cm2_s=float("nan"),
        D300_err_cm2_s=float("nan"),
        covariance=covariance.tolist(),
        method=(
            "weighted linear least squares of ln D vs 1/(k_B T) with sigma(ln D) = D_err/D; "
            "absolute errors (covariance not rescaled by chi2/dof)"
        ),
    )
    ln_d300, sigma300 = _ln_d_and_sigma(partial, np.asarray(300.0))
    d300 = float(np.exp(ln_d300))
    return replace(partial, D300_cm2_s=d300, D300_err_cm2_s=float(d300 * sigma300))


def arrhenius_extrapolate(
    result: ArrheniusResult, T: float | Sequence[float] | np.ndarray
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """D and its first-order error at temperature(s) ``T`` (K) from an Arrhenius fit.

    The error propagates the full (ln D0, Ea) covariance. Returns floats for scalar ``T``, arrays
    otherwise, in the unit of the fitted D.
    """
    temps = np.asarray(T, dtype=float)
    if not np.all(np.isfinite(temps)) or np.any(temps <= 0):
        raise ArrheniusFitError(f"extrapolation temperatures must be finite and > 0 K; got {T!r}")
    ln_d, sigma = _ln_d_and_sigma(result, temps)
    d = np.exp(ln_d)
    d_err = d * sigma
    if temps.ndim == 0:
        return float(d), float(d_err)
    return d, d_err


def extrapolation_interval(result: ArrheniusResult, T: float, birge: bool = True) -> dict[str, float]:
    """D at ``T`` as a one-sigma interval in log space: ``D / factor .. D * factor``.

    A diffusivity extrapolated over hundreds of kelvin is log-normal: its error is a factor, not a plus-minus
    (``D300 +- D300_err`` with ``D300_err > D300`` would reach negative D). The factor is
    ``exp(sigma_lnD)`` from the full (ln D0, Ea) covariance, multiplied in the exponent by ``sqrt(chi2/dof)``
    when that exceeds 1 (``birge``), the same Birge scaling the comparisons apply to Ea.
    """
    temperature = float(T)
    if not math.isfinite(temperature) or temperature <= 0:
        raise ArrheniusFitError(f"extrapolation temperature must be finite and > 0 K; got {T!r}")
    ln_d, sigma = _ln_d_and_sigma(result, np.asarray(temperature))
    scale = math.sqrt(max(1.0, result.chi2_dof)) if birge else 1.0
    factor = math.exp(float(sigma) * scale)
    d = math.exp(float(ln_d))
    return {
        "D_cm2_s": d,
        "factor": factor,
        "low_cm2_s": d / factor,
        "high_cm2_s": d * factor,
        "birge_scale": scale,
    }
