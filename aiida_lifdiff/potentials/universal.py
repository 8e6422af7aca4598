"""Universal (foundation) potentials whose weights ship inside their PyPI wheels: usable offline.

No AiiDA imports: :func:`universal_calculator` runs on compute nodes (``lifdiff-md``, ``lifdiff-label``,
``lifdiff-barrier`` reach it as the ASE factory :data:`UNIVERSAL_FACTORY`).

The registry :data:`UNIVERSAL_MODELS` names each built-in model, the package (and the version it was
checked with) whose wheel carries the weight file, where that file lies inside the installed package, and
the *environment* the package lives in:

* ``main``: the plugin's own venv (``.venv``). CHGNet 0.4.2 installs beside mace-torch 0.3.16.
* ``sevenn``: a venv of its own (``make venv-sevenn`` -> ``.venv-sevenn``). SevenNet needs e3nn >= 0.5,
  mace-torch 0.3.16 pins e3nn 0.4.4, so they cannot share one. It holds torch, sevenn, ase, numpy, scipy
  and this package installed ``--no-deps`` (no aiida-core): only the compute-node programs run there.

The interpreter of an environment other than the running one is, in this order: the ``python`` argument of
:func:`locate_weights`, the variable ``LIFDIFF_<ENVIRONMENT>_PYTHON`` (e.g. ``LIFDIFF_SEVENN_PYTHON``), or
``<checkout>/.venv-<environment>/bin/python`` (the ``make venv-sevenn`` location beside the plugin's source).

Weights are always loaded from an explicit file (:func:`universal_calculator` takes the path), never by the
package's name resolution: CHGNet's ``CHGNet.load`` and SevenNet's ``pretrained_name_to_path`` download what
is not on disk, and a compute node (and this workplace) is offline. A model whose weights do not ship in the
wheel is refused by name with :class:`UniversalModelUnavailable`, whose message says how to pre-place them.

janus-core (the calculator factory behind aiida-mlip) was considered and not used: its factory resolves
model names the packages' own way (downloads included), and its ``torch`` extra pins
``deepmd-kit[torch]==3.2.0``, which cannot share an environment with mace-torch 0.3.16 (see DESIGN.md).
The two package calls it would wrap (``CHGNet.from_file`` + ``CHGNetCalculator``, ``SevenNetCalculator``
on a checkpoint path) are made here directly.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from aiida_lifdiff.potentials import file_sha256

#: The ASE factory of every universal potential (``{"kind": "ase", "factory": ..., "kwargs": {model, path}}``).
UNIVERSAL_FACTORY = "aiida_lifdiff.potentials.universal:universal_calculator"
#: The plugin's own environment (``.venv``).
MAIN_ENVIRONMENT = "main"


class UniversalModelUnavailable(ValueError):
    """A universal model that is unknown, or whose weights are not installed (they would have to be downloaded)."""


@dataclass(frozen=True)
class UniversalModel:
    """One built-in universal model: where its weights lie in the installed package, and how to load them."""

    #: Canonical name (what ``model_info["model"]`` and the study's ``model:`` hold).
    name: str
    #: Distribution name on PyPI, its import name, and the version the weight path was checked with.
    package: str
    module: str
    version: str
    #: The package's own name of the model (CHGNet ``model_name``, SevenNet pretrained name).
    package_model: str
    #: Path of the weight file relative to the package's import directory.
    weights: str
    environment: str
    aliases: tuple[str, ...] = ()
    #: Keyword arguments of the package's loader that its own name resolution would pass.
    load_kwargs: dict = field(default_factory=dict)
    #: Default keyword arguments of the package's ASE calculator (e.g. SevenNet's ``modal``).
    calculator_kwargs: dict = field(default_factory=dict)
    #: False: the wheel lacks the file; the package would download it, so a user must pre-place it (see
    #: :func:`weight_candidates`) before the model is accepted.
    shipped: bool = True
    description: str = ""


#: The universal models whose weights ship inside their wheels (checked in chgnet 0.4.2 and sevenn 0.13.0).
UNIVERSAL_MODELS: dict[str, UniversalModel] = {
    model.name: model
    for model in (
        UniversalModel(
            name="chgnet",
            package="chgnet",
            module="chgnet",
            version="0.4.2",
            package_model="0.3.0",
            weights="pretrained/0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
            environment=MAIN_ENVIRONMENT,
            aliases=("chgnet-0.3.0",),
            # CHGNet.load(model_name="0.3.0") does the same: no MLP output bias, version recorded.
            load_kwargs={"mlp_out_bias": False, "version": "0.3.0"},
            description="CHGNet 0.3.0 (MPtrj, PBE/PBE+U)",
        ),
        UniversalModel(
            name="chgnet-0.2.0",
            package="chgnet",
            module="chgnet",
            version="0.4.2",
            package_model="0.2.0",
            weights="pretrained/0.2.0/chgnet_0.2.0_e30f77s348m32.pth.tar",
            environment=MAIN_ENVIRONMENT,
            load_kwargs={"mlp_out_bias": True, "version": "0.2.0"},
            description="CHGNet 0.2.0 (MPtrj; deprecated, kept by chgnet for backward compatibility)",
        ),
        UniversalModel(
            name="chgnet-r2scan",
            package="chgnet",
            module="chgnet",
            version="0.4.2",
            package_model="r2scan",
            weights="pretrained/r2scan/chgnet_r2scan_transfer_learning_e15f36s161m23.pth.tar",
            environment=MAIN_ENVIRONMENT,
            load_kwargs={"mlp_out_bias": False, "version": "r2scan"},
            description="CHGNet transfer-learned to MP r2SCAN",
        ),
        UniversalModel(
            name="sevennet-0",
            package="sevenn",
            module="sevenn",
            version="0.13.0",
            package_model="7net-0",
            weights="pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth",
            environment="sevenn",
            aliases=("7net-0", "sevennet-0_11jul2024", "7net-0_11jul2024"),
            description="SevenNet-0 (11 Jul 2024, MPtrj, PBE/PBE+U)",
        ),
        UniversalModel(
            name="sevennet-l3i5",
            package="sevenn",
            module="sevenn",
            version="0.13.0",
            package_model="7net-l3i5",
            weights="pretrained_potentials/SevenNet_l3i5/checkpoint_l3i5.pth",
            environment="sevenn",
            aliases=("7net-l3i5",),
            description="SevenNet-l3i5 (MPtrj, l_max 3, 5 layers)",
        ),
        # Not in the wheel (sevenn downloads them at first use): accepted once a user has pre-placed the file.
        UniversalModel(
            name="sevennet-mf-ompa",
            package="sevenn",
            module="sevenn",
            version="0.13.0",
            package_model="7net-mf-ompa",
            weights="pretrained_potentials/SevenNet_MF_ompa/checkpoint_sevennet_mf_ompa.pth",
            environment="sevenn",
            aliases=("7net-mf-ompa",),
            calculator_kwargs={"modal": "mpa"},
            shipped=False,
            description="SevenNet-MF-ompa, MPtrj+sAlex (PBE) fidelity 'mpa'; weights NOT in the wheel",
        ),
        UniversalModel(
            name="sevennet-omat",
            package="sevenn",
            module="sevenn",
            version="0.13.0",
            package_model="7net-omat",
            weights="pretrained_potentials/SevenNet_omat/checkpoint_sevennet_omat.pth",
            environment="sevenn",
            aliases=("7net-omat",),
            shipped=False,
            description="SevenNet-omat (OMat24); weights NOT in the wheel",
        ),
    )
}


def universal_names() -> list[str]:
    """Every accepted name (canonical names and aliases)."""
    return sorted(set(UNIVERSAL_MODELS) | {alias for m in UNIVERSAL_MODELS.values() for alias in m.aliases})


def get_universal_model(name: str) -> UniversalModel:
    """The registry entry of ``name`` (or an alias, case-insensitive); refused when its weights are not shipped."""
    key = str(name).strip().lower()
    for model in UNIVERSAL_MODELS.values():
        if key == model.name or key in model.aliases:
            return model
    raise UniversalModelUnavailable(_not_shipped_message(str(name)))


def _shipped_names() -> str:
    return ", ".join(sorted(name for name, model in UNIVERSAL_MODELS.items() if model.shipped))


def weight_candidates(model: UniversalModel, directory: Path) -> list[Path]:
    """Where the weight file of ``model`` may lie, first found wins: inside the installed package (as the wheel
    ships it, or as a user pre-placed it), then the package's own cache (SevenNet: ``~/.cache/sevennet``)."""
    candidates = [directory / model.weights]
    if model.package == "sevenn":
        candidates.append(
            Path.home() / ".cache" / "sevennet" / Path(model.weights).relative_to("pretrained_potentials")
        )
    return candidates


