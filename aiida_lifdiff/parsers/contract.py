"""The trajectory contract every MD parser emits (DESIGN.md section 3), in one place.

A ``TrajectoryData`` of UNWRAPPED Cartesian positions (A) with the time of each frame in ps, and the MD
settings as attributes (``temperature_K``, ``timestep_fs``, ``stride``, ``equilibration_ps``, ``engine``,
``seed``); a thermo ``ArrayData`` beside it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
from aiida import orm
from aiida.parsers import Parser


def trajectory_node(
    *,
    symbols: list[str],
    steps: np.ndarray,
    positions: np.ndarray,
    cells: np.ndarray,
    md: dict,
) -> orm.TrajectoryData:
    """Build the trajectory contract node (unstored) from arrays and the MD settings."""
    timestep_ps = md["timestep_fs"] * 1e-3
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(
        symbols=symbols,
        positions=positions,
        stepids=np.asarray(steps, dtype=int),
        cells=cells,
        times=np.asarray(steps, dtype=float) * timestep_ps,
        pbc=[True, True, True],
    )
    attributes = {
        "temperature_K": float(md["temperature_K"]),
        "timestep_fs": float(md["timestep_fs"]),
        "stride": int(md["dump_stride"]),
        "equilibration_ps": float(md["equilibration_steps"]) * timestep_ps,
        "engine": md.get("engine", "lammps"),
        "seed": int(md["seed"]),
        "unwrapped": True,
        "units": {"positions": "angstrom", "times": "ps"},
    }
    for key, value in attributes.items():
        trajectory.base.attributes.set(key, value)
    return trajectory


def thermo_node(columns: Mapping[str, np.ndarray]) -> orm.ArrayData:
    """Thermo log columns (step, time_ps, temp_K, pe_eV, etotal_eV, press_bar, econserve_eV) as an ArrayData."""
    node = orm.ArrayData()
    for key, values in columns.items():
        node.set_array(key, np.asarray(values))
    return node


#: What slurmstepd writes to a job's stderr when SLURM kills the job at its time limit.
SLURM_TIME_LIMIT = re.compile(r"CANCELLED AT \S+ DUE TO TIME LIMIT")


def killed_at_walltime(parser: Parser) -> bool:
    """Whether the scheduler killed the job of ``parser``'s calculation at its walltime.

    AiiDA's SLURM plugin finds this from ``sacct`` when the cluster keeps accounting, and otherwise only when
    slurmstepd's line is the first line of the scheduler's stderr; the whole file is searched here, so the
    answer does not depend on either.
    """
    walltime = parser.node.process_class.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status
    if parser.node.exit_status == walltime:
        return True
    name = parser.node.get_option("scheduler_stderr")
    try:
        text = parser.retrieved.base.repository.get_object_content(name, mode="r")
    except (FileNotFoundError, TypeError):
        return False
    return bool(SLURM_TIME_LIMIT.search(text))
