"""QueryBuilder helpers behind ``aiida-lifdiff results``, ``lineage``, ``export`` and ``show``.

* :func:`arrhenius_results`: one row per DiffusionWorkChain with an ``arrhenius`` output, with its lineage
  (potential, foundation, training set, cell, temperatures, MD length, replicas) and the node UUIDs. It
  runs a fixed number of bulk queries, however many results there are (no query per row).
* :func:`training_lineage` / :func:`training_lineages`: what a model was trained on, read from the graph.
* :func:`provenance_tree`: the chain from a result back to raw data and code versions, as a nested dict.
* :func:`diffusivity_table`: D(T) of one study.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from aiida import orm
from aiida.common.links import LinkType

if TYPE_CHECKING:
    from aiida_lifdiff.data.potential import PotentialData

# The plugin classes (and with them ASE, aiida.engine, the work chains) are imported only where nodes are
# loaded: `aiida-lifdiff results` is a query and starts in half the time without them.

#: ``process_type`` of the work chains, as stored on their nodes (the entry points of setup.cfg).
DIFFUSION_PROCESS_TYPE = "aiida.workflows:lifdiff.diffusion"
BENCHMARK_PROCESS_TYPE = "aiida.workflows:lifdiff.benchmark"
STUDY_PROCESS_TYPES = (DIFFUSION_PROCESS_TYPE, BENCHMARK_PROCESS_TYPE)
MD_PROCESS_TYPE = "aiida.workflows:lifdiff.md"

#: The MdWorkChain output of a study's first member (temperature 0, replica 0; ``diffusion.member_name``).
FIRST_TRAJECTORY = "trajectories__T0_r0"

#: Inputs of a training calculation that say what the model was made from.
TRAINING_INPUTS = ("train", "valid", "test", "foundation", "replay")

#: Diffusivity modes of an Arrhenius result, and the scalars of each mode's fit that a results row shows.
FIT_MODES = ("collective", "tracer")
#: Each is projected with a cast (b/f/i/t): an uncast JSON scalar comes back from SQLite through
#: ``json_quote`` with 15 significant digits, a cast one as the stored double, exactly.
FIT_KEYS = {
    "fit_ok": "b",
    "Ea_eV": "f",
    "Ea_err_eV": "f",
    "Ea_err_scaled_eV": "f",
    "D0_cm2_s": "f",
    "D0_err_cm2_s": "f",
    "D300_cm2_s": "f",
    "D300_err_cm2_s": "f",
    "D300_factor": "f",
    "chi2_dof": "f",
    "n_points": "i",
    "reason": "t",
}

#: Inputs of a DiffusionWorkChain read for the lineage columns.
STUDY_INPUTS = ("md_settings", "temperatures", "seeds")

#: Largest number of values in one ``in`` filter (SQLite allows a few thousand bound parameters).
CHUNK = 500

#: ``node_type`` of the plugin's data classes (``DatasetData.class_node_type`` etc.).
_DATASET_TYPE = "data.lifdiff.dataset.DatasetData."
_POTENTIAL_TYPE = "data.lifdiff.potential.PotentialData."


def _potentials(**kwargs) -> dict:
    """``QueryBuilder.append`` arguments for PotentialData nodes, without importing the class."""
    filters = dict(kwargs.pop("filters", {}) or {})
    filters["node_type"] = _POTENTIAL_TYPE
    return {"cls": orm.Data, "filters": filters, **kwargs}


def _datasets(**kwargs) -> dict:
    filters = dict(kwargs.pop("filters", {}) or {})
    filters["node_type"] = _DATASET_TYPE
    return {"cls": orm.Data, "filters": filters, **kwargs}


def _diffusions(**kwargs) -> dict:
    filters = dict(kwargs.pop("filters", {}) or {})
    filters["process_type"] = DIFFUSION_PROCESS_TYPE
    return {"cls": orm.WorkChainNode, "filters": filters, **kwargs}


def _chunks(values: Sequence, size: int = CHUNK) -> Iterator[list]:
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start : start + size]


# ---------------------------------------------------------------------------------------------- training


def training_lineages(potential_uuids: Iterable[str]) -> dict[str, dict]:
    """:func:`training_lineage` of many potentials in two queries: ``{uuid: lineage}`` (``{}`` if not trained here)."""
    uuids = sorted(set(potential_uuids))
    found: dict[str, dict] = {uuid: {} for uuid in uuids}
    train_parts: dict[str, list[str]] = {}
    for chunk in _chunks(uuids):
        qb = orm.QueryBuilder()
        qb.append(**_potentials(filters={"uuid": {"in": chunk}}, tag="model", project=["uuid"]))
        qb.append(
            orm.CalcJobNode,
            with_outgoing="model",
            edge_filters={"type": LinkType.CREATE.value},
            tag="training",
            project=["uuid", "attributes.process_label"],
        )
        qb.append(
            orm.Node,
            with_outgoing="training",
            edge_filters={"label": {"in": list(TRAINING_INPUTS)}, "type": LinkType.INPUT_CALC.value},
            edge_project=["label"],
            project=[
                "node_type",
                "uuid",
                "label",
                "attributes.n_frames",
                "attributes.source",
                "attributes.sha256",
                "attributes.lineage",
            ],
        )
        for model, training, trainer, node_type, uuid, label, n_frames, source, sha256, lineage, link in qb.all():
            info = found[model]
            info.setdefault("training_uuid", training)
            info.setdefault("trainer", trainer)
            if node_type == _DATASET_TYPE:
                info[f"{link}_frames"] = n_frames
                info[f"{link}_uuid"] = uuid
                if link == "train":
                    info["train_source"] = source or ""
                    train_parts.setdefault(uuid, []).append(model)
            elif node_type == _POTENTIAL_TYPE:
                info["foundation"] = label
                info["foundation_uuid"] = uuid
                info["foundation_sha256"] = sha256
                info["foundation_name"] = (lineage or {}).get("foundation") or label
    # The train part of a seeded split: report the whole dataset it was split from as well.
    for chunk in _chunks(list(train_parts)):
        qb = orm.QueryBuilder()
        qb.append(**_datasets(filters={"uuid": {"in": chunk}}, tag="part", project=["uuid"]))
        qb.append(orm.CalcFunctionNode, with_outgoing="part", tag="split")
        qb.append(
            **_datasets(
                with_outgoing="split",
                edge_filters={"label": "dataset"},
                project=["attributes.n_frames", "uuid", "attributes.source"],
            )
        )
        for part, n_frames, uuid, source in qb.all():
            for model in train_parts[part]:
                found[model].update(dataset_frames=n_frames, dataset_uuid=uuid, dataset_source=source or "")
    return found


def training_lineage(potential: PotentialData | str) -> dict:
    """What a model was trained on, read from the provenance graph (not from the model's own attributes).

    Follows ``model <-create- training CalcJob <-input_calc[train/valid/test/foundation/replay]- nodes``; when
    the train part came from ``split_dataset`` the whole dataset it was split from is reported as well.
    Returns ``{}`` for a potential that was not trained in this database (classical, imported files).
    """
    uuid = potential if isinstance(potential, str) else potential.uuid
    if isinstance(potential, str) and len(potential) < 36:
        uuid = orm.load_node(potential).uuid
    return training_lineages([uuid])[uuid]


# ---------------------------------------------------------------------------------------------- results


def _study_inputs(study_ids: Sequence[int]) -> dict[int, dict]:
    """``{study pk: {md_settings: {production_ps, timestep_fs}, temperatures: list, seeds: list}}``."""
    found: dict[int, dict] = {}
    for chunk in _chunks(study_ids):
        qb = orm.QueryBuilder()
        qb.append(orm.WorkflowNode, filters={"id": {"in": chunk}}, tag="study", project=["id"])
        qb.append(
            orm.Data,
            with_outgoing="study",
            edge_filters={"label": {"in": list(STUDY_INPUTS)}},
            edge_project=["label"],
            project=[
                "attributes.list",
                {"attributes.production_ps": {"cast": "f"}},
                {"attributes.timestep_fs": {"cast": "f"}},
            ],
        )
        for pk, values, production, timestep, link in qb.all():
            if link == "md_settings":
                found.setdefault(pk, {})[link] = {"production_ps": production, "timestep_fs": timestep}
            else:
                found.setdefault(pk, {})[link] = values
    return found


def _trajectory_atoms(study_ids: Sequence[int], label: str | None) -> dict[int, int]:
    """``{study pk: atoms}`` from the shape of the trajectories the study's MdWorkChains returned.

    Read from the ``array|positions`` shape attribute ([frames, atoms, 3]): a short list, where projecting a
    structure's ``sites`` would convert every site of every structure (seconds for a thousand studies).
    """
    found: dict[int, int] = {}
    edge_filters = {"type": LinkType.RETURN.value}
    if label:
        edge_filters["label"] = label
    for chunk in _chunks(study_ids):
        qb = orm.QueryBuilder()
        qb.append(orm.WorkflowNode, filters={"id": {"in": chunk}}, tag="study", project=["id"])
        qb.append(orm.WorkflowNode, with_incoming="study", filters={"process_type": MD_PROCESS_TYPE}, tag="md")
        qb.append(
            orm.TrajectoryData, with_incoming="md", edge_filters=edge_filters, project=["attributes.array|positions"]
        )
        for pk, shape in qb.iterall():
            if pk not in found and isinstance(shape, list) and len(shape) == 3:
                found[pk] = shape[1]
    return found


def _study_structures(study_ids: Sequence[int]) -> dict[int, dict]:
    """``{study pk: {n_atoms, repeat, structure_uuid}}``: the MD cell (the study's ``structure`` output).

    Atoms are counted in the first member's trajectory (one row per study), else in any trajectory of the
    study, else in the structure itself; ``repeat`` is the ``repeat`` input of ``create_lif_supercell``.
    """
    structure_of: dict[int, int] = {}
    uuids: dict[int, str] = {}
    for chunk in _chunks(study_ids):
        qb = orm.QueryBuilder()
        qb.append(orm.WorkflowNode, filters={"id": {"in": chunk}}, tag="study", project=["id"])
        qb.append(orm.StructureData, with_incoming="study", edge_filters={"label": "structure"}, project=["id", "uuid"])
        for pk, structure, uuid in qb.all():
            structure_of[pk] = structure
            uuids[structure] = uuid
    n_atoms = _trajectory_atoms(study_ids, FIRST_TRAJECTORY)
    missing = [pk for pk in study_ids if pk not in n_atoms]
    if missing:
        n_atoms.update(_trajectory_atoms(missing, None))
    without = sorted({structure_of[pk] for pk in study_ids if pk not in n_atoms and pk in structure_of})
    sites_of: dict[int, int] = {}
    for chunk in _chunks(without):
        qb = orm.QueryBuilder()
        qb.append(orm.StructureData, filters={"id": {"in": chunk}}, project=["id", "attributes.sites"])
        sites_of.update({pk: len(sites or []) for pk, sites in qb.iterall()})
    repeat: dict[int, int] = {}
    for chunk in _chunks(sorted(set(structure_of.values()))):
        qb = orm.QueryBuilder()
        qb.append(orm.StructureData, filters={"id": {"in": chunk}}, tag="structure", project=["id"])
        qb.append(orm.CalcFunctionNode, with_outgoing="structure", tag="builder")
        qb.append(orm.Int, with_outgoing="builder", edge_filters={"label": "repeat"}, project=["attributes.value"])
        repeat.update(dict(qb.all()))
    found = {}
    for pk in study_ids:
        structure = structure_of.get(pk)
        found[pk] = {
            "n_atoms": n_atoms.get(pk, sites_of.get(structure)),
            "repeat": repeat.get(structure),
            "structure_uuid": uuids.get(structure),
        }
    return found


def _study_lattices(study_ids: Sequence[int]) -> dict[int, float]:
    """``{study pk: a0 (A)}`` for studies that relaxed their potential's lattice (the ``lattice`` output)."""
    found: dict[int, float] = {}
    for chunk in _chunks(study_ids):
        qb = orm.QueryBuilder()
        qb.append(orm.WorkflowNode, filters={"id": {"in": chunk}}, tag="study", project=["id"])
        qb.append(
            orm.Dict,
            with_incoming="study",
            edge_filters={"label": "lattice"},
            project=[{"attributes.a0_A": {"cast": "f"}}],
        )
        found.update({pk: a0 for pk, a0 in qb.all() if a0 is not None})
    return found


def _study_benchmarks(study_ids: Sequence[int]) -> dict[int, dict]:
    """``{study pk: {benchmark, benchmark_pk, benchmark_uuid}}`` for studies called by a BenchmarkWorkChain."""
    found: dict[int, dict] = {}
    for chunk in _chunks(study_ids):
        qb = orm.QueryBuilder()
        qb.append(orm.WorkflowNode, filters={"id": {"in": chunk}}, tag="study", project=["id"])
        qb.append(
            orm.WorkflowNode,
            with_outgoing="study",
            filters={"process_type": BENCHMARK_PROCESS_TYPE},
            project=["label", "id", "uuid"],
        )
        for pk, label, bench_pk, uuid in qb.all():
            found[pk] = {"benchmark": label, "benchmark_pk": bench_pk, "benchmark_uuid": uuid}
    return found


def _contains(text: str | None, needle: str) -> bool:
    return text is not None and needle.lower() in str(text).lower()


def arrhenius_results(
    potential_kind: str | None = None,
    label: str | None = None,
    *,
    potential: str | None = None,
    foundation: str | None = None,
    train_source: str | None = None,
    min_train_frames: int | None = None,
    max_train_frames: int | None = None,
    atoms: int | None = None,
    min_temperatures: int | None = None,
    study_uuids: Iterable[str] | None = None,
) -> list[dict]:
    """One row per DiffusionWorkChain that produced an ``arrhenius`` output, newest first, with its lineage.

    Filters (all optional, combined with AND): ``potential_kind`` (exact), ``label`` (the study label contains
    it), ``potential`` (the potential label contains it), ``foundation`` (the foundation name or label
    contains it: a fine-tuned model's or a foundation model's own), ``train_source`` (the training set's
    source contains it), ``min_train_frames``/``max_train_frames`` (training-set size; rows without a
    training set are left out), ``atoms`` (atoms in the MD cell), ``min_temperatures`` (temperatures the
    study ran), ``study_uuids`` (only these DiffusionWorkChains). Text filters ignore case.

    A fixed number of bulk queries (studies + potential + fit; inputs; structures; callers; training
    lineages), independent of the number of rows.
    """
    qb = orm.QueryBuilder()
    study_filters: dict = {}
    if label:
        study_filters["label"] = {"ilike": f"%{label}%"}
    if study_uuids is not None:
        study_filters["uuid"] = {"in": sorted(set(study_uuids))}
        if not study_filters["uuid"]["in"]:
            return []
    qb.append(
        **_diffusions(
            tag="study",
            filters=study_filters,
            project=["id", "uuid", "label", "ctime", "attributes.exit_status", "attributes.process_state"],
        )
    )
    potential_filters: dict = {}
    if potential_kind:
        potential_filters["attributes.kind"] = potential_kind
    if potential:
        potential_filters["label"] = {"ilike": f"%{potential}%"}
    qb.append(
        **_potentials(
            with_outgoing="study",
            edge_filters={"label": "potential"},
            tag="potential",
            filters=potential_filters,
            project=["label", "attributes.kind", "uuid", "attributes.lineage.foundation"],
        )
    )
    # Only the scalars of each mode's fit: a fit record also holds lists and a covariance matrix, and
    # converting those for every row would cost more than all the other queries together.
    qb.append(
        orm.Dict,
        with_incoming="study",
        edge_filters={"label": "arrhenius"},
        project=["uuid", {"attributes.primary_mode": {"cast": "t"}}]
        + [{f"attributes.{mode}.{key}": {"cast": cast}} for mode in FIT_MODES for key, cast in FIT_KEYS.items()],
    )
    qb.order_by({"study": [{"ctime": "desc"}, {"id": "desc"}]})
    records = []
    for values in qb.all():
        # study (6 values), potential (4), then the fit's uuid, primary mode and the scalars per mode
        head, arr_uuid, primary, fits = values[:10], values[10], values[11], values[12:]
        arrhenius = {"primary_mode": primary}
        for index, mode in enumerate(FIT_MODES):
            arrhenius[mode] = dict(zip(FIT_KEYS, fits[index * len(FIT_KEYS) : (index + 1) * len(FIT_KEYS)]))
        records.append((*head, arrhenius, arr_uuid))

    study_ids = [record[0] for record in records]
    inputs = _study_inputs(study_ids)
    structures = _study_structures(study_ids)
    benchmarks = _study_benchmarks(study_ids)
    lattices = _study_lattices(study_ids)
    lineages = training_lineages({record[8] for record in records if record[7] != "classical"})

    rows = []
    for (
        pk,
        uuid,
        study_label,
        ctime,
        exit_status,
        state,
        pot_label,
        kind,
        pot_uuid,
        pot_foundation,
        arrhenius,
        arr_uuid,
    ) in records:
        lineage = lineages.get(pot_uuid, {})
        # A fine-tuned model's foundation comes from the graph; a foundation model's name from its own lineage.
        own_foundation = pot_foundation if isinstance(pot_foundation, str) else None
        primary = arrhenius.get("primary_mode") or "collective"
        record = arrhenius.get(primary) or {}
        fit_ok = bool(record.get("fit_ok"))
        study_inputs = inputs.get(pk, {})
        settings = study_inputs.get("md_settings") or {}
        temperatures = study_inputs.get("temperatures") or []
        seeds = study_inputs.get("seeds")
        cell = structures.get(pk, {})
        if exit_status == 0:
            status = "ok"
        elif exit_status is None:
            status = str(state or "unknown")
        else:
            status = f"failed ({exit_status}): {record.get('reason', '')}".rstrip(": ")
        row = {
            "pk": pk,
            "study": study_label,
            "potential": pot_label,
            "kind": kind,
            "foundation": lineage.get("foundation_name") or own_foundation,
            "train_frames": lineage.get("train_frames"),
            "valid_frames": lineage.get("valid_frames"),
            "test_frames": lineage.get("test_frames"),
            "dataset_frames": lineage.get("dataset_frames"),
            "train_source": lineage.get("train_source"),
            "trainer": lineage.get("trainer"),
            "n_atoms": cell.get("n_atoms"),
            "repeat": cell.get("repeat"),
            "a0_A": lattices.get(pk),
            "temperatures_K": [float(t) for t in temperatures],
            "n_temperatures": len(temperatures),
            "n_fit_temperatures": record.get("n_points") if fit_ok else 0,
            "T_K": f"{min(temperatures):.0f}-{max(temperatures):.0f} ({len(temperatures)})" if temperatures else "-",
            "production_ps": settings.get("production_ps"),
            "timestep_fs": settings.get("timestep_fs"),
            "n_seeds": len(seeds) if seeds is not None else None,
            "mode": primary,
            "Ea_eV": record.get("Ea_eV") if fit_ok else None,
            "Ea_err_eV": record.get("Ea_err_eV") if fit_ok else None,
            "Ea_err_scaled_eV": record.get("Ea_err_scaled_eV") if fit_ok else None,
            "D0_cm2_s": record.get("D0_cm2_s") if fit_ok else None,
            "D0_err_cm2_s": record.get("D0_err_cm2_s") if fit_ok else None,
            "D300_cm2_s": record.get("D300_cm2_s") if fit_ok else None,
            "D300_err_cm2_s": record.get("D300_err_cm2_s") if fit_ok else None,
            "D300_factor": record.get("D300_factor") if fit_ok else None,
            "chi2_dof": record.get("chi2_dof") if fit_ok else None,
            "exit_status": exit_status,
            "status": status,
            "created": ctime.isoformat(timespec="seconds"),
            "benchmark": None,
            "benchmark_pk": None,
            "study_uuid": uuid,
            "potential_uuid": pot_uuid,
            "arrhenius_uuid": arr_uuid,
            "benchmark_uuid": None,
            "structure_uuid": cell.get("structure_uuid"),
            "training_uuid": lineage.get("training_uuid"),
            "dataset_uuid": lineage.get("dataset_uuid"),
        }
        row.update(benchmarks.get(pk, {}))
        rows.append(row)

    def keep(row: dict) -> bool:
        frames = row["train_frames"]
        return not (
            (foundation and not _contains(row["foundation"], foundation))
            or (train_source and not _contains(row["train_source"], train_source))
            or (min_train_frames is not None and (frames is None or frames < min_train_frames))
            or (max_train_frames is not None and (frames is None or frames > max_train_frames))
            or (atoms is not None and row["n_atoms"] != atoms)
            or (min_temperatures is not None and row["n_temperatures"] < min_temperatures)
        )

    return [row for row in rows if keep(row)]


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


# ---------------------------------------------------------------------------------------------- nodes


class NodeNotFound(ValueError):
    """No node (or no unique one) matches an identifier given on the command line."""


def load_node_by_identifier(identifier: str | int, label_process_types: Sequence[str] = ()) -> orm.Node:
    """A node from a pk, a UUID (or a unique UUID prefix of at least 4 characters) or, for the process types in
    ``label_process_types``, a label (the newest such process with that label).
    """
    text = str(identifier).strip()
    if text.isdigit():
        found = orm.QueryBuilder().append(orm.Node, filters={"id": int(text)}, project="*").first(flat=True)
        if found is not None:
            return found
    if len(text) >= 4 and all(c in "0123456789abcdef-" for c in text.lower()):
        matches = orm.QueryBuilder().append(orm.Node, filters={"uuid": {"like": f"{text.lower()}%"}}, project="*")
        nodes = matches.all(flat=True)
        if len(nodes) == 1:
            return nodes[0]
        if len(nodes) > 1:
            raise NodeNotFound(f"{len(nodes)} nodes have a UUID starting with {text!r}; give more characters")
    if label_process_types:
        qb = orm.QueryBuilder().append(
            orm.ProcessNode,
            filters={"label": text, "process_type": {"in": list(label_process_types)}},
            project="*",
        )
        qb.order_by({orm.ProcessNode: [{"ctime": "desc"}, {"id": "desc"}]})
        found = qb.first(flat=True)
        if found is not None:
            return found
    raise NodeNotFound(f"no node with pk, UUID{' or label' if label_process_types else ''} {text!r}")


def study_diffusions(node: orm.Node) -> list[orm.WorkflowNode]:
    """The DiffusionWorkChains of a study: the node itself, or the ones a BenchmarkWorkChain called."""
    if node.process_type == DIFFUSION_PROCESS_TYPE:
        return [node]
    return sorted(
        (
            child
            for child in node.base.links.get_outgoing(link_type=LinkType.CALL_WORK).all_nodes()
            if child.process_type == DIFFUSION_PROCESS_TYPE
        ),
        key=lambda child: child.ctime,
    )


# ---------------------------------------------------------------------------------------------- provenance

#: Keys of a calculation's output Dicts that hold the version of the program that ran.
PROGRAM_VERSION_KEYS = ("version", "mace_version", "deepmd_version", "deepmd_kit_version")

#: Inputs followed first (so they are the ones shown in full): the MD script, the model, the data.
INPUT_PRIORITY = ("script", "potential", "structure", "train", "dataset", "foundation")

#: Outputs of a work chain that the provenance of a work chain starts from (then its inputs).
RESULT_OUTPUTS = ("arrhenius", "comparison", "summary", "model")
RESULT_PREFIXES = ("arrhenius__", "models__")


def _short(value, width: int = 60) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def node_details(node: orm.Node) -> dict:
    """What the lineage tree shows about one node: versions and codes for processes, the identity of data."""
    from aiida_lifdiff.data.dataset import DatasetData
    from aiida_lifdiff.data.potential import PotentialData

    details: dict = {}
    attributes = node.base.attributes
    if isinstance(node, orm.ProcessNode):
        details["process_label"] = node.process_label
        details["process_state"] = node.process_state.value if node.process_state else None
        details["exit_status"] = node.exit_status
        if node.exit_message:
            details["exit_message"] = node.exit_message
        version = attributes.get("version", None)
        if version:
            details["version"] = dict(version)
        if isinstance(node, orm.CalcJobNode):
            code = node.base.links.get_incoming(node_class=orm.AbstractCode, link_label_filter="code").all_nodes()
            if code:
                details["code"] = code[0].full_label
                details["code_description"] = code[0].description
                details["code_uuid"] = code[0].uuid
            elif node.computer is not None:
                details["computer"] = node.computer.label
            # The program's own version, as its parser recorded it (LAMMPS log header, mace/dp logs).
            for output in node.base.links.get_outgoing(node_class=orm.Dict, link_type=LinkType.CREATE).all_nodes():
                found = [output.base.attributes.get(key, None) for key in PROGRAM_VERSION_KEYS]
                found = [value for value in found if isinstance(value, str) and value]
                if found:
                    details["program_version"] = found[0]
                    break
    elif isinstance(node, PotentialData):
        details.update(kind=node.kind, sha256=node.sha256, lineage=node.lineage)
        if node.model_info:
            details["model_info"] = {k: v for k, v in node.model_info.items() if not isinstance(v, (list, dict))}
    elif isinstance(node, DatasetData):
        details.update(
            n_frames=attributes.get("n_frames", None),
            source=attributes.get("source", ""),
            sha256=attributes.get("sha256", None),
        )
        if attributes.get("split", None):
            details["split"] = attributes.get("split")
    elif isinstance(node, orm.StructureData):
        details.update(formula=node.get_formula(), n_atoms=len(node.sites))
    elif isinstance(node, orm.AbstractCode):
        details.update(code=node.full_label, description=node.description)
    elif isinstance(node, orm.TrajectoryData):
        for key in ("temperature_K", "seed", "timestep_fs"):
            if attributes.get(key, None) is not None:
                details[key] = attributes.get(key)
        shape = attributes.get("array|positions", None)
        if shape:
            details["frames"] = shape[0]
    elif isinstance(node, orm.Dict):
        content = node.get_dict()
        primary = content.get("primary_mode")
        if primary and isinstance(content.get(primary), dict) and "fit_ok" in content[primary]:
            record = content[primary]
            details["mode"] = primary
            if record.get("fit_ok"):
                details.update(Ea_eV=record.get("Ea_eV"), Ea_err_eV=record.get("Ea_err_eV"))
            else:
                details["reason"] = record.get("reason")
        elif len(content) <= 12 and all(isinstance(v, (str, int, float, bool, type(None))) for v in content.values()):
            details["values"] = dict(sorted(content.items()))
        else:
            details["keys"] = sorted(content)[:10]
    elif isinstance(node, orm.List):
        details["value"] = node.get_list()
    elif isinstance(node, (orm.Int, orm.Float, orm.Str, orm.Bool)):
        details["value"] = node.value
    elif isinstance(node, orm.SinglefileData):
        details["filename"] = node.filename
    return details


def _summary(node: orm.Node, link_type: str | None, link_label: str | None) -> dict:
    return {
        "pk": node.pk,
        "uuid": node.uuid,
        "node_type": type(node).__name__,
        "label": node.label,
        "link_type": link_type,
        "link_label": link_label,
        "details": node_details(node),
    }


def _group_key(node: orm.Node, link_label: str) -> tuple:
    """Siblings with the same key are one kind of thing (e.g. replica trajectories made by the same CalcJob class);
    beyond ``fan_out`` of them the rest are counted, not expanded. Data without a creator never group."""
    if isinstance(node, orm.ProcessNode):
        return ("process", node.process_type, link_label)
    creator = node.creator if isinstance(node, orm.Data) else None
    if creator is None:
        return ("leaf", node.pk)
    return ("made", type(node).__name__, creator.process_type)


def _input_order(link) -> tuple:
    label = link.link_label
    return (INPUT_PRIORITY.index(label) if label in INPUT_PRIORITY else len(INPUT_PRIORITY), label)


def provenance_tree(
    node: orm.Node | str | int,
    max_depth: int = 40,
    fan_out: int = 1,
) -> dict:
    """The chain from ``node`` back to raw data and code versions, as a nested dict.

    Walks incoming CREATE links (data -> its creating calculation) and INPUT links (calculation -> its
    inputs) backwards, from an Arrhenius result, a potential or any node; from a work chain it starts at
    its results (``arrhenius``, ``comparison``, ``summary``, models) and then its own inputs. Each entry is
    ``{pk, uuid, node_type, label, link_type, link_label, details, children, collapsed, seen, truncated}``:

    * ``details``: for processes the process label, state, exit status, the ``version`` recorded on the node
      ({core, plugin}) and for calculations the code (label@computer) and its description; for potentials
      kind, sha256 and lineage; for datasets n_frames, source and sha256; values of small inputs;
    * ``seen``: the node was already shown above (the walk never expands a node twice);
    * ``collapsed``: siblings of the same kind beyond ``fan_out`` (e.g. the other replica trajectories), as
      ``{count, node_type, made_by, link_labels}``;
    * ``truncated``: ``max_depth`` was reached below this node.

    Code nodes are shown on the calculation that used them, not as separate entries.
    """
    if not isinstance(node, orm.Node):
        node = load_node_by_identifier(node)
    visited: set[int] = set()

    def expand(current: orm.Node, link_type: str | None, link_label: str | None, depth: int) -> dict:
        entry = _summary(current, link_type, link_label)
        entry.update(children=[], collapsed=[], seen=current.pk in visited, truncated=False)
        if entry["seen"]:
            return entry
        visited.add(current.pk)
        links = []
        if isinstance(current, orm.WorkflowNode) and depth == 0:
            outputs = current.base.links.get_outgoing(link_type=LinkType.RETURN).all()
            results = [
                link
                for link in outputs
                if link.link_label in RESULT_OUTPUTS or link.link_label.startswith(RESULT_PREFIXES)
            ]
            links += [(link, "RESULT") for link in sorted(results, key=lambda link: link.link_label)]
            inputs = current.base.links.get_incoming(link_type=LinkType.INPUT_WORK).all()
            links += [(link, "INPUT_WORK") for link in sorted(inputs, key=lambda link: link.link_label)]
        elif isinstance(current, orm.ProcessNode):
            inputs = current.base.links.get_incoming(link_type=(LinkType.INPUT_CALC, LinkType.INPUT_WORK)).all()
            links += [
                (link, link.link_type.name)
                for link in sorted(inputs, key=_input_order)
                if not isinstance(link.node, orm.AbstractCode)
            ]
        else:
            links += [(link, "CREATE") for link in current.base.links.get_incoming(link_type=LinkType.CREATE).all()]
        if not links:
            return entry
        if depth >= max_depth:
            entry["truncated"] = True
            return entry
        groups: dict[tuple, list] = {}
        for link, kind in links:
            key = ("result", link.link_label) if kind == "RESULT" else _group_key(link.node, link.link_label)
            groups.setdefault(key, []).append((link, kind))
        for members in groups.values():
            # Nodes shown already are listed as such (one line each); the fan-out applies to the others.
            fresh = [(link, kind) for link, kind in members if link.node.pk not in visited]
            for link, kind in members:
                if link.node.pk in visited:
                    entry["children"].append(expand(link.node, kind, link.link_label, depth + 1))
            for link, kind in fresh[:fan_out]:
                entry["children"].append(expand(link.node, kind, link.link_label, depth + 1))
            rest = fresh[fan_out:]
            if rest:
                creator = rest[0][0].node.creator if isinstance(rest[0][0].node, orm.Data) else None
                entry["collapsed"].append(
                    {
                        "count": len(rest),
                        "node_type": type(rest[0][0].node).__name__,
                        "made_by": creator.process_label if creator is not None else None,
                        "link_labels": [link.link_label for link, _ in rest],
                        "pks": [link.node.pk for link, _ in rest],
                    }
                )
        return entry

    return expand(node, None, None, 0)


def tree_lines(tree: dict, indent: str = "  ") -> list[str]:
    """The provenance tree as indented text lines (what ``aiida-lifdiff lineage`` prints)."""
    lines: list[str] = []

    def describe(entry: dict) -> str:
        details = entry["details"]
        name = details.get("process_label") or entry["node_type"]
        text = f"{name}<{entry['pk']}> {entry['uuid'][:8]}"
        if entry["label"] and entry["label"] != name:
            text += f" {entry['label']!r}"
        if entry["seen"]:
            return text + " (shown above)"
        parts = []
        if "process_label" in details:
            state = details.get("process_state") or "?"
            parts.append(f"{state} [{details.get('exit_status')}]")
            if details.get("exit_message"):
                parts.append(_short(details["exit_message"], 60))
            if details.get("code"):
                description = details.get("code_description")
                parts.append(f"code {details['code']}" + (f" ({_short(description, 70)})" if description else ""))
            if details.get("program_version"):
                parts.append(f"program version {details['program_version']}")
            version = details.get("version") or {}
            if version:
                plugin = f", plugin {version['plugin']}" if version.get("plugin") else ""
                parts.append(f"aiida-core {version.get('core')}{plugin}")
        elif entry["node_type"] == "PotentialData":
            lineage = details.get("lineage") or {}
            parts.append(f"{details.get('kind')}, sha256 {str(details.get('sha256'))[:12]}")
            for key in ("foundation", "program", "mode", "mace_version"):
                value = lineage.get(key)
                if isinstance(value, dict):
                    value = value.get("name") or value.get("label")
                if value:
                    parts.append(f"{key} {value}")
        elif entry["node_type"] == "DatasetData":
            split = f"{details['split']} part, " if details.get("split") else ""
            parts.append(f"{split}{details.get('n_frames')} frames, sha256 {str(details.get('sha256'))[:12]}")
            if details.get("source"):
                parts.append(f"source: {_short(details['source'], 70)}")
        elif "Ea_eV" in details:
            parts.append(f"Ea ({details['mode']}) = {details['Ea_eV']:.3f} +- {details['Ea_err_eV']:.3f} eV")
        elif "reason" in details:
            parts.append(f"no fit ({details['mode']}): {_short(details['reason'], 60)}")
        elif "formula" in details:
            parts.append(f"{details['formula']}, {details['n_atoms']} atoms")
        elif "value" in details:
            parts.append(f"= {_short(details['value'], 60)}")
        elif "values" in details:
            parts.append(_short(", ".join(f"{k}={v}" for k, v in details["values"].items()), 100))
        elif "keys" in details:
            parts.append("{" + ", ".join(details["keys"]) + "}")
        elif "temperature_K" in details:
            parts.append(f"T = {details['temperature_K']} K, seed {details.get('seed')}")
        elif "filename" in details:
            parts.append(details["filename"])
        elif "code" in details:
            parts.append(f"{details['code']}: {_short(details.get('description'), 60)}")
        return text + (": " + "; ".join(parts) if parts else "")

    def walk(entry: dict, depth: int) -> None:
        prefix = indent * depth
        if entry["link_type"] is None:
            head = ""
        elif entry["link_type"] == "CREATE":
            head = f"<- created by ({entry['link_label']}) "
        elif entry["link_type"] == "RESULT":
            head = f"=> result {entry['link_label']}: "
        else:
            head = f"<- {entry['link_label']}: "
        lines.append(prefix + head + describe(entry))
        for child in entry["children"]:
            walk(child, depth + 1)
        for group in entry["collapsed"]:
            labels = ", ".join(group["link_labels"][:6]) + (", ..." if len(group["link_labels"]) > 6 else "")
            made = f" made by {group['made_by']}" if group["made_by"] else ""
            lines.append(
                f"{indent * (depth + 1)}<- ... {group['count']} more {group['node_type']}{made} ({labels}), "
                "same chain as the one above"
            )
        if entry["truncated"]:
            lines.append(f"{indent * (depth + 1)}<- ... (depth limit; run `lineage {entry['pk']}` to go on)")

    walk(tree, 0)
    return lines
