"""Comparing potentials: activation energies against a reference, in units of their combined error.

Pure numpy (no AiiDA), so the benchmark's table can be rebuilt and checked from plain numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["ea_error", "difference", "comparison_row", "static_columns", "ERROR_KEYS", "BARRIER_PATHS"]

#: Evaluation-set errors copied into each row (units in the names).
ERROR_KEYS = (
    "energy_rmse_meV_per_atom",
    "energy_mae_meV_per_atom",
    "force_rmse_meV_per_A",
    "force_mae_meV_per_A",
    "stress_rmse_meV_per_A3",
    "n_frames",
)

#: The migration paths every barrier row reports (``lifdiff-barrier``'s ``barriers_eV`` keys).
BARRIER_PATHS = ("knockoff_collinear", "knockoff_noncollinear", "direct")

_FIT_KEYS = (
    "Ea_eV",
    "Ea_err_eV",
    "Ea_err_scaled_eV",
    "D0_cm2_s",
    "D0_err_cm2_s",
    "D300_cm2_s",
    "D300_err_cm2_s",
    "D300_factor",
    "chi2_dof",
    "n_points",
)


def ea_error(record: Mapping[str, Any]) -> float:
    """The error of a fitted Ea used in comparisons: the Birge-scaled error when the fit's chi^2/dof exceeds 1.

    An Arrhenius fit whose points scatter more than their error bars say (chi^2/dof > 1) understates its own
    error; comparing with the unscaled error would call a difference significant that the data do not support.
    """
    error = float(record["Ea_err_eV"])
    scaled = record.get("Ea_err_scaled_eV")
    if scaled is not None and math.isfinite(float(scaled)):
        error = max(error, float(scaled))
    return error


def difference(value: float, error: float, reference: float, reference_error: float) -> dict[str, float]:
    """``value - reference`` with the combined (independent, quadrature) error and its size in those units."""
    delta = float(value) - float(reference)
    combined = math.hypot(float(error), float(reference_error))
    return {
        "delta_Ea_eV": delta,
        "delta_Ea_err_eV": combined,
        "delta_sigma": delta / combined if combined > 0 else math.inf,
    }


def comparison_row(
    name: str,
    record: Mapping[str, Any] | None,
    reference_record: Mapping[str, Any] | None,
    errors: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One row of the comparison table from a potential's Arrhenius record (one diffusion mode).

    ``record`` is the mode's entry of the ``arrhenius`` output (``fit_ok``, ``Ea_eV``..., ``points``) or None
    when the potential has no Arrhenius result at all. ``reference_record`` likewise for the reference; the
    row's difference is filled only when both fits succeeded. ``errors`` are the potential's errors on the
    shared evaluation set. Missing numbers stay missing (None) with a ``reason``; none is invented.
    """
    row: dict[str, Any] = {"name": name}
    if record is None:
        row.update(fit_ok=False, reason="no Arrhenius result: the diffusion work chain failed", D_T=[])
    else:
        row["fit_ok"] = bool(record.get("fit_ok"))
        row["D_T"] = [
            {
                "temperature_K": float(point["temperature_K"]),
                "D_cm2_s": point.get("D_cm2_s"),
                "D_err_cm2_s": point.get("D_err_cm2_s"),
                "diffusive": bool(point.get("diffusive", True)),
            }
            for point in record.get("points", [])
        ]
        if row["fit_ok"]:
            row.update({key: record[key] for key in _FIT_KEYS if key in record})
            row["Ea_compare_err_eV"] = ea_error(record)
        else:
            row["reason"] = record.get("reason", "no fit")
    if row["fit_ok"] and reference_record is not None and reference_record.get("fit_ok"):
        row.update(
            difference(row["Ea_eV"], row["Ea_compare_err_eV"], reference_record["Ea_eV"], ea_error(reference_record))
        )
    for key in ERROR_KEYS:
        if errors is not None and errors.get(key) is not None:
            row[f"eval_{key}"] = errors[key]
    return row


def static_columns(
    lattice: Mapping[str, Any] | None,
    barriers: Mapping[str, Any] | None,
    reference_lattice: Mapping[str, Any] | None = None,
    reference_barriers: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The static part of a row: a0 and each path's barrier, with the differences to the reference.

    ``lattice`` is a lattice relaxation's results (``a0_A``, ``B0_GPa``); ``barriers`` a barrier run's results
    (``a0_A``, ``barriers_eV``, ``converged``, ``max_force_eV_A``). A barrier whose NEB did not converge is kept
    with ``barrier_<path>_converged`` False and gets no difference: an unconverged band is an upper bound at
    best, not a number to compare.
    """
    columns: dict[str, Any] = {}
    source = lattice if lattice and lattice.get("a0_A") is not None else barriers
    if source and source.get("a0_A") is not None:
        columns["a0_A"] = float(source["a0_A"])
        # Only an E(V) fit has a bulk modulus: without one, a0 is the lattice the study fixed, not a result.
        columns["a0_relaxed"] = source.get("B0_GPa") is not None
        if columns["a0_relaxed"]:
            columns["B0_GPa"] = float(source["B0_GPa"])
        reference_source = (
            reference_lattice if reference_lattice and reference_lattice.get("a0_A") is not None else reference_barriers
        )
        if (
            columns["a0_relaxed"]
            and reference_source
            and reference_source.get("a0_A") is not None
            and reference_source.get("B0_GPa") is not None
        ):
            columns["delta_a0_A"] = columns["a0_A"] - float(reference_source["a0_A"])
    if not barriers:
        return columns
    values = barriers.get("barriers_eV") or {}
    converged = barriers.get("converged") or {}
    forces = barriers.get("max_force_eV_A") or {}
    reference_values = (reference_barriers or {}).get("barriers_eV") or {}
    reference_converged = (reference_barriers or {}).get("converged") or {}
    for path in BARRIER_PATHS:
        if values.get(path) is None:
            continue
        ok = bool(converged.get(path, False))
        columns[f"barrier_{path}_eV"] = float(values[path])
        columns[f"barrier_{path}_converged"] = ok
        if forces.get(path) is not None:
            columns[f"barrier_{path}_max_force_eV_A"] = float(forces[path])
        if ok and reference_values.get(path) is not None and reference_converged.get(path, False):
            columns[f"delta_barrier_{path}_eV"] = float(values[path]) - float(reference_values[path])
    return columns
