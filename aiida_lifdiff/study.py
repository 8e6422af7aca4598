"""Study specifications (``workchains/*.yaml``): validated before anything touches the database."""

from __future__ import annotations

import contextvars
import json
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
    "{kind: mace, foundation: medium-mpa-0} | {kind: deepmd, path: FILE} | {kind: universal, model: chgnet} "
    "(universal models whose weights ship in their wheel: chgnet, sevennet-0, ...; docs/universal.md)",
    "code": "label of the code of the engine: lammps@localhost (classical, DeePMD) or lifdiff-md@localhost (MACE)",
    "potentials": "several potentials by name (a benchmark): each as `potential`, or {kind: mace|deepmd, train: {...}} "
    "for a model trained in the study",
    "reference": "name of the benchmark's reference potential (every Ea is compared with its Ea)",
    "datasets": "labelled datasets by name, imported from files: {NAME: {path, format, source}}",
    "training": "the training protocol and how the 'generated' dataset is made: {protocol, sampler: NAME, "
    "labeller: NAME, iterations, finetune_from, initial_data, data: {overrides}}",
    "evaluation": "the frames every potential is evaluated on: {data: NAME, frames: N, seed} (held out) or "
    "{path, format, source} (a file)",
    "computers": "computer of each step: a protocol of protocols/computers.yaml (laptop | lab) or {md, training, "
    "labelling: COMPUTER}; the codes are <program>@<computer> (default: laptop, everything on localhost)",
    "codes": "code labels by role: lammps, runner, label, mace_train, dp (default: <program>@<computer of its step>); "
    "a potential of another environment (SevenNet: sevenn) uses <label>-<environment>@<computer>, e.g. "
    "lifdiff-md-sevenn@localhost",
    "structure": "overrides of the supercell: repeat, lattice_constant, interstitial_site, relax_lattice (default "
    "true: every potential runs at its own relaxed lattice constant, lattice_constant is the starting guess)",
    "barriers": "static migration barriers of every potential beside its Ea: true, or the lifdiff-barrier settings "
    "{repeat, paths, neb: {...}} over the defaults",
    "temperatures_K": "list of temperatures (K), at least three",
    "seeds": "list of base seeds, one per replica",
    "md": "overrides of the MD settings (timestep_fs, production_ps, ...)",
    "analysis": "overrides of the analysis settings (n_blocks, fit_window, modes, primary_mode)",
    "max_wallclock_seconds": "scheduler walltime of each MD calculation",
}
_POTENTIAL_KEYS = {"kind", "model", "label", "path", "foundation", "train", "md"}
_TRAINING_KEYS = {"protocol", "sampler", "labeller", "iterations", "finetune_from", "initial_data", "data"}
DATASET_FORMATS = ("extxyz", "deepmd/npy", "deepmd/raw")
#: The dataset the `training` section generates, as trainings and the evaluation name it.
GENERATED = "generated"
#: The program behind each code role, and the step (of protocols/computers.yaml) whose computer runs it.
CODE_ROLES = {
    "lammps": ("lammps", "md"),
    "runner": ("lifdiff-md", "md"),
    "label": ("lifdiff-label", "labelling"),
    "mace_train": ("mace_run_train", "training"),
    "dp": ("dp", "training"),
    "barrier": ("lifdiff-barrier", "labelling"),
}
COMPUTER_STEPS = ("md", "training", "labelling")


def default_codes(computers: dict[str, str]) -> dict[str, str]:
    """Code labels by role for computers by step: <program>@<computer of the role's step>."""
    return {role: f"{program}@{computers[step]}" for role, (program, step) in CODE_ROLES.items()}


DEFAULT_CODES = default_codes({step: "localhost" for step in COMPUTER_STEPS})
_STRUCTURE_KEYS = {"repeat", "lattice_constant", "interstitial_site", "relax_lattice"}


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
    reference: str | None = None
    #: Imported datasets by name: {path (absolute), format, source, label}.
    datasets: dict = field(default_factory=dict)
    #: {data, frames, seed} (held out of a dataset) or {path, format, source, label} (a file); empty: none.
    evaluation: dict = field(default_factory=dict)
    #: Static barriers: None (not asked for), or the lifdiff-barrier settings over the defaults ({} = defaults).
    barriers: dict | None = None

    @property
    def generates_data(self) -> bool:
        """Whether the study makes the `generated` dataset (sampling MD + labelling)."""
        return bool(self.training.get("sampler"))


