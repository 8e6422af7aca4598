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
    "structure": "overrides of the supercell: repeat, lattice_constant, interstitial_site",
    "temperatures_K": "list of temperatures (K), at least three",
    "seeds": "list of base seeds, one per replica",
    "md": "overrides of the MD settings (timestep_fs, production_ps, ...)",
    "analysis": "overrides of the analysis settings (n_blocks, fit_window, modes, primary_mode)",
    "max_wallclock_seconds": "scheduler walltime of each MD calculation",
}
_POTENTIAL_KEYS = {"kind", "model", "label", "path", "foundation"}
DEFAULT_CODES = {"lammps": "lammps@localhost", "runner": "lifdiff-md@localhost"}
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

    potential = raw.get("potential")
    if not isinstance(potential, dict) or "kind" not in potential:
        raise StudyError(
            f"{path}: 'potential' with a 'kind' is required, e.g. {{kind: classical, model: tosi-fumi-lif}}"
        )
    _unknown(set(potential), _POTENTIAL_KEYS, f"{path}: potential")
    potential = dict(potential)
    kind = potential["kind"]
    if kind == "classical":
        if potential.get("model", BUILTIN_CLASSICAL[0]) not in BUILTIN_CLASSICAL:
            raise StudyError(f"{path}: unknown classical model {potential.get('model')!r}; known: {BUILTIN_CLASSICAL}")
    elif kind in ("mace", "deepmd"):
        sources = [key for key in ("path", "foundation") if key in potential]
        if kind == "deepmd" and sources != ["path"]:
            raise StudyError(f"{path}: a deepmd potential needs 'path' (a frozen model file)")
        if kind == "mace" and len(sources) != 1:
            raise StudyError(f"{path}: a mace potential needs exactly one of 'path' (a model file) or 'foundation'")
        if "path" in potential:
            model_path = (path.parent / potential["path"]).resolve()
            if not model_path.is_file():
                raise StudyError(f"{path}: model file {model_path} does not exist")
            potential["path"] = str(model_path)
    else:
        raise StudyError(f"{path}: unknown potential kind {kind!r}; expected classical, mace or deepmd")

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
    return Study(
        name=str(raw.get("name", path.stem)),
        path=path,
        protocol=protocol,
        potential=potential,
        code=str(raw.get("code") or DEFAULT_CODES[_engine_of(kind, inputs["md_settings"].get("engine"))]),
        inputs=inputs,
        description=str(raw.get("description", "")),
    )


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


def load_potential(study: Study):
    """The (unstored) PotentialData a study names; a clear StudyError when its model cannot be used."""
    from aiida_lifdiff.data.potential import PotentialData

    spec = study.potential
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


def build_builder(study: Study):
    """The DiffusionWorkChain builder of a validated study (needs a loaded profile with the code)."""
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    from aiida_lifdiff.data.potential import PotentialData
    from aiida_lifdiff.workflows.diffusion import DiffusionWorkChain

    try:
        code = orm.load_code(study.code)
    except (NotExistent, MultipleObjectsError) as exception:
        raise StudyError(
            f"{study.path}: code {study.code!r} not found in this profile ({exception}); "
            "create it with `aiida-lifdiff setup localhost`"
        ) from exception
    potential = PotentialData.get_or_create(load_potential(study))
    inputs = study.inputs
    overrides = {k: inputs[k] for k in inputs}
    builder = DiffusionWorkChain.get_builder_from_protocol(code, potential, study.protocol, overrides)
    builder.metadata.label = study.name
    builder.metadata.description = study.description
    return builder
