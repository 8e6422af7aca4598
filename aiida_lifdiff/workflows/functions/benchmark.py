"""Calcfunction: the benchmark's comparison table and figures, from each potential's results.

A thin layer over :mod:`aiida_lifdiff.analysis.comparison` and the plotting helpers: one row per potential
(Ea, D0, D(T) with errors, the difference to the reference in units of the combined error, the errors on the
shared evaluation set), an Arrhenius overlay and a parity overlay.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from aiida import orm
from aiida.engine import calcfunction

from aiida_lifdiff.analysis.comparison import comparison_row, static_columns
from aiida_lifdiff.analysis.errors import parity_overlay
from aiida_lifdiff.analysis.plotting import plot_arrhenius_overlay, plot_barrier_profiles
from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.serialization import json_safe

POTENTIAL_PREFIX = "potential_"
ARRHENIUS_PREFIX = "arrhenius_"
EVALUATION_PREFIX = "errors_"
PREDICTIONS_PREFIX = "predictions_"
TEST_ERRORS_PREFIX = "test_errors_"
EVALUATION_SET = "evaluation_set"
LATTICE_PREFIX = "lattice_"
BARRIERS_PREFIX = "barriers_"
PROFILES_PREFIX = "profiles_"
ARRHENIUS_OVERLAY_FILE = "arrhenius_overlay.png"
PARITY_OVERLAY_FILE = "parity_overlay.png"
BARRIER_OVERLAY_FILE = "barrier_overlay.png"


def _by_prefix(nodes: dict, prefix: str) -> dict:
    return {key[len(prefix) :]: node for key, node in nodes.items() if key.startswith(prefix)}


def _lineage_summary(lineage: dict) -> dict:
    """Training-set size and source and the foundation, from a model's lineage (MACE or DeePMD layout)."""
    train = (lineage.get("datasets") or {}).get("train") or lineage.get("train") or {}
    foundation = lineage.get("foundation")
    if isinstance(foundation, dict):
        foundation = foundation.get("name") or foundation.get("label")
    return {
        "train_frames": train.get("n_frames"),
        "train_source": train.get("source"),
        "foundation": foundation,
        "training_mode": lineage.get("mode") or lineage.get("method"),
    }


def _png(writer, filename: str) -> orm.SinglefileData:
    with tempfile.TemporaryDirectory() as tmp:
        path = writer(Path(tmp) / filename)
        return orm.SinglefileData(io.BytesIO(path.read_bytes()), filename=filename)


def _mechanism_columns(mechanisms: dict | None) -> dict:
    """Fractions of each hop mechanism, the dominant one and the Haven ratio at the hottest temperature."""
    if not mechanisms:
        return {}
    columns = {f"fraction_{kind}": value for kind, value in (mechanisms.get("fractions") or {}).items()}
    columns["dominant_mechanism"] = mechanisms.get("dominant")
    hottest = max(mechanisms.get("per_temperature") or [], key=lambda p: p["temperature_K"], default=None)
    if hottest is not None:
        columns.update(
            haven_ratio=hottest.get("haven_ratio"),
            haven_ratio_err=hottest.get("haven_ratio_err"),
            haven_temperature_K=hottest["temperature_K"],
        )
    return columns