def study_schema() -> dict:
    """The JSON schema of study files (``aiida_lifdiff/schemas/study.schema.json``; editors can use it too)."""
    from importlib import resources

    return json.loads(resources.files("aiida_lifdiff.schemas").joinpath("study.schema.json").read_text())


def _describe_schema_error(error) -> str:
    """One schema violation in the words of a study file: where, what is wrong, what is allowed."""
    location = list(error.absolute_path)
    where = ".".join(str(part) for part in location) or "the study"
    kind, value, instance = error.validator, error.validator_value, error.instance
    if location and location[0] == "temperatures_K":
        if kind == "minItems":
            return f"temperatures_K: an Arrhenius fit needs at least {value} temperatures, got {instance}"
        if kind in ("exclusiveMinimum", "minimum"):
            return f"temperatures_K: every temperature must be > 0 K, got {instance}"
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(instance) - set(allowed))
        return f"{where}: unknown key(s) {unknown}; allowed: {allowed}"
    if kind == "required":
        missing = sorted(set(value) - set(instance))
        return f"{where}: missing key(s) {missing}"
    if kind == "enum":
        return f"{where} must be one of {value}, got {instance!r}"
    if kind == "type":
        return f"{where} must be of type {value}, got {instance!r}"
    if kind in ("minimum", "exclusiveMinimum"):
        return f"{where} must be {'>=' if kind == 'minimum' else '>'} {value}, got {instance!r}"
    if kind == "minItems":
        return f"{where} needs at least {value} item(s), got {instance!r}"
    if kind == "minProperties":
        return f"{where} needs at least {value} entry, e.g. {{reference: {{kind: classical}}}}"
    if kind == "pattern":
        return f"{where}: name {instance!r} must be letters, digits and '_' (it becomes an AiiDA link label)"
    if kind == "oneOf" and where == "evaluation":
        return "evaluation: give either {data: DATASET, frames: N, seed: S} or {path: FILE, format, source}"
    return f"{where}: {error.message}"


def _check_schema(raw: dict, path: Path) -> None:
    """Structure and types, against the study schema; the first (most relevant) violation is reported."""
    import jsonschema

    errors = list(jsonschema.Draft7Validator(study_schema()).iter_errors(raw))
    if errors:
        raise StudyError(f"{path}: {_describe_schema_error(jsonschema.exceptions.best_match(errors))}")


#: Where a dry run collects missing files (None: a missing file is an error).
_MISSING: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("missing_files", default=None)


def _missing_file(message: str) -> None:
    collected = _MISSING.get()
    if collected is None:
        raise StudyError(message)
    collected.append(message)


def _unknown(keys: set, allowed: set | dict, where: str) -> None:
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def load_study(path: str | Path, missing_files: list[str] | None = None) -> Study:
    """Read and validate a study YAML; raise :class:`StudyError` with a precise message when it is wrong.

    Model and dataset files must exist, unless ``missing_files`` is given (a dry run): then each missing file
    is described there and the study is still returned, so that its plan can be shown.
    """
    path = Path(path)
    _MISSING.set(missing_files)
    if not path.is_file():
        raise StudyError(f"{path}: no such study file")
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exception:
        raise StudyError(f"{path}: not valid YAML: {exception}") from exception
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: a study is a mapping of keys ({', '.join(_TOP_KEYS)}), got {type(raw).__name__}")
    _check_schema(raw, path)

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
        if potential.get("md") is False:
            raise StudyError(f"{path}: potential: md: false leaves a diffusion study nothing to do; see `barriers`")
        for key in ("reference", "datasets", "training", "evaluation"):
            if key in raw:
                raise StudyError(f"{path}: '{key}' belongs to a benchmark ('potentials'), not a one-potential study")
    else:
        potential = {}
        for name, spec in raw["potentials"].items():
            potentials[str(name)] = _check_potential(spec, path, f"potentials.{name}")
    datasets = {
        str(name): _check_dataset_file(spec, path, f"datasets.{name}")
        for name, spec in (raw.get("datasets") or {}).items()
    }
    reference = raw.get("reference")
    if potentials:
        if reference is None:
            raise StudyError(
                f"{path}: a benchmark needs 'reference': the name of the potential every Ea is compared with "
                f"(one of {sorted(potentials)})"
            )
        if reference not in potentials:
            raise StudyError(f"{path}: reference {reference!r} is not one of the potentials {sorted(potentials)}")
        if potentials[reference].get("md") is False:
            raise StudyError(
                f"{path}: the reference {reference!r} must run MD (md: false): every Ea is compared with its Ea"
            )
    training = _check_training(raw.get("training"), potentials, datasets, path)
    evaluation = _check_evaluation(raw.get("evaluation"), datasets, training, path)
    _check_trainings(potentials, datasets, training, evaluation, path)
    codes = default_codes(_check_computers(raw.get("computers"), path))
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
        role = _engine_of(potential["kind"], inputs["md_settings"].get("engine"))
        code = str(raw.get("code") or environment_code(codes[role], spec_environment(potential)))
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
        reference=reference,
        datasets=datasets,
        evaluation=evaluation,
        barriers=_check_barriers(raw.get("barriers"), bool(potentials), path),
    )


