"""Study specifications (``workchains/*.yaml``): validated before anything touches the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiida_lifdiff.protocols import get_protocol_inputs, load_protocols

BUILTIN_CLASSICAL = ("tosi-fumi-lif",)

_TOP_KEYS = {
    "name": "short name of the study (used for labels and output files)",
    "description": "free text",
    "protocol": "protocol of DiffusionWorkChain to start from (quick | production)",
    "potential": "the potential: {kind: classical, model: tosi-fumi-lif} | {kind: mace, path: FILE} | "
    "{kind: mace, foundation: medium-mpa-0} | {kind: deepmd, path: FILE}",
    "code": "label of the code of the engine: lammps@localhost (classical, DeePMD) or lifdiff-md@localhost (MACE)",
    "potentials": "several potentials by name (a benchmark): each as `potential`, or {kind: mace|deepmd, train: {...}} "
    "for a model trained in the study on the `training` data",
    "training": "how trained potentials get their data: {protocol, sampler: NAME, labeller: NAME, data: {overrides}}",
    "codes": "code labels by role: lammps, runner, label, mace_train, dp (defaults: <program>@localhost)",
    "structure": "overrides of the supercell: repeat, lattice_constant, interstitial_site",
    "temperatures_K": "list of temperatures (K), at least three",
    "seeds": "list of base seeds, one per replica",
    "md": "overrides of the MD settings (timestep_fs, production_ps, ...)",
    "analysis": "overrides of the analysis settings (n_blocks, fit_window, modes, primary_mode)",
    "max_wallclock_seconds": "scheduler walltime of each MD calculation",
}
_POTENTIAL_KEYS = {"kind", "model", "label", "path", "foundation", "train"}
_TRAIN_KEYS = {"finetune_from", "flags", "settings", "split", "seed"}
_TRAINING_KEYS = {"protocol", "sampler", "labeller", "data"}
DEFAULT_CODES = {
    "lammps": "lammps@localhost",
    "runner": "lifdiff-md@localhost",
    "label": "lifdiff-label@localhost",
    "mace_train": "mace_run_train@localhost",
    "dp": "dp@localhost",
}
_STRUCTURE_KEYS = {"repeat", "lattice_constant", "interstitial_site"}


class StudyError(ValueError):
    """A study file that cannot define a study; the message says where and why."""


@dataclass
class Study:
    """A validated study: the protocol inputs with the study's overrides merged in."""

    name: str
    path: Path
    protocol: str
    potential: dict
    code: str
    inputs: dict = field(default_factory=dict)
    description: str = ""
    #: A benchmark: potentials by name (``potential`` is then empty) and how trained ones get their data.
    potentials: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    codes: dict = field(default_factory=dict)


