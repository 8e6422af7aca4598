"""Calcfunction: join the trajectory segments of a restarted MD run into one trajectory."""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from aiida_lifdiff.engines.lammps_output import join_segments
from aiida_lifdiff.parsers.contract import trajectory_node


@calcfunction
def concatenate_trajectories(**segments: orm.TrajectoryData) -> orm.TrajectoryData:
    """Concatenate segments in key order; each keeps only its frames before the next segment's first frame.

    Segments come from one run continued from restart files, so they share atoms, cell and settings.
    """
    ordered = [segments[key] for key in sorted(segments)]
    steps, positions = join_segments([(s.get_stepids(), s.get_positions()) for s in ordered])
    _, cells = join_segments([(s.get_stepids(), s.get_cells()) for s in ordered])
    first = ordered[0]
    md = {
        "temperature_K": first.base.attributes.get("temperature_K"),
        "timestep_fs": first.base.attributes.get("timestep_fs"),
        "dump_stride": first.base.attributes.get("stride"),
        "equilibration_steps": round(
            first.base.attributes.get("equilibration_ps") / (first.base.attributes.get("timestep_fs") * 1e-3)
        ),
        "seed": first.base.attributes.get("seed"),
        "engine": first.base.attributes.get("engine"),
    }
    joined = trajectory_node(
        symbols=list(first.symbols),
        steps=steps,
        positions=positions,
        cells=cells,
        md=md,
    )
    joined.base.attributes.set("n_segments", len(ordered))
    return joined