@calcfunction
def compare_potentials(parameters: orm.Dict, **nodes: orm.Data) -> dict:
    """The comparison table (``comparison``) and its figures (``arrhenius_overlay``, ``parity_overlay``).

    ``parameters``: ``primary_mode`` (the diffusion mode compared), ``reference`` (name of the reference
    potential, or None), ``title``, ``missing`` ({name: reason} of potentials that failed to be made).
    ``nodes``, per potential name: ``potential_<name>`` (PotentialData),
    ``arrhenius_<name>`` (its Arrhenius Dict; absent when its diffusion failed), ``errors_<name>`` and
    ``predictions_<name>`` (its evaluation on the shared ``evaluation_set``, when there is one) and
    ``test_errors_<name>`` (a trained model's errors on its own test split), ``lattice_<name>`` (its relaxed
    lattice, when the study relaxes each potential's lattice), ``barriers_<name>`` and ``profiles_<name>`` (its
    static migration barriers and NEB energy profiles, when the study asks for barriers).
    """
    settings = parameters.get_dict()
    mode = settings["primary_mode"]
    reference = settings.get("reference")
    potentials = _by_prefix(nodes, POTENTIAL_PREFIX)
    arrhenius = _by_prefix(nodes, ARRHENIUS_PREFIX)
    errors = _by_prefix(nodes, EVALUATION_PREFIX)
    test_errors = _by_prefix(nodes, TEST_ERRORS_PREFIX)
    predictions = _by_prefix(nodes, PREDICTIONS_PREFIX)
    lattices = _by_prefix(nodes, LATTICE_PREFIX)
    barriers = _by_prefix(nodes, BARRIERS_PREFIX)
    profiles = _by_prefix(nodes, PROFILES_PREFIX)

    def static(name: str | None) -> tuple[dict | None, dict | None]:
        if name is None:
            return None, None
        lattice = lattices[name].get_dict() if name in lattices else None
        barrier = barriers[name].get_dict() if name in barriers else None
        return lattice, barrier

    def record(name: str) -> dict | None:
        if name not in arrhenius:
            return None
        return arrhenius[name].get(mode, {"fit_ok": False, "reason": f"mode {mode} not computed"})

    reference_record = record(reference) if reference else None
    rows = {}
    for name in sorted(potentials, key=lambda n: (n != reference, n)):
        potential = potentials[name]
        # The reference is not compared with itself.
        against = reference_record if name != reference else None
        row = comparison_row(name, record(name), against, errors[name].get_dict() if name in errors else None)
        if name in (settings.get("static_only") or []):
            row["reason"] = "no MD by request (static_only): a0, barriers and evaluation errors only"
            row["static_only"] = True
        row.update(
            kind=potential.kind,
            label=potential.label,
            is_reference=name == reference,
            potential_uuid=potential.uuid,
        )
        row.update(_lineage_summary(potential.lineage or {}))
        reference_static = static(reference) if name != reference else (None, None)
        row.update(static_columns(*static(name), *reference_static))
        if name in arrhenius:
            row["arrhenius_uuid"] = arrhenius[name].uuid
            row.update(_mechanism_columns(arrhenius[name].get("mechanisms")))
        if name in test_errors:
            test = test_errors[name].get_dict()
            row["test_energy_rmse_meV_per_atom"] = test.get("energy_rmse_meV_per_atom")
            row["test_force_rmse_meV_per_A"] = test.get("force_rmse_meV_per_A")
            row["test_frames"] = test.get("n_frames")
        rows[name] = row
    for name, reason in sorted((settings.get("missing") or {}).items()):
        rows[name] = {"name": name, "fit_ok": False, "reason": reason, "D_T": [], "is_reference": name == reference}
    comparison = {"primary_mode": mode, "reference": reference, "rows": rows}
    evaluation_set = nodes.get(EVALUATION_SET)
    if evaluation_set is not None:
        comparison["evaluation_set"] = {
            "uuid": evaluation_set.uuid,
            "n_frames": evaluation_set.n_frames,
            "source": evaluation_set.source,
        }
    title = settings.get("title") or ""
    outputs = {
        "comparison": orm.Dict(json_safe(comparison)),
        "arrhenius_overlay": _png(
            lambda path: plot_arrhenius_overlay(
                list(rows.values()), path, reference=reference, title=f"{title} ({mode} D)".strip()
            ),
            ARRHENIUS_OVERLAY_FILE,
        ),
    }
    if profiles:
        # The reference first, so that the candidates are drawn over it.
        order = sorted(profiles, key=lambda n: (n != reference, n))
        bands = [
            (
                name,
                {key: profiles[name].get_array(key) for key in profiles[name].get_arraynames()},
                barriers[name].get("converged") or {} if name in barriers else {},
            )
            for name in order
        ]
        outputs["barrier_overlay"] = _png(
            lambda path: plot_barrier_profiles(bands, path, title=f"{title} NEB energy profiles".strip()),
            BARRIER_OVERLAY_FILE,
        )
    if isinstance(evaluation_set, DatasetData) and predictions:
        reference_frames = evaluation_set.get_frames()
        # The reference first, so that the candidates are drawn over it.
        order = sorted(predictions, key=lambda n: (n != reference, n))
        predicted = {name: predictions[name].get_frames() for name in order}
        outputs["parity_overlay"] = _png(
            lambda path: parity_overlay(reference_frames, predicted, path, title=f"{title} evaluation set".strip()),
            PARITY_OVERLAY_FILE,
        )
    return outputs