def _not_placed_message(model: UniversalModel, candidates: list[Path]) -> str:
    return (
        f"universal model {model.name!r}: its weights do not ship inside the {model.package} wheel; "
        f"{model.package} would download them at first use, which an offline compute node cannot (and this "
        f"plugin never does). Download {Path(model.weights).name} ({model.package} {model.package_model}) on a "
        f"machine with network and pre-place it at {candidates[0]} or {candidates[-1]} in the "
        f"{model.environment!r} environment; then it is used like a shipped model. Shipped (offline) universal "
        f"models: {_shipped_names()}"
    )


def _not_shipped_message(name: str) -> str:
    key = name.lower()
    known = _shipped_names()
    if key.startswith(("7net", "sevennet")):
        detail = (
            f"{name!r} is not a SevenNet model known here (shipped in sevenn 0.13.0: 7net-0, 7net-l3i5; "
            "pre-placeable: 7net-mf-ompa, 7net-omat); its weights would have to be downloaded"
        )
    elif key.startswith("chgnet"):
        detail = (
            f"{name!r} is not a CHGNet model shipped in chgnet 0.4.2 (it carries 0.3.0, 0.2.0 and r2scan); other "
            "CHGNet versions would have to be downloaded"
        )
    elif "mace" in key:
        detail = (
            f"{name!r} looks like a MACE foundation model: its weights are release assets downloaded at run time, "
            "not part of mace-torch's wheel. Download the .model file on a machine with network and use "
            "{kind: mace, path: FILE} (or {kind: mace, foundation: NAME} with the file in ~/.cache/mace, see "
            "docs/universal.md)"
        )
    else:
        detail = (
            f"{name!r} is not a universal model whose weights ship inside its wheel; they would have to be downloaded"
        )
    return f"universal model {detail}. Built-in universal models (offline): {known}"


