"""Calcfunction: the exact LAMMPS input script and data file of one MD run, stored as nodes."""

from __future__ import annotations

import io

from aiida import orm
from aiida.engine import calcfunction

from aiida_lifdiff.calculations.lammps import CONTINUE_RESTART_FILE
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.engines import lammps_input

#: Keys of the ``parameters`` Dict of :func:`prepare_lammps_md` that have no default.
REQUIRED_MD_PARAMETERS = ("temperature_K", "timestep_fs", "n_steps", "seed", "dump_stride", "thermo_stride")

#: Keys of the ``parameters`` Dict of :func:`prepare_lammps_md`, with their defaults (None = unset).
MD_PARAMETERS = {
    "temperature_K": None,
    "timestep_fs": None,
    "n_steps": None,
    "equilibration_steps": 0,
    "seed": None,
    "dump_stride": None,
    "thermo_stride": None,
    "thermostat_damping_fs": 100.0,
    "timeout_s": None,
    "restart": False,
}


def validate_md_parameters(parameters: dict) -> str | None:
    """Return a message if ``parameters`` cannot define an MD run, else None."""
    unknown = set(parameters) - set(MD_PARAMETERS)
    if unknown:
        return f"unknown MD parameters {sorted(unknown)}; allowed: {sorted(MD_PARAMETERS)}"
    missing = [k for k in REQUIRED_MD_PARAMETERS if k not in parameters]
    if missing:
        return f"missing MD parameters {missing}"
    if parameters["temperature_K"] <= 0:
        return f"temperature_K must be > 0, got {parameters['temperature_K']}"
    if parameters["timestep_fs"] <= 0:
        return f"timestep_fs must be > 0, got {parameters['timestep_fs']}"
    for key in ("n_steps", "dump_stride", "thermo_stride"):
        if int(parameters[key]) < 1:
            return f"{key} must be >= 1, got {parameters[key]}"
    if int(parameters["n_steps"]) % int(parameters["dump_stride"]):
        return f"n_steps ({parameters['n_steps']}) must be a multiple of dump_stride ({parameters['dump_stride']})"
    return None


@calcfunction
def prepare_lammps_md(structure: orm.StructureData, potential: PotentialData, parameters: orm.Dict) -> dict:
    """Write the LAMMPS input of an NVT run: ``script``, ``data`` file and the ``settings`` the parser reads."""
    params = {k: v for k, v in MD_PARAMETERS.items() if v is not None}
    params.update(parameters.get_dict())
    message = validate_md_parameters(params)
    if message:
        raise ValueError(message)
    atoms = structure.get_ase()
    species_order = sorted(set(atoms.get_chemical_symbols()), key=lambda s: atoms.get_chemical_symbols().index(s))
    if not potential.covers(species_order):
        raise ValueError(f"potential covers {potential.species}, structure has {species_order}")

    script = lammps_input.md_input_script(
        potential_lines=potential.lammps_lines(species_order),
        species_order=species_order,
        temperature_K=float(params["temperature_K"]),
        timestep_fs=float(params["timestep_fs"]),
        n_steps=int(params["n_steps"]),
        equilibration_steps=int(params["equilibration_steps"]),
        seed=int(params["seed"]),
        dump_stride=int(params["dump_stride"]),
        thermo_stride=int(params["thermo_stride"]),
        thermostat_damping_fs=float(params["thermostat_damping_fs"]),
        timeout_s=params.get("timeout_s"),
        restart_from=CONTINUE_RESTART_FILE if params.get("restart") else None,
        data_filename=lammps_input.DATA_FILE,
    )
    data = lammps_input.write_data_file(atoms, species_order, potential.charges())
    md = dict(params)
    md["species_order"] = species_order
    md["engine"] = "lammps"
    return {
        "script": orm.SinglefileData(io.BytesIO(script.encode()), filename="input.in"),
        "data": orm.SinglefileData(io.BytesIO(data.encode()), filename=lammps_input.DATA_FILE),
        "settings": orm.Dict({"md": md}),
    }