def _unknown(keys: set, allowed: set | dict, where: str) -> None:
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def load_study(path: str | Path) -> Study:
    """Read and validate a study YAML; raise :class:`StudyError` with a precise message when it is wrong."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: no such study file")
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exception:
        raise StudyError(f"{path}: not valid YAML: {exception}") from exception
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: a study is a mapping of keys ({', '.join(_TOP_KEYS)}), got {type(raw).__name__}")
    _unknown(set(raw), _TOP_KEYS, str(path))

    protocols = load_protocols("diffusion")
    protocol = raw.get("protocol", protocols["default_protocol"])
    if protocol not in protocols["protocols"]:
        raise StudyError(f"{path}: unknown protocol {protocol!r}; available: {sorted(protocols['protocols'])}")

    if ("potential" in raw) == ("potentials" in raw):
        raise StudyError(f"{path}: give either 'potential' (one potential) or 'potentials' (a benchmark)")
    potentials = {}
    if "potential" in raw:
        potential = _check_potential(raw["potential"], path, "potential")
        if "train" in potential:
            raise StudyError(f"{path}: potential: a trained potential belongs in 'potentials' (a benchmark)")
    else:
        potential = {}
        if not isinstance(raw["potentials"], dict) or not raw["potentials"]:
            raise StudyError(f"{path}: 'potentials' must map names to potentials, e.g. {{reference: {{kind: ...}}}}")
        for name, spec in raw["potentials"].items():
            if not str(name).isidentifier():
                # The name becomes an AiiDA link label (letters, digits and underscores).
                raise StudyError(f"{path}: potential name {name!r} must be letters, digits and '_' (e.g. tosi_fumi)")
            potentials[str(name)] = _check_potential(spec, path, f"potentials.{name}")
    training = _check_training(raw.get("training"), potentials, path)
    codes = dict(DEFAULT_CODES)
    if "codes" in raw:
        if not isinstance(raw["codes"], dict):
            raise StudyError(f"{path}: 'codes' must map roles to code labels")
        _unknown(set(raw["codes"]), DEFAULT_CODES, f"{path}: codes")
        codes.update({k: str(v) for k, v in raw["codes"].items()})

    structure = raw.get("structure", {}) or {}
    if not isinstance(structure, dict):
        raise StudyError(f"{path}: 'structure' must be a mapping")
    _unknown(set(structure), _STRUCTURE_KEYS, f"{path}: structure")

    overrides: dict = {}
    if structure:
        overrides["supercell"] = structure
    for key, target in (
        ("temperatures_K", "temperatures_K"),
        ("seeds", "seeds"),
        ("md", "md_settings"),
        ("analysis", "analysis"),
        ("max_wallclock_seconds", "max_wallclock_seconds"),
    ):
        if key in raw:
            overrides[target] = raw[key]
    inputs = get_protocol_inputs("diffusion", protocol, overrides)
    _check_values(inputs, path)
    if potential:
        code = str(raw.get("code") or codes[_engine_of(potential["kind"], inputs["md_settings"].get("engine"))])
    else:
        if "code" in raw:
            raise StudyError(f"{path}: a benchmark names its codes under 'codes', not 'code'")
        if inputs["md_settings"].get("engine"):
            raise StudyError(f"{path}: md.engine cannot be set for a benchmark (each potential uses its own)")
        code = ""
    return Study(
        name=str(raw.get("name", path.stem)),
        path=path,
        protocol=protocol,
        potential=potential,
        code=code,
        inputs=inputs,
        description=str(raw.get("description", "")),
        potentials=potentials,
        training=training,
        codes=codes,
    )


def _check_potential(potential: Any, path: Path, where: str) -> dict:
    """A validated copy of one potential entry (model paths made absolute)."""
    if not isinstance(potential, dict) or "kind" not in potential:
        raise StudyError(
            f"{path}: {where}: a mapping with a 'kind' is required, e.g. {{kind: classical, model: tosi-fumi-lif}}"
        )
    _unknown(set(potential), _POTENTIAL_KEYS, f"{path}: {where}")
    potential = dict(potential)
    kind = potential["kind"]
    if kind == "classical":
        if "train" in potential:
            raise StudyError(f"{path}: {where}: classical potentials are not trained here")
        if potential.get("model", BUILTIN_CLASSICAL[0]) not in BUILTIN_CLASSICAL:
            raise StudyError(
                f"{path}: {where}: unknown classical model {potential.get('model')!r}; known: {BUILTIN_CLASSICAL}"
            )
    elif kind in ("mace", "deepmd"):
        sources = [key for key in ("path", "foundation", "train") if key in potential]
        if kind == "deepmd" and sources not in (["path"], ["train"]):
            raise StudyError(f"{path}: {where}: a deepmd potential needs 'path' (a frozen model file) or 'train'")
        if kind == "mace" and len(sources) != 1:
            raise StudyError(f"{path}: {where}: a mace potential needs exactly one of 'path', 'foundation' or 'train'")
        if "path" in potential:
            model_path = (path.parent / potential["path"]).resolve()
            if not model_path.is_file():
                raise StudyError(f"{path}: {where}: model file {model_path} does not exist")
            potential["path"] = str(model_path)
        if "train" in potential:
            train = potential["train"] or {}
            if not isinstance(train, dict):
                raise StudyError(f"{path}: {where}: 'train' must be a mapping (may be empty)")
            _unknown(set(train), _TRAIN_KEYS, f"{path}: {where}: train")
            potential["train"] = dict(train)
    else:
        raise StudyError(f"{path}: {where}: unknown potential kind {kind!r}; expected classical, mace or deepmd")
    return potential


def _check_training(training: Any, potentials: dict, path: Path) -> dict:
    """The validated ``training`` section; required when a potential is trained in the study."""
    trained = {name: spec for name, spec in potentials.items() if "train" in spec}
    if not trained:
        if training:
            raise StudyError(f"{path}: 'training' is given but no potential has 'train'")
        return {}
    if not isinstance(training, dict):
        raise StudyError(f"{path}: potentials {sorted(trained)} are trained here: give 'training' (sampler, labeller)")
    _unknown(set(training), _TRAINING_KEYS, f"{path}: training")
    for kind in ("mace", "deepmd"):
        names = [name for name, spec in trained.items() if spec["kind"] == kind]
        if len(names) > 1:
            raise StudyError(f"{path}: one trained {kind} potential per study for now, got {names}")
    for role in ("sampler", "labeller"):
        name = training.get(role)
        if name not in potentials or "train" in potentials[name]:
            given = sorted(n for n, spec in potentials.items() if "train" not in spec)
            raise StudyError(f"{path}: training.{role} must name one of the given (not trained) potentials {given}")
    for name, spec in trained.items():
        source = spec["train"].get("finetune_from")
        if source is not None and (
            source not in potentials or potentials[source]["kind"] != "mace" or "train" in potentials[source]
        ):
            raise StudyError(f"{path}: potentials.{name}.train.finetune_from must name a given mace potential")
        if source is not None and spec["kind"] != "mace":
            raise StudyError(f"{path}: potentials.{name}: only MACE models are fine-tuned from a foundation")
    protocols = load_protocols("training")
    protocol = training.get("protocol", protocols["default_protocol"])
    if protocol not in protocols["protocols"]:
        raise StudyError(
            f"{path}: training: unknown protocol {protocol!r}; available: {sorted(protocols['protocols'])}"
        )
    data = get_protocol_inputs("training", protocol, {"data": training.get("data") or {}})["data"]
    from aiida_lifdiff.sampling import validate_sampling
    from aiida_lifdiff.workflows.diffusion import md_parameters_from_settings

    message = validate_sampling(data["sampling"])
    if message:
        raise StudyError(f"{path}: training.data.sampling: {message}")
    try:
        md_parameters_from_settings(data["md_settings"], [])
    except (ValueError, TypeError) as exception:
        raise StudyError(f"{path}: training.data.md_settings: {exception}") from exception
    return {**training, "protocol": protocol}


def _engine_of(kind: str, requested: str | None) -> str:
    from aiida_lifdiff.workflows.md import ALLOWED_ENGINES, DEFAULT_ENGINE

    engine = requested or DEFAULT_ENGINE[kind]
    if engine not in ALLOWED_ENGINES[kind]:
        raise StudyError(f"a {kind} potential cannot run in {engine!r}; possible: {list(ALLOWED_ENGINES[kind])}")
    return engine


def _check_values(inputs: dict, path: Path) -> None:
    """Value checks shared with the WorkChain validators, so a bad study fails before any node is stored."""
    from aiida_lifdiff.workflows.diffusion import MIN_TEMPERATURES, md_parameters_from_settings
    from aiida_lifdiff.workflows.functions.diffusivity import validate_diffusivity_parameters
    from aiida_lifdiff.workflows.functions.structures import validate_supercell_settings

    temperatures = inputs["temperatures_K"]
    if not isinstance(temperatures, list) or not all(isinstance(t, (int, float)) for t in temperatures):
        raise StudyError(f"{path}: temperatures_K must be a list of numbers, got {temperatures!r}")
    if any(t <= 0 for t in temperatures):
        raise StudyError(f"{path}: temperatures_K must all be > 0 K, got {temperatures}")
    if len(set(temperatures)) < MIN_TEMPERATURES:
        raise StudyError(
            f"{path}: an Arrhenius fit needs at least {MIN_TEMPERATURES} distinct temperatures, got {temperatures}"
        )
    seeds = inputs["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise StudyError(f"{path}: seeds must be a non-empty list of non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{path}: seeds must be distinct, got {seeds}")
    supercell = inputs["supercell"]
    message = validate_supercell_settings(
        supercell.get("repeat"), supercell.get("lattice_constant"), supercell.get("interstitial_site")
    )
    if message:
        raise StudyError(f"{path}: structure: {message}")
    try:
        md_parameters_from_settings(inputs["md_settings"], [])
    except (ValueError, TypeError) as exception:
        raise StudyError(f"{path}: md: {exception}") from exception
    analysis = {k: v for k, v in inputs["analysis"].items() if k != "primary_mode"}
    message = validate_diffusivity_parameters(analysis)
    if message:
        raise StudyError(f"{path}: analysis: {message}")


def load_potential(study: Study, spec: dict | None = None):
    """The (unstored) PotentialData a study names; a clear StudyError when its model cannot be used."""
    from aiida_lifdiff.data.potential import PotentialData

    spec = spec if spec is not None else study.potential
    try:
        if spec["kind"] == "classical":
            node = PotentialData.tosi_fumi_lif()
        elif "foundation" in spec:
            node = PotentialData.from_mace_foundation(spec["foundation"])
        else:
            node = PotentialData.from_model_file(spec["kind"], spec["path"])
    except (ValueError, FileNotFoundError, RuntimeError) as exception:
        raise StudyError(f"{study.path}: potential: {exception}") from exception
    if spec.get("label"):
        node.label = spec["label"]
    if not node.covers(("Li", "F")):
        raise StudyError(f"{study.path}: the potential covers {node.species}; LiF needs Li and F")
    return node


def _load_code(study: Study, label: str):
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    try:
        return orm.load_code(label)
    except (NotExistent, MultipleObjectsError) as exception:
        raise StudyError(
            f"{study.path}: code {label!r} not found in this profile ({exception}); "
            "create it with `aiida-lifdiff setup localhost`"
        ) from exception


def build_builder(study: Study):
    """The builder of a validated study (needs a loaded profile with the codes): a DiffusionWorkChain for one
    potential, a BenchmarkWorkChain for several."""
    if study.potentials:
        return build_benchmark_builder(study)
    from aiida_lifdiff.data.potential import PotentialData
    from aiida_lifdiff.workflows.diffusion import DiffusionWorkChain

    code = _load_code(study, study.code)
    potential = PotentialData.get_or_create(load_potential(study))
    inputs = study.inputs
    overrides = {k: inputs[k] for k in inputs}
    builder = DiffusionWorkChain.get_builder_from_protocol(code, potential, study.protocol, overrides)
    builder.metadata.label = study.name
    builder.metadata.description = study.description
    return builder


def build_benchmark_builder(study: Study):
    """The BenchmarkWorkChain builder of a study with ``potentials`` (and ``training`` for trained ones)."""
    from aiida import orm

    from aiida_lifdiff.data.potential import PotentialData
    from aiida_lifdiff.workflows.benchmark import BenchmarkWorkChain
    from aiida_lifdiff.workflows.md import engine_for

    inputs = study.inputs
    builder = BenchmarkWorkChain.get_builder()
    builder.metadata.label = study.name
    builder.metadata.description = study.description
    builder.supercell.repeat = orm.Int(inputs["supercell"]["repeat"])
    builder.supercell.lattice_constant = orm.Float(inputs["supercell"]["lattice_constant"])
    builder.supercell.interstitial_site = orm.Str(inputs["supercell"]["interstitial_site"])

    given = {}
    for name, spec in study.potentials.items():
        if "train" not in spec:
            node = PotentialData.get_or_create(load_potential(study, spec))
            given[name] = node
    builder.potentials = given
    engines = {engine_for(node) for node in given.values()} | {
        "runner" if spec["kind"] == "mace" else "lammps" for spec in study.potentials.values() if "train" in spec
    }

    diffusion = builder.diffusion
    diffusion.temperatures = orm.List([float(t) for t in inputs["temperatures_K"]])
    diffusion.seeds = orm.List([int(s) for s in inputs["seeds"]])
    diffusion.md_settings = orm.Dict({k: v for k, v in inputs["md_settings"].items() if v is not None})
    diffusion.analysis = orm.Dict(inputs["analysis"])
    walltime = int(inputs["max_wallclock_seconds"])
    if "lammps" in engines:
        diffusion.md.lammps.code = _load_code(study, study.codes["lammps"])
        diffusion.md.lammps.metadata.options.max_wallclock_seconds = walltime
    if "runner" in engines:
        diffusion.md.lifdiff_md.code = _load_code(study, study.codes["runner"])
        diffusion.md.lifdiff_md.metadata.options.max_wallclock_seconds = walltime

    trained = {spec["kind"]: (name, spec) for name, spec in study.potentials.items() if "train" in spec}
    if not trained:
        return builder
    training = study.training
    protocol = training["protocol"]
    values = get_protocol_inputs("training", protocol, {"data": training.get("data") or {}})
    data = builder.training_data
    data.sampler = given[training["sampler"]]
    data.labeller = given[training["labeller"]]
    data.temperatures = orm.List([float(t) for t in values["data"]["temperatures_K"]])
    data.md_settings = orm.Dict(values["data"]["md_settings"])
    data.sampling = orm.Dict(values["data"]["sampling"])
    data.seed = orm.Int(values["data"]["seed"])
    sampler_engine = engine_for(data.sampler)
    namespace = "lammps" if sampler_engine == "lammps" else "lifdiff_md"
    data.md[namespace].code = _load_code(study, study.codes["lammps" if sampler_engine == "lammps" else "runner"])
    data.md[namespace].metadata.options.max_wallclock_seconds = walltime
    label_code = _load_code(study, study.codes["label"])
    data.label.code = label_code
    builder.trained_names = orm.Dict({kind: name for kind, (name, _) in trained.items()})

    if "mace" in trained:
        from aiida_lifdiff.workflows.finetune import FineTuneWorkChain

        name, spec = trained["mace"]
        train = spec["train"]
        foundation = given[train["finetune_from"]] if train.get("finetune_from") else None
        overrides = {"mace": {k: train[k] for k in ("flags", "split", "seed") if k in train}}
        sub_builder = FineTuneWorkChain.get_builder_from_protocol(
            _load_code(study, study.codes["mace_train"]),
            dataset=None,
            protocol=protocol,
            overrides=overrides,
            foundation=foundation,
            evaluation_code=label_code,
        )
        assign_inputs(builder.train_mace, sub_builder._inputs(prune=True))
    if "deepmd" in trained:
        from aiida_lifdiff.workflows.finetune import DeepmdTrainWorkChain

        name, spec = trained["deepmd"]
        train = spec["train"]
        overrides = {"deepmd": {k: train[k] for k in ("settings", "split", "seed") if k in train}}
        sub_builder = DeepmdTrainWorkChain.get_builder_from_protocol(
            _load_code(study, study.codes["dp"]),
            dataset=None,
            protocol=protocol,
            overrides=overrides,
            evaluation_code=label_code,
        )
        assign_inputs(builder.train_deepmd, sub_builder._inputs(prune=True))
    return builder


def assign_inputs(namespace, values: dict) -> None:
    """Set ``values`` leaf by leaf on a builder namespace.

    Assigning a whole nested dict validates it as one namespace before the CalcJob defaults (resources) are
    filled in; leaf by leaf, each port is checked on its own, as when a user types the builder by hand.
    """
    from plumpy.ports import PortNamespace

    for key, value in values.items():
        port = namespace._port_namespace.get(key)
        if isinstance(port, PortNamespace) and isinstance(value, dict):
            assign_inputs(namespace[key], value)
        else:
            namespace[key] = value
