"""How a ``PotentialData`` reaches a compute-node program: the ``model`` entry of its input JSON.

One place for every CalcJob that runs one of our programs (``lifdiff-md``, ``lifdiff-label``,
``lifdiff-barrier``), so a new potential kind is taught to all of them at once, and one place for the
rule that a potential only runs in an environment that has its package (a code's
``lifdiff_environment`` extra; see :func:`check_code_environment`).
"""

from __future__ import annotations

import json

from aiida import orm
from aiida.common.folders import Folder

from aiida_lifdiff.data.potential import PotentialData

#: The ASE factory that evaluates DeePMD models (deepmd-kit's calculator).
DEEPMD_FACTORY = "aiida_lifdiff.potentials.deepmd:deepmd_calculator"
#: Name of the classical parameter table in the job folder.
PARAMETERS_FILE = "parameters.json"
#: The environment of a code without a ``lifdiff_environment`` extra: the plugin's own venv.
MAIN_ENVIRONMENT = "main"


def runner_model(
    potential: PotentialData, folder: Folder, *, classical_settings: dict | None = None
) -> tuple[dict, list[tuple[str, str, str]]]:
    """``(model entry, local_copy_list)`` for ``potential``; writes the classical parameter table into ``folder``.

    ``classical_settings`` (``cutoff``, ``kspace_accuracy``) only apply to the classical kind.
    """
    local_copy_list: list[tuple[str, str, str]] = []
    if potential.kind == "classical":
        with folder.open(PARAMETERS_FILE, "w") as handle:
            json.dump(potential.parameters, handle, indent=1, sort_keys=True)
        settings = classical_settings or {}
        model = {
            "kind": "classical",
            "parameters": PARAMETERS_FILE,
            "cutoff": float(settings.get("cutoff", 8.0)),
            "kspace_accuracy": float(settings.get("kspace_accuracy", 1e-7)),
        }
    elif potential.kind == "mace":
        model = {"kind": "mace", "path": potential.filename}
        local_copy_list.append((potential.uuid, potential.filename, potential.filename))
    elif potential.kind == "deepmd":
        model = {"kind": "ase", "factory": DEEPMD_FACTORY, "kwargs": {"path": potential.filename}}
        local_copy_list.append((potential.uuid, potential.filename, potential.filename))
    elif potential.kind == "universal":
        from aiida_lifdiff.potentials.universal import UNIVERSAL_FACTORY

        model = {
            "kind": "ase",
            "factory": UNIVERSAL_FACTORY,
            "kwargs": {"model": potential.model_info["model"], "path": potential.filename},
        }
        local_copy_list.append((potential.uuid, potential.filename, potential.filename))
    else:
        raise ValueError(f"no compute-node model entry for potential kind {potential.kind!r}")
    model["species"] = potential.species
    return model, local_copy_list


def potential_environment(potential: PotentialData) -> str:
    """The environment a potential needs (``main`` unless its package cannot live beside mace-torch)."""
    return str(potential.model_info.get("environment") or MAIN_ENVIRONMENT)


def code_environment(code: orm.AbstractCode) -> str:
    """The environment a code's executable lives in (``setup localhost/slurm`` records it as an extra)."""
    return str(code.base.extras.get("lifdiff_environment", MAIN_ENVIRONMENT))


def check_code_environment(potential: PotentialData, code: orm.AbstractCode) -> str | None:
    """A message if ``code`` runs in an environment that lacks ``potential``'s package, else None."""
    needed, available = potential_environment(potential), code_environment(code)
    if needed == available:
        return None
    name = potential.label or potential.kind
    return (
        f"potential {name!r} needs the {needed!r} environment, but code {code.full_label!r} runs in the "
        f"{available!r} environment; create its codes with `aiida-lifdiff setup localhost --environment {needed}` "
        "(or `setup slurm --environment ...`) and pass those"
    )