def default_environment_python(environment: str) -> str:
    """The interpreter of ``environment``: this one for the running environment, else LIFDIFF_<ENV>_PYTHON or
    ``<checkout>/.venv-<environment>/bin/python``."""
    variable = f"LIFDIFF_{environment.upper()}_PYTHON"
    if os.environ.get(variable):
        return os.environ[variable]
    if environment == MAIN_ENVIRONMENT:
        return sys.executable
    checkout = Path(__file__).resolve().parents[2]
    return str(checkout / f".venv-{environment}" / "bin" / "python")


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def describe_installed(name: str) -> dict[str, Any]:
    """What the running interpreter has of ``name``: package version, weight file, its sha256, species.

    Raises :class:`UniversalModelUnavailable` when the package is not importable here or the wheel lacks the file.
    """
    model = get_universal_model(name)
    directory = _package_dir(model.module)
    if directory is None:
        raise UniversalModelUnavailable(
            f"universal model {model.name!r}: package {model.package} is not installed in {sys.executable} "
            f"(environment {model.environment!r}; install {model.package}=={model.version})"
        )
    candidates = weight_candidates(model, directory)
    found = [candidate for candidate in candidates if candidate.is_file()]
    if not model.shipped and not found:
        raise UniversalModelUnavailable(_not_placed_message(model, candidates))
    path = (found or candidates)[0].resolve()
    if not path.is_file():
        raise UniversalModelUnavailable(
            f"universal model {model.name!r}: {model.package} {metadata.version(model.package)} at {directory} has "
            f"no weight file {model.weights} (checked with {model.package}=={model.version}); the weights would "
            "have to be downloaded"
        )
    return {
        "name": model.name,
        "package": model.package,
        "package_version": metadata.version(model.package),
        "model": model.name,
        "package_model": model.package_model,
        "environment": model.environment,
        "weights_sha256": file_sha256(path),
        "source_path": str(path),
        "shipped": model.shipped,
        "python": sys.executable,
        "species": _species(model, path),
    }


