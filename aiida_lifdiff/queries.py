"""QueryBuilder helpers behind ``aiida-lifdiff results`` and ``show``: what was computed, with what."""

from __future__ import annotations

from aiida import orm

from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.workflows.diffusion import DiffusionWorkChain


def training_lineage(potential: PotentialData | str) -> dict:
    """What a model was trained on, read from the provenance graph (not from the model's own attributes).

    Follows ``model <-create- training CalcJob <-input_calc[train/valid/test/foundation/replay]- nodes``; when
    the train part came from ``split_dataset`` the whole dataset it was split from is reported as well.
    Returns ``{}`` for a potential that was not trained in this database (classical, imported files).
    """
    if isinstance(potential, str):
        potential = orm.load_node(potential)
    qb = orm.QueryBuilder()
    qb.append(PotentialData, filters={"uuid": potential.uuid}, tag="model")
    qb.append(orm.CalcJobNode, with_outgoing="model", tag="training", project=["uuid", "attributes.process_label"])
    qb.append(
        orm.Node,
        with_outgoing="training",
        edge_filters={"label": {"in": ["train", "valid", "test", "foundation", "replay"]}},
        edge_project=["label"],
        project=["*"],
    )
    found = qb.all()
    if not found:
        return {}
    info: dict = {"training_uuid": found[0][0], "trainer": found[0][1]}
    for _, _, node, link_label in found:
        if isinstance(node, DatasetData):
            info[f"{link_label}_frames"] = node.n_frames
            info[f"{link_label}_uuid"] = node.uuid
            if link_label == "train":
                info["train_source"] = node.source
                parent = node.creator
                if parent is not None and "dataset" in parent.inputs:
                    info["dataset_frames"] = parent.inputs.dataset.n_frames
                    info["dataset_uuid"] = parent.inputs.dataset.uuid
                    info["dataset_source"] = parent.inputs.dataset.source
        elif isinstance(node, PotentialData):
            info["foundation"] = node.label
            info["foundation_uuid"] = node.uuid
            info["foundation_sha256"] = node.sha256
    return info


def arrhenius_results(potential_kind: str | None = None, label: str | None = None) -> list[dict]:
    """One row per DiffusionWorkChain that produced an ``arrhenius`` output, newest first."""
    qb = orm.QueryBuilder()
    qb.append(DiffusionWorkChain, tag="study", project=["id", "uuid", "label", "ctime", "attributes.exit_status"])
    potential_filters = {"attributes.kind": potential_kind} if potential_kind else {}
    qb.append(
        PotentialData,
        with_outgoing="study",
        tag="potential",
        filters=potential_filters,
        project=["label", "attributes.kind", "uuid"],
    )
    qb.append(orm.Dict, with_incoming="study", edge_filters={"label": "arrhenius"}, project=["attributes", "uuid"])
    if label:
        qb.add_filter("study", {"label": {"like": f"%{label}%"}})
    qb.order_by({"study": {"ctime": "desc"}})
    rows = []
    for pk, uuid, study_label, ctime, exit_status, pot_label, kind, pot_uuid, arrhenius, arr_uuid in qb.all():
        lineage = training_lineage(pot_uuid) if kind != "classical" else {}
        primary = arrhenius["primary_mode"]
        record = arrhenius[primary]
        temperatures = [p["temperature_K"] for p in record["points"]]
        rows.append(
            {
                "pk": pk,
                "study": study_label,
                "potential": pot_label,
                "kind": kind,
                "mode": primary,
                "T_K": f"{min(temperatures):.0f}-{max(temperatures):.0f} ({len(temperatures)})",
                "Ea_eV": record.get("Ea_eV") if record["fit_ok"] else None,
                "Ea_err_eV": record.get("Ea_err_eV") if record["fit_ok"] else None,
                "D300_cm2_s": record.get("D300_cm2_s") if record["fit_ok"] else None,
                "chi2_dof": record.get("chi2_dof") if record["fit_ok"] else None,
                "train_frames": lineage.get("train_frames"),
                "foundation": lineage.get("foundation"),
                "train_source": lineage.get("train_source"),
                "status": "ok" if exit_status == 0 else f"failed ({exit_status}): {record.get('reason', '')}",
                "created": ctime.isoformat(timespec="seconds"),
                "study_uuid": uuid,
                "potential_uuid": pot_uuid,
                "arrhenius_uuid": arr_uuid,
            }
        )
    return rows


def diffusivity_table(node: orm.WorkflowNode) -> list[dict]:
    """D(T) of one DiffusionWorkChain, one row per temperature, both modes, with the settings that made them."""
    rows = []
    for label in sorted(node.outputs.diffusivity, key=lambda k: int(k.split("_")[1])):
        entry = node.outputs.diffusivity[label].get_dict()
        row = {
            "T_K": entry["temperature_K"],
            "replicas": entry["n_replicas"],
            "production_ps": entry["md"]["production_ps"],
        }
        for mode in ("collective", "tracer"):
            if mode in entry:
                row[f"D_{mode}_cm2_s"] = entry[mode]["D_cm2_s"]
                row[f"D_{mode}_err_cm2_s"] = entry[mode]["D_err_cm2_s"]
                row[f"{mode}_diffusive"] = entry[mode]["diffusive"]
                row[f"{mode}_samples"] = entry[mode]["n_samples"]
        rows.append(row)
    return rows
