"""Calcfunction: one row per potential of a benchmark, from the potentials and their Arrhenius results."""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

ROW_KEYS = (
    "fit_ok",
    "Ea_eV",
    "Ea_err_eV",
    "Ea_err_scaled_eV",
    "D0_cm2_s",
    "D0_err_cm2_s",
    "D300_cm2_s",
    "D300_err_cm2_s",
    "chi2_dof",
    "reason",
    "temperatures_K",
)


POTENTIAL_PREFIX = "potential_"
ARRHENIUS_PREFIX = "arrhenius_"


@calcfunction
def summarize_benchmark(primary_mode: orm.Str, **nodes: orm.Data) -> orm.Dict:
    """Kind, label, lineage and the primary-mode Ea (with its error or the reason it is missing) per potential.

    ``nodes`` holds ``potential_<name>`` (PotentialData) and ``arrhenius_<name>`` (Dict) per potential of the
    study; a potential without an Arrhenius result (its MD failed) gets a row that says so instead of a number.
    """
    potentials = {k[len(POTENTIAL_PREFIX) :]: v for k, v in nodes.items() if k.startswith(POTENTIAL_PREFIX)}
    arrhenius = {k[len(ARRHENIUS_PREFIX) :]: v for k, v in nodes.items() if k.startswith(ARRHENIUS_PREFIX)}
    rows = {}
    for name, potential in sorted(potentials.items()):
        row = {
            "potential_uuid": potential.uuid,
            "kind": potential.kind,
            "label": potential.label,
            "lineage": potential.lineage,
            "mode": primary_mode.value,
        }
        if name in arrhenius:
            record = arrhenius[name].get(primary_mode.value, {})
            row.update({key: record.get(key) for key in ROW_KEYS if key in record})
            row["arrhenius_uuid"] = arrhenius[name].uuid
        else:
            row.update({"fit_ok": False, "reason": "no Arrhenius result: the diffusion work chain failed"})
        rows[name] = row
    return orm.Dict({"primary_mode": primary_mode.value, "rows": rows})