def _species(model: UniversalModel, path: Path) -> list[str]:
    """The elements the weight file covers (from the file, not from a table)."""
    import torch
    from ase.data import chemical_symbols

    if model.package == "chgnet":
        state = torch.load(str(path), map_location="cpu", weights_only=False)
        count = state["model"]["state_dict"]["atom_embedding.embedding.weight"].shape[0]
        return list(chemical_symbols[1 : count + 1])
    if model.package == "sevenn":
        state = torch.load(str(path), map_location="cpu", weights_only=False)
        return sorted(state["config"]["chemical_species"])
    raise UniversalModelUnavailable(f"no species reader for package {model.package!r}")


def locate_weights(name: str, python: str | None = None, timeout: float = 300.0) -> dict[str, Any]:
    """The weight file of universal model ``name`` as installed, its sha256, the package version and species.

    In-process when the model's package is importable here (and no other ``python`` is asked for); otherwise
    by running ``python -m aiida_lifdiff.potentials.universal describe NAME`` with the interpreter of the
    model's environment (:func:`default_environment_python`). Refusals are :class:`UniversalModelUnavailable`.
    """
    model = get_universal_model(name)
    if python is None and importlib.util.find_spec(model.module) is not None:
        return describe_installed(model.name)
    interpreter = python or default_environment_python(model.environment)
    if not Path(interpreter).is_file():
        hint = "make venv-sevenn" if model.environment == "sevenn" else f"a venv with {model.package}=={model.version}"
        raise UniversalModelUnavailable(
            f"universal model {model.name!r} lives in the {model.environment!r} environment, whose interpreter "
            f"{interpreter} does not exist; build it ({hint}) or pass its python (LIFDIFF_"
            f"{model.environment.upper()}_PYTHON)"
        )
    command = [interpreter, "-m", "aiida_lifdiff.potentials.universal", "describe", model.name]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exception:
        message = f"universal model {model.name!r}: {' '.join(command)} failed: {exception}"
        raise UniversalModelUnavailable(message) from exception
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UniversalModelUnavailable(
            f"universal model {model.name!r}: {' '.join(command)} exited {result.returncode}: {detail[0]}"
        )
    answer = json.loads(lines[-1])
    if "error" in answer:
        raise UniversalModelUnavailable(answer["error"])
    return answer


def universal_calculator(model: str, path: str, device: str = "cpu", **kw):
    """The ASE calculator of universal ``model`` loaded FROM ``path`` (never by name, never a download).

    ``kw`` goes to the package's calculator (CHGNet: ``stress_weight``, ``on_isolated_atoms``; SevenNet:
    ``modal``, ``enable_cueq``, ...).
    """
    entry = get_universal_model(model)
    if not Path(path).is_file():
        raise FileNotFoundError(f"weight file {path} of universal model {entry.name!r} does not exist")
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    if entry.package == "chgnet":
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator

        network = CHGNet.from_file(str(path), **entry.load_kwargs)
        return CHGNetCalculator(model=network, use_device=device, **{**entry.calculator_kwargs, **kw})
    if entry.package == "sevenn":
        from sevenn.calculator import SevenNetCalculator

        # A str that is a file is loaded as a checkpoint (sevenn.util.load_checkpoint checks isfile first).
        return SevenNetCalculator(
            model=str(Path(path).resolve()), file_type="checkpoint", device=device, **{**entry.calculator_kwargs, **kw}
        )
    raise UniversalModelUnavailable(f"no calculator for package {entry.package!r}")


def _main(argv: list[str]) -> int:
    """``python -m aiida_lifdiff.potentials.universal describe NAME``: one JSON line (or {"error": ...})."""
    if len(argv) != 2 or argv[0] != "describe":
        print("usage: python -m aiida_lifdiff.potentials.universal describe NAME", file=sys.stderr)
        return 2
    try:
        print(json.dumps(describe_installed(argv[1])))
    except UniversalModelUnavailable as exception:
        print(json.dumps({"error": str(exception)}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
