"""Calcfunction: Arrhenius fit of D(T) with its plot (thin layer over analysis)."""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path

from aiida import orm
from aiida.engine import calcfunction

from aiida_lifdiff.analysis import ArrheniusFitError
from aiida_lifdiff.analysis import fit_arrhenius as fit_arrhenius_points
from aiida_lifdiff.analysis.arrhenius import extrapolation_interval
from aiida_lifdiff.analysis.plotting import plot_arrhenius
from aiida_lifdiff.serialization import json_safe

#: Points an Arrhenius fit needs: two parameters plus one degree of freedom for chi^2.
MIN_FIT_POINTS = 3

ARRHENIUS_PARAMETERS = {"primary_mode": "collective", "title": ""}


def _mechanism_summary(entries: list[dict]) -> dict | None:
    """Hop events over all temperatures: counts, fractions, the dominant type, Haven ratios, rate fits."""
    from aiida_lifdiff.analysis.mechanisms import EVENT_TYPES, event_rates, fit_rate_arrhenius

    found = [e for e in entries if (e.get("mechanisms") or {}).get("events") is not None]
    if not found:
        return None
    totals = {kind: sum(int(e["mechanisms"]["events"][kind]) for e in found) for kind in EVENT_TYPES}
    duration = sum(float(e["mechanisms"]["event_duration_ps"]) for e in found)
    per_temperature = [
        {
            "temperature_K": e["temperature_K"],
            "events": e["mechanisms"]["events"],
            "duration_ps": e["mechanisms"]["event_duration_ps"],
            "haven_ratio": e["mechanisms"].get("haven_ratio"),
            "haven_ratio_err": e["mechanisms"].get("haven_ratio_err"),
            "correlation_factor": e["mechanisms"].get("correlation_factor"),
        }
        for e in found
    ]
    moving = {k: v for k, v in totals.items() if k != "other"}
    summary = {
        "counts": totals,
        "fractions": {k: v["fraction"] for k, v in event_rates(totals, duration).items()},
        "dominant": max(moving, key=moving.get) if sum(moving.values()) else None,
        "per_temperature": per_temperature,
        "rate_fits": fit_rate_arrhenius(
            [p["temperature_K"] for p in per_temperature],
            [p["events"] for p in per_temperature],
            [p["duration_ps"] for p in per_temperature],
        )
        if len(per_temperature) >= 3
        else {},
    }
    return summary


def _exclusion_sensitivity(result, entries: list[dict], mode: str) -> dict:
    """How much the fit depends on leaving out the temperatures judged non-diffusive.

    The excluded points are fitted back in (where they have a positive D and error) and the Ea of that fit is
    reported beside the one without them: a reader sees at once whether the exclusion drives the result.
    """
    usable = [e for e in entries if e[mode]["D_cm2_s"] > 0 and e[mode]["D_err_cm2_s"] > 0]
    dropped = [e["temperature_K"] for e in entries if not e[mode]["diffusive"]]
    summary: dict = {"excluded_temperatures_K": dropped, "Ea_without_eV": result.Ea_eV}
    if len(usable) == len([e for e in entries if e[mode]["diffusive"]]):
        summary["note"] = "the excluded temperatures have no positive D to refit with"
        return summary
    try:
        refit = fit_arrhenius_points(
            [e["temperature_K"] for e in usable],
            [e[mode]["D_cm2_s"] for e in usable],
            [e[mode]["D_err_cm2_s"] for e in usable],
        )
    except ArrheniusFitError as exception:
        summary["note"] = f"no fit with the excluded points: {exception}"
        return summary
    summary.update(
        Ea_with_excluded_eV=refit.Ea_eV,
        Ea_err_with_excluded_eV=refit.Ea_err_eV,
        chi2_dof_with_excluded=refit.chi2_dof,
        delta_Ea_eV=refit.Ea_eV - result.Ea_eV,
    )
    return summary


