"""Calcfunction: D at one temperature from the trajectories of its replicas (thin layer over analysis)."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_lifdiff.analysis import estimate_diffusivity
from aiida_lifdiff.serialization import json_safe

DIFFUSIVITY_MODES = ("tracer", "collective")

#: Defaults of the ``parameters`` of :func:`compute_diffusivity`.
DIFFUSIVITY_PARAMETERS = {
    "mobile_species": "Li",
    "reference_species": "F",
    "n_blocks": 5,
    "fit_window": [0.1, 0.6],
    "modes": list(DIFFUSIVITY_MODES),
    # Hop mechanisms (site assignment with a dwell rule, event classification) and the Haven ratio: needs
    # both modes and the rock-salt F sublattice as reference. Dwell and window are in frames.
    "mechanisms": True,
    "dwell_frames": 3,
    "window_frames": 2,
}

_MODE_MEANING = {
    "tracer": "Li tracer diffusivity: single-particle MSD averaged over all Li",
    "collective": "per-defect diffusivity: MSD of the summed displacement of all Li (one interstitial)",
}


def validate_diffusivity_parameters(parameters: dict) -> str | None:
    """Return a message if the analysis settings are unusable, else None."""
    unknown = set(parameters) - set(DIFFUSIVITY_PARAMETERS)
    if unknown:
        return f"unknown analysis parameters {sorted(unknown)}; allowed: {sorted(DIFFUSIVITY_PARAMETERS)}"
    modes = parameters.get("modes", DIFFUSIVITY_MODES)
    if not modes or set(modes) - set(DIFFUSIVITY_MODES):
        return f"modes must be a non-empty subset of {list(DIFFUSIVITY_MODES)}, got {modes}"
    window = parameters.get("fit_window", DIFFUSIVITY_PARAMETERS["fit_window"])
    if len(window) != 2 or not 0 <= window[0] < window[1] <= 1:
        return f"fit_window must be [start, stop] fractions with 0 <= start < stop <= 1, got {window}"
    if int(parameters.get("n_blocks", 1)) < 1:
        return f"n_blocks must be >= 1, got {parameters['n_blocks']}"
    if not isinstance(parameters.get("mechanisms", True), bool):
        return f"mechanisms must be true or false, got {parameters['mechanisms']!r}"
    for key in ("dwell_frames", "window_frames"):
        value = parameters.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"{key} must be an integer >= 1, got {value!r}"
    return None


@calcfunction
def compute_diffusivity(parameters: orm.Dict, **trajectories: orm.TrajectoryData) -> dict:
    """Li diffusivity (tracer and per-defect) with its standard error from replica trajectories at one T."""
    settings = dict(DIFFUSIVITY_PARAMETERS)
    settings.update(parameters.get_dict())
    message = validate_diffusivity_parameters(settings)
    if message:
        raise ValueError(message)
    if not trajectories:
        raise ValueError("compute_diffusivity needs at least one trajectory")

    ordered = [trajectories[key] for key in sorted(trajectories)]
    temperatures = {round(t.base.attributes.get("temperature_K"), 6) for t in ordered}
    if len(temperatures) != 1:
        raise ValueError(f"all trajectories must share one temperature, got {sorted(temperatures)}")
    times = ordered[0].get_times()
    lengths = {len(t.get_times()) for t in ordered}
    if len(lengths) != 1:
        raise ValueError(f"replica trajectories differ in length: {sorted(lengths)} frames")
    symbols = list(ordered[0].symbols)
    mobile = [i for i, s in enumerate(symbols) if s == settings["mobile_species"]]
    reference = [i for i, s in enumerate(symbols) if s == settings["reference_species"]] or None
    positions = [t.get_positions() for t in ordered]

    output = {
        "temperature_K": float(temperatures.pop()),
        "seeds": [t.base.attributes.get("seed") for t in ordered],
        "n_replicas": len(ordered),
        "mobile_species": settings["mobile_species"],
        "drift_reference": settings["reference_species"] if reference else "all atoms",
        "settings": settings,
        "md": {
            "timestep_fs": ordered[0].base.attributes.get("timestep_fs"),
            "production_ps": float(times[-1] - times[0]),
            "equilibration_ps": ordered[0].base.attributes.get("equilibration_ps"),
            "frame_interval_ps": float(times[1] - times[0]) if len(times) > 1 else None,
            "engine": ordered[0].base.attributes.get("engine"),
        },
    }
    msd = orm.ArrayData()
    results = {}
    for mode in settings["modes"]:
        result = results[mode] = estimate_diffusivity(
            positions,
            times - times[0],
            mobile_indices=mobile,
            reference_indices=reference,
            mode=mode,
            n_blocks=int(settings["n_blocks"]),
            fit_window=tuple(settings["fit_window"]),
        )
        entry = result.to_dict()
        entry["meaning"] = _MODE_MEANING[mode]
        output[mode] = entry
        msd.set_array(f"{mode}_lag_time_ps", np.asarray(result.lag_times_ps))
        msd.set_array(f"{mode}_msd_A2", np.asarray(result.msd_A2))
        msd.set_array(f"{mode}_msd_err_A2", np.asarray(result.msd_err_A2))
    if settings["mechanisms"] and reference and set(results) == set(DIFFUSIVITY_MODES):
        output["mechanisms"] = _mechanisms(ordered, positions, times, mobile, reference, results, settings)
    return {"diffusivity": orm.Dict(json_safe(output)), "msd": msd}


def _mechanisms(ordered, positions, times, mobile, reference, results, settings) -> dict:
    """Hop events, their rates and the Haven ratio (:func:`summarise_mechanisms`), without the per-event list."""
    from aiida_lifdiff.analysis.trajectory_files import summarise_mechanisms

    replicas = [(p, np.asarray(t.get_cells()[0]), times) for p, t in zip(positions, ordered, strict=True)]
    try:
        summary = summarise_mechanisms(
            replicas,
            mobile,
            reference,
            results["tracer"],
            results["collective"],
            dwell=int(settings["dwell_frames"]),
            window=int(settings["window_frames"]),
        )
    except ValueError as exception:  # e.g. a cell that is not the orthorhombic rock-salt supercell
        return {"error": str(exception)}
    summary.pop("_results")
    for key in ("tracer", "collective"):  # already stored under the modes
        summary.pop(key, None)
    return summary