def _check_barriers(barriers: Any, benchmark: bool, path: Path) -> dict | None:
    """``barriers: true`` or a mapping of lifdiff-barrier settings -> those settings ({} = defaults); None if absent."""
    if barriers is None or barriers is False:
        return None
    if not benchmark:
        raise StudyError(f"{path}: 'barriers' belongs to a benchmark ('potentials'); use `aiida-lifdiff barriers`")
    settings = {} if barriers is True else barriers
    if not isinstance(settings, dict):
        raise StudyError(f"{path}: barriers must be true or a mapping of barrier settings, got {barriers!r}")
    from aiida_lifdiff.calculations.barrier import validate_barrier_parameters

    message = validate_barrier_parameters(settings)
    if message:
        raise StudyError(f"{path}: barriers: {message}")
    return settings


def _check_computers(computers: Any, path: Path) -> dict[str, str]:
    """Computer label by step: a protocol of protocols/computers.yaml by name, or steps over the default one."""
    from aiida_lifdiff.protocols import get_protocol_inputs, load_protocols

    if computers is None or isinstance(computers, str):
        try:
            return get_protocol_inputs("computers", computers)
        except ValueError as exception:
            raise StudyError(f"{path}: computers: {exception}") from exception
    if not isinstance(computers, dict):
        raise StudyError(
            f"{path}: 'computers' is a protocol name ({sorted(load_protocols('computers')['protocols'])})"
            " or a mapping of steps to computer labels"
        )
    _unknown(set(computers), {step: "" for step in COMPUTER_STEPS}, f"{path}: computers")
    return get_protocol_inputs("computers", None, {step: str(label) for step, label in computers.items()})


def _check_potential(potential: Any, path: Path, where: str) -> dict:
    """A validated copy of one potential entry (model paths made absolute)."""
    if not isinstance(potential, dict) or "kind" not in potential:
        raise StudyError(
            f"{path}: {where}: a mapping with a 'kind' is required, e.g. {{kind: classical, model: tosi-fumi-lif}}"
        )
    _unknown(set(potential), _POTENTIAL_KEYS, f"{path}: {where}")
    potential = dict(potential)
    if not isinstance(potential.get("md", True), bool):
        raise StudyError(f"{path}: {where}: md must be true or false, got {potential['md']!r}")
    kind = potential["kind"]
    if kind == "classical":
        if "train" in potential:
            raise StudyError(f"{path}: {where}: classical potentials are not trained here")
        if potential.get("model", BUILTIN_CLASSICAL[0]) not in BUILTIN_CLASSICAL:
            raise StudyError(
                f"{path}: {where}: unknown classical model {potential.get('model')!r}; known: {BUILTIN_CLASSICAL}"
            )
    elif kind == "universal":
        from aiida_lifdiff.potentials.universal import UniversalModelUnavailable, get_universal_model

        extra = sorted({"path", "foundation", "train"} & set(potential))
        if extra or "model" not in potential:
            raise StudyError(
                f"{path}: {where}: a universal potential is named by 'model' alone (e.g. {{kind: universal, model: "
                f"chgnet}}): its weights come from the installed package" + (f", not {extra}" if extra else "")
            )
        try:
            potential["model"] = get_universal_model(potential["model"]).name
        except UniversalModelUnavailable as exception:
            raise StudyError(f"{path}: {where}: {exception}") from exception
    elif kind in ("mace", "deepmd"):
        sources = [key for key in ("path", "foundation", "train") if key in potential]
        if kind == "deepmd" and sources not in (["path"], ["train"]):
            raise StudyError(f"{path}: {where}: a deepmd potential needs 'path' (a frozen model file) or 'train'")
        if kind == "mace" and len(sources) != 1:
            raise StudyError(f"{path}: {where}: a mace potential needs exactly one of 'path', 'foundation' or 'train'")
        if "path" in potential:
            model_path = (path.parent / potential["path"]).resolve()
            if not model_path.is_file():
                _missing_file(f"{path}: {where}: model file {model_path} does not exist")
            potential["path"] = str(model_path)
        if "train" in potential:
            potential["train"] = dict(potential["train"] or {})
    else:
        raise StudyError(
            f"{path}: {where}: unknown potential kind {kind!r}; expected classical, mace, deepmd or universal"
        )
    return potential