@calcfunction
def fit_arrhenius(parameters: orm.Dict, **diffusivities: orm.Dict) -> dict:
    """Fit ln D = ln D0 - Ea/kT per mode over the temperatures with a diffusive regime.

    Temperatures whose MSD shows no diffusive regime are listed as excluded, never fitted. A mode with
    fewer than three usable temperatures gets ``fit_ok: False`` and the reason instead of an Ea.
    """
    settings = dict(ARRHENIUS_PARAMETERS)
    settings.update(parameters.get_dict())
    entries = sorted((d.get_dict() for d in diffusivities.values()), key=lambda d: d["temperature_K"])
    modes = [m for m in ("collective", "tracer") if all(m in e for e in entries)]
    if settings["primary_mode"] not in modes:
        raise ValueError(f"primary_mode {settings['primary_mode']!r} not computed; available: {modes}")

    output: dict = {"primary_mode": settings["primary_mode"], "units": {"Ea": "eV", "D": "cm^2/s"}}
    fits = {}
    for mode in modes:
        used = [e for e in entries if e[mode]["diffusive"]]
        excluded = [
            {"temperature_K": e["temperature_K"], "reason": e[mode]["diagnosis"]} for e in entries if e not in used
        ]
        record: dict = {
            "points": [
                {
                    "temperature_K": e["temperature_K"],
                    "D_cm2_s": e[mode]["D_cm2_s"],
                    "D_err_cm2_s": e[mode]["D_err_cm2_s"],
                    "diffusive": e[mode]["diffusive"],
                }
                for e in entries
            ],
            "excluded": excluded,
        }
        if len(used) < MIN_FIT_POINTS:
            detail = "; ".join(f"{x['temperature_K']:.0f} K: {x['reason']}" for x in excluded)
            record.update(
                fit_ok=False,
                reason=f"only {len(used)} of {len(entries)} temperatures show a diffusive regime, "
                f"at least {MIN_FIT_POINTS} are needed (excluded: {detail})",
            )
            output[mode] = record
            continue
        try:
            result = fit_arrhenius_points(
                [e["temperature_K"] for e in used],
                [e[mode]["D_cm2_s"] for e in used],
                [e[mode]["D_err_cm2_s"] for e in used],
            )
        except ArrheniusFitError as exception:
            record.update(fit_ok=False, reason=str(exception))
        else:
            record.update(fit_ok=True, **result.to_dict())
            # The fit uses the D errors as given; when chi^2/dof > 1 they scatter more than those errors
            # allow, and the Birge-scaled error is the more cautious statement of what the data support.
            record["Ea_err_scaled_eV"] = result.Ea_err_eV * math.sqrt(max(1.0, result.chi2_dof))
            interval = extrapolation_interval(result, 300.0)
            record["D300_factor"] = interval["factor"]
            record["D300_interval_cm2_s"] = [interval["low_cm2_s"], interval["high_cm2_s"]]
            if excluded:
                record["sensitivity"] = _exclusion_sensitivity(result, entries, mode)
            fits[mode] = result
        output[mode] = record

    mechanisms = _mechanism_summary(entries)
    if mechanisms:
        output["mechanisms"] = mechanisms
    outputs = {"arrhenius": orm.Dict(json_safe(output))}
    primary = fits.get(settings["primary_mode"])
    if primary is not None:
        excluded_points = [
            (p["temperature_K"], p["D_cm2_s"], p["D_err_cm2_s"], "no diffusive regime (excluded)")
            for p in output[settings["primary_mode"]]["points"]
            if not p["diffusive"] and p["D_cm2_s"] > 0
        ]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "arrhenius.png"
            plot_arrhenius(primary, path, title=settings["title"], extra_points=excluded_points or None)
            outputs["plot"] = orm.SinglefileData(io.BytesIO(path.read_bytes()), filename="arrhenius.png")
    return outputs