def _check_dataset_file(spec: dict, path: Path, where: str) -> dict:
    """A validated copy of a dataset file entry (path made absolute; the file must exist)."""
    entry = dict(spec)
    entry.setdefault("format", "extxyz")
    location = (path.parent / entry["path"]).resolve()
    if not location.exists():
        _missing_file(
            f"{path}: {where}: {location} does not exist (an extxyz file, or a folder of DeePMD systems for "
            "format deepmd/npy or deepmd/raw)"
        )
    entry["path"] = str(location)
    return entry


def _check_training(training: Any, potentials: dict, datasets: dict, path: Path) -> dict:
    """The validated ``training`` section (protocol; sampler and labeller when it generates data)."""
    training = dict(training or {})
    protocols = load_protocols("training")
    protocol = training.get("protocol", protocols["default_protocol"])
    if protocol not in protocols["protocols"]:
        raise StudyError(
            f"{path}: training: unknown protocol {protocol!r}; available: {sorted(protocols['protocols'])}"
        )
    training["protocol"] = protocol
    given = sorted(name for name, spec in potentials.items() if "train" not in spec)
    generation_keys = sorted(
        {"sampler", "labeller", "iterations", "finetune_from", "initial_data", "data"} & set(training)
    )
    if not generation_keys:
        return training
    for role in ("sampler", "labeller"):
        if training.get(role) not in given:
            raise StudyError(
                f"{path}: training generates data ({generation_keys}): training.{role} must name one of the given "
                f"(not trained) potentials {given}"
            )
    iterations = training.get("iterations", 1)
    if iterations > 1:
        source = training.get("finetune_from")
        if source is None and potentials[training["sampler"]]["kind"] == "mace":
            source = training["sampler"]
        if source not in given or potentials[source]["kind"] != "mace":
            raise StudyError(
                f"{path}: training.iterations > 1 fine-tunes a MACE model after each round: training.finetune_from "
                "must name a given MACE potential (default: the sampler, when it is MACE)"
            )
        training["finetune_from"] = source
    elif "finetune_from" in training:
        raise StudyError(f"{path}: training.finetune_from is for iterative sampling (iterations > 1)")
    if "initial_data" in training and training["initial_data"] not in datasets:
        raise StudyError(f"{path}: training.initial_data must name one of the datasets {sorted(datasets)}")
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
    return training


def _check_evaluation(evaluation: Any, datasets: dict, training: dict, path: Path) -> dict:
    """The validated ``evaluation`` section: frames held out of a named dataset, or a dataset file."""
    if not evaluation:
        return {}
    if "path" in evaluation:
        return _check_dataset_file(evaluation, path, "evaluation")
    evaluation = {"seed": 0, **evaluation}
    source = evaluation["data"]
    if source == GENERATED:
        if not training.get("sampler"):
            raise StudyError(f"{path}: evaluation.data is {GENERATED!r} but 'training' generates no data (sampler)")
    elif source not in datasets:
        raise StudyError(f"{path}: evaluation.data must name one of the datasets {sorted(datasets)} or {GENERATED!r}")
    return evaluation


def _check_trainings(potentials: dict, datasets: dict, training: dict, evaluation: dict, path: Path) -> None:
    """Each trained potential's `train` section, checked as the BenchmarkWorkChain will (before any node)."""
    from aiida_lifdiff.workflows.benchmark import training_spec_problem

    generated = bool(training.get("sampler"))
    mace = {name for name, spec in potentials.items() if spec["kind"] == "mace" and "train" not in spec}
    for name, spec in potentials.items():
        if "train" not in spec:
            continue
        train = spec["train"]
        if "data" not in train:
            if generated:
                train["data"] = GENERATED
            elif len(datasets) == 1:
                train["data"] = next(iter(datasets))
            else:
                raise StudyError(
                    f"{path}: potentials.{name}.train.data: name the dataset to train on (one of {sorted(datasets)}"
                    + (f" or {GENERATED!r}" if generated else "")
                    + "), or give 'training' a sampler and labeller to generate one"
                )
        message = training_spec_problem(
            name,
            {"kind": spec["kind"], **train},
            protocol=training["protocol"],
            # Frame counts are known once the files are read (build time); the WorkChain checks them again.
            datasets={**{n: None for n in datasets}, **({GENERATED: None} if generated else {})},
            mace_potentials=mace,
            generated=generated,
        )
        if message:
            raise StudyError(f"{path}: {message.replace(f'trainings.{name}', f'potentials.{name}.train', 1)}")
    uses_generated = any(spec.get("train", {}).get("data") == GENERATED for spec in potentials.values())
    if generated and not uses_generated and evaluation.get("data") != GENERATED:
        raise StudyError(f"{path}: 'training' generates data (sampler) but no potential trains on {GENERATED!r}")


def spec_environment(spec: dict) -> str:
    """The environment whose codes run a potential entry: ``main``, or a universal model's (``sevenn``)."""
    if spec.get("kind") == "universal":
        from aiida_lifdiff.potentials.universal import get_universal_model

        return get_universal_model(spec["model"]).environment
    return "main"


def environment_code(label: str, environment: str) -> str:
    """``lifdiff-md@localhost`` -> ``lifdiff-md-sevenn@localhost`` for another environment (unchanged for main)."""
    if environment == "main":
        return label
    code, at, computer = label.partition("@")
    return f"{code}-{environment}{at}{computer}"


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


def load_potential(study: Study, spec: dict | None = None, name: str = "potential"):
    """The (unstored) PotentialData a study names; a clear StudyError when its model cannot be used."""
    from aiida_lifdiff.data.potential import PotentialData

    spec = spec if spec is not None else study.potential
    where = name if name == "potential" else f"potentials.{name}"
    try:
        if spec["kind"] == "classical":
            node = PotentialData.tosi_fumi_lif()
        elif spec["kind"] == "universal":
            node = PotentialData.from_universal(spec["model"])
        elif "foundation" in spec:
            node = PotentialData.from_mace_foundation(spec["foundation"])
        else:
            node = PotentialData.from_model_file(spec["kind"], spec["path"])
    except (ValueError, FileNotFoundError, RuntimeError) as exception:
        raise StudyError(f"{study.path}: {where}: {exception}") from exception
    if spec.get("label"):
        node.label = spec["label"]
    if not node.covers(("Li", "F")):
        raise StudyError(f"{study.path}: {where}: the potential covers {node.species}; LiF needs Li and F")
    return node


def load_dataset(study: Study, entry: dict, where: str):
    """The (unstored) DatasetData of a dataset file entry; a StudyError when the file cannot be read."""
    from aiida_lifdiff.data.dataset import DatasetData
    from aiida_lifdiff.datasets import DatasetError

    try:
        if entry["format"] == "extxyz":
            node = DatasetData.from_extxyz(entry["path"], entry.get("source", ""))
        else:
            node = DatasetData.from_deepmd(entry["path"], entry["format"], entry.get("source", ""))
    except (DatasetError, FileNotFoundError, ValueError) as exception:
        raise StudyError(f"{study.path}: {where}: {exception}") from exception
    node.label = entry.get("label") or Path(entry["path"]).name
    if not node.labelled:
        raise StudyError(f"{study.path}: {where}: the frames carry no energy and forces (labels {node.labels})")
    return node


def _stored_dataset(node):
    """The stored dataset with the same file (sha256), else ``node`` stored: importing twice adds nothing."""
    from aiida import orm

    from aiida_lifdiff.data.dataset import DatasetData

    existing = (
        orm.QueryBuilder().append(DatasetData, filters={"attributes.sha256": node.sha256}, project="*").first(flat=True)
    )
    return existing if existing is not None else node.store()


def _load_code(study: Study, label: str):
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    try:
        return orm.load_code(label)
    except (NotExistent, MultipleObjectsError) as exception:
        raise StudyError(
            f"{study.path}: code {label!r} not found in this profile ({exception}); create it with {_setup_hint(label)}"
        ) from exception


def _setup_hint(code_label: str) -> str:
    """The setup command that makes ``code_label`` (``program@computer``): slurm for a SLURM computer."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    _, _, computer_label = code_label.partition("@")
    if not computer_label or computer_label == "localhost":
        return "`aiida-lifdiff setup localhost`"
    try:
        computer = orm.load_computer(computer_label)
    except NotExistent:
        return f"`aiida-lifdiff setup slurm --label {computer_label} ...` (no computer {computer_label!r} yet)"
    if computer.scheduler_type == "core.slurm":
        return f"`aiida-lifdiff setup slurm --label {computer_label} ...` (the same options as for its other codes)"
    return f"`aiida-lifdiff setup localhost` or `verdi code create` on computer {computer_label!r}"


class _Resolver:
    """Codes, potentials and datasets of a study: stored (submission) or unstored with problems listed (dry run).

    In a dry run nothing is written to the database, and what cannot be resolved (a code not set up, a
    foundation file not placed, a dataset folder missing) is collected in ``problems`` instead of raised, so
    the plan can still be printed with everything that must be fixed before submitting.
    """

    def __init__(self, study: Study, store: bool):
        self.study = study
        self.store = store
        self.problems: list[str] = []

    def _attempt(self, load):
        try:
            return load()
        except StudyError as exception:
            if self.store:
                raise
            self.problems.append(str(exception).replace(f"{self.study.path}: ", "", 1))
            return None

    def code(self, role: str, environment: str = "main"):
        return self._attempt(lambda: _load_code(self.study, environment_code(self.study.codes[role], environment)))

    def potential(self, name: str, spec: dict):
        from aiida_lifdiff.data.potential import PotentialData

        if "path" in spec and not self.store and not Path(spec["path"]).is_file():
            return None  # already reported by load_study as a missing file
        node = self._attempt(lambda: load_potential(self.study, spec, name))
        return PotentialData.get_or_create(node) if node is not None and self.store else node

    def dataset(self, entry: dict, where: str):
        if not self.store and not Path(entry["path"]).exists():
            return None  # already reported by load_study as a missing file
        node = self._attempt(lambda: load_dataset(self.study, entry, where))
        return _stored_dataset(node) if node is not None and self.store else node


def build_builder(study: Study, store: bool = True, problems: list[str] | None = None):
    """The builder of a validated study (needs a loaded profile with the codes): a DiffusionWorkChain for one
    potential, a BenchmarkWorkChain for several.

    ``store=False`` (a dry run) stores nothing; whatever cannot be resolved is appended to ``problems``
    (which must then be given) instead of raising, and the builder lacks those inputs.
    """
    resolver = _Resolver(study, store)
    try:
        if study.potentials:
            return build_benchmark_builder(study, resolver)
        from aiida_lifdiff.workflows.diffusion import DiffusionWorkChain

        code = resolver._attempt(lambda: _load_code(study, study.code))
        potential = resolver.potential("potential", study.potential)
        if code is None or potential is None:
            builder = DiffusionWorkChain.get_builder()
        else:
            overrides = {k: study.inputs[k] for k in study.inputs}
            relax = bool(study.inputs["supercell"].get("relax_lattice"))
            lattice_code = resolver.code("barrier") if relax else None
            if relax and lattice_code is None:
                builder = DiffusionWorkChain.get_builder()
            else:
                builder = DiffusionWorkChain.get_builder_from_protocol(
                    code, potential, study.protocol, overrides, lattice_code=lattice_code
                )
        builder.metadata.label = study.name
        builder.metadata.description = study.description
        return builder
    finally:
        if problems is not None:
            problems.extend(resolver.problems)


def build_benchmark_builder(study: Study, resolver: _Resolver | None = None):
    """The BenchmarkWorkChain builder of a study with ``potentials`` (trained ones built inside the study)."""
    from aiida import orm

    from aiida_lifdiff.workflows.benchmark import BenchmarkWorkChain
    from aiida_lifdiff.workflows.md import engine_for

    resolver = resolver or _Resolver(study, store=True)
    inputs = study.inputs
    builder = BenchmarkWorkChain.get_builder()
    builder.metadata.label = study.name
    builder.metadata.description = study.description
    builder.supercell.repeat = orm.Int(inputs["supercell"]["repeat"])
    builder.supercell.lattice_constant = orm.Float(inputs["supercell"]["lattice_constant"])
    builder.supercell.interstitial_site = orm.Str(inputs["supercell"]["interstitial_site"])
    relax = bool(inputs["supercell"].get("relax_lattice", False))
    builder.supercell.relax_lattice = orm.Bool(relax)
    if study.barriers is not None:
        builder.barriers = orm.Bool(True)
        if study.barriers:
            builder.barrier_parameters = orm.Dict(study.barriers)
    if relax or study.barriers is not None:
        code = resolver.code("barrier")
        if code is not None:
            builder.codes.barrier = code
    builder.reference = orm.Str(study.reference)
    static_only = sorted(name for name, spec in study.potentials.items() if spec.get("md") is False)
    if static_only:
        builder.static_only = orm.List(static_only)

    given = {}
    for name, spec in study.potentials.items():
        if "train" not in spec:
            node = resolver.potential(name, spec)
            if node is not None:
                given[name] = node
    builder.potentials = given
    # Potentials of another environment (SevenNet) run with that environment's codes, not the main ones.
    foreign = {
        name: spec_environment(spec)
        for name, spec in study.potentials.items()
        if "train" not in spec and spec_environment(spec) != "main"
    }
    for environment in set(foreign.values()):
        wanted = {
            "runner": True,
            "label": bool(study.evaluation),
            "barrier": relax or study.barriers is not None,
        }
        for role in (role for role, needed in wanted.items() if needed):
            code = resolver.code(role, environment)
            if code is not None:
                builder.environment_codes[f"{environment}_{role}"] = code
    given_main = {name: node for name, node in given.items() if name not in foreign}
    engines = {engine_for(node) for node in given_main.values()} | {
        "runner" if spec["kind"] == "mace" else "lammps" for spec in study.potentials.values() if "train" in spec
    }
    # A given potential that could not be loaded (dry run) still needs its engine's code.
    engines |= {
        "runner" if spec["kind"] == "mace" else "lammps"
        for name, spec in study.potentials.items()
        if "train" not in spec and name not in given and name not in foreign
    }
    datasets = {}
    for name, entry in study.datasets.items():
        node = resolver.dataset(entry, f"datasets.{name}")
        if node is not None:
            datasets[name] = node
    builder.datasets = datasets

    diffusion = builder.diffusion
    diffusion.temperatures = orm.List([float(t) for t in inputs["temperatures_K"]])
    diffusion.seeds = orm.List([int(s) for s in inputs["seeds"]])
    diffusion.md_settings = orm.Dict({k: v for k, v in inputs["md_settings"].items() if v is not None})
    diffusion.analysis = orm.Dict(inputs["analysis"])
    walltime = int(inputs["max_wallclock_seconds"])
    for engine, namespace, role in (("lammps", "lammps", "lammps"), ("runner", "lifdiff_md", "runner")):
        if engine in engines:
            code = resolver.code(role)
            if code is not None:
                diffusion.md[namespace].code = code
                diffusion.md[namespace].metadata.options.max_wallclock_seconds = walltime

    training = study.training
    protocol = training.get("protocol")
    trained = {name: spec for name, spec in study.potentials.items() if "train" in spec}
    label_code = resolver.code("label") if trained or study.evaluation else None
    if protocol:
        builder.training_protocol = orm.Str(protocol)
    if trained:
        builder.trainings = orm.Dict({name: {"kind": spec["kind"], **spec["train"]} for name, spec in trained.items()})
        for kind, role in (("mace", "mace_train"), ("deepmd", "dp")):
            if any(spec["kind"] == kind for spec in trained.values()):
                code = resolver.code(role)
                if code is not None:
                    builder.codes[role] = code
    if label_code is not None:
        builder.codes.label = label_code

    if study.evaluation:
        if "path" in study.evaluation:
            node = resolver.dataset(study.evaluation, "evaluation")
            if node is not None:
                builder.evaluation.dataset = node
        else:
            builder.evaluation.source = orm.Str(study.evaluation["data"])
            builder.evaluation.frames = orm.Int(study.evaluation["frames"])
            builder.evaluation.seed = orm.Int(study.evaluation.get("seed", 0))

    if study.generates_data:
        _build_training_data(study, builder, given, datasets, resolver, label_code, walltime)
    return builder


def _build_training_data(study: Study, builder, given: dict, datasets: dict, resolver, label_code, walltime: int):
    """The `training_data` namespace: sampling MD with the sampler, labels by the labeller, optionally iterative."""
    from aiida import orm

    from aiida_lifdiff.workflows.md import engine_for

    training = study.training
    protocol = training["protocol"]
    values = get_protocol_inputs("training", protocol, {"data": training.get("data") or {}})
    data = builder.training_data
    sampler, labeller = given.get(training["sampler"]), given.get(training["labeller"])
    if sampler is not None:
        data.sampler = sampler
    if labeller is not None:
        data.labeller = labeller
    data.temperatures = orm.List([float(t) for t in values["data"]["temperatures_K"]])
    data.md_settings = orm.Dict(values["data"]["md_settings"])
    data.sampling = orm.Dict(values["data"]["sampling"])
    data.seed = orm.Int(values["data"]["seed"])
    iterations = int(training.get("iterations", 1))
    data.iterations = orm.Int(iterations)
    if training.get("initial_data") in datasets:
        data.initial_dataset = datasets[training["initial_data"]]
    sampler_spec = study.potentials[training["sampler"]]
    sampler_kind = sampler_spec["kind"]
    sampler_engine = (
        engine_for(sampler)
        if sampler is not None
        else ("lammps" if sampler_kind in ("classical", "deepmd") else "runner")
    )
    engines = {sampler_engine} | ({"runner"} if iterations > 1 else set())
    for engine in engines:
        namespace, role = ("lammps", "lammps") if engine == "lammps" else ("lifdiff_md", "runner")
        # The sampler's own environment (SevenNet: lifdiff-md-sevenn); a fine-tuned MACE sampler of later rounds
        # needs the main runner, which then cannot be the same code.
        environment = spec_environment(sampler_spec) if iterations == 1 else "main"
        code = resolver.code(role, environment)
        if code is not None:
            data.md[namespace].code = code
            data.md[namespace].metadata.options.max_wallclock_seconds = walltime
    labeller_environment = spec_environment(study.potentials[training["labeller"]])
    if labeller_environment != "main":
        label_code = resolver.code("label", labeller_environment)
    if label_code is not None:
        data.label.code = label_code
    if iterations > 1:
        from aiida_lifdiff.workflows.finetune import FineTuneWorkChain

        foundation = given.get(training["finetune_from"])
        code = resolver.code("mace_train")
        if code is not None and foundation is not None:
            sub_builder = FineTuneWorkChain.get_builder_from_protocol(
                code,
                dataset=None,
                protocol=protocol,
                overrides={"mace": {"finetune_mode": "naive_finetune"}},
                foundation=foundation,
                evaluation_code=label_code,
            )
            assign_inputs(data.finetune, sub_builder._inputs(prune=True))


def builder_problem(builder) -> str | None:
    """What the process would refuse in ``builder`` (its spec's validators, defaults filled in), without running
    or storing anything; None when it would accept it."""
    spec_inputs = builder._process_class.spec().inputs
    inputs = spec_inputs.pre_process(builder._inputs(prune=True))
    error = spec_inputs.validate(inputs)
    return None if error is None else str(error)


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
