"""Parser of ``lifdiff.lammps``: LAMMPS dump/thermo/log -> the trajectory contract of the project.

Every MD parser of the project emits the same contract: a ``TrajectoryData`` of UNWRAPPED Cartesian
positions (A) with the time of each frame in ps, plus the MD settings as attributes, and a thermo
``ArrayData`` beside it.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_lifdiff.engines import lammps_input, lammps_output
from aiida_lifdiff.parsers.contract import killed_at_walltime, trajectory_node
from aiida_lifdiff.parsers.contract import thermo_node as make_thermo
from aiida_lifdiff.serialization import json_safe


class LifdiffLammpsParser(Parser):
    """Turn a finished LAMMPS MD run into ``trajectory``, ``thermo`` and ``results``."""

    def parse(self, **kwargs) -> ExitCode | None:
        retrieved = self.retrieved
        if killed_at_walltime(self):
            # LAMMPS had no chance to write a restart file: the work chain reruns this segment.
            return self.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME
        names = set(retrieved.base.repository.list_object_names())
        stdout_name = self.node.base.attributes.get("output_filename")
        if stdout_name not in names:
            return self.exit_codes.ERROR_OUTFILE_MISSING

        md = self.node.inputs.settings.get_dict()["md"]
        log_text = retrieved.base.repository.get_object_content(stdout_name)
        status = lammps_output.scan_log(log_text)

        if status.get("lost_atoms"):
            self.out("results", orm.Dict(json_safe(self._results(status, md))))
            return self.exit_codes.ERROR_LOST_ATOMS
        if status.get("error"):
            self.out("results", orm.Dict(json_safe(self._results(status, md))))
            return self.exit_codes.ERROR_PARSER_DETECTED_LAMMPS_RUN_ERROR.format(error=status["error"])

        if lammps_input.TRAJECTORY_FILE not in names:
            return self.exit_codes.ERROR_TRAJECTORY_MISSING
        with retrieved.base.repository.open(lammps_input.TRAJECTORY_FILE) as handle:
            dump_text = handle.read()
        try:
            steps, positions, types, cells = lammps_output.read_dump(dump_text)
        except ValueError:
            return self.exit_codes.ERROR_TRAJECTORY_MISSING

        species_order = md["species_order"]
        symbols = [species_order[int(t) - 1] for t in types]
        trajectory = trajectory_node(symbols=symbols, steps=steps, positions=positions, cells=cells, md=md)

        thermo_node = None
        if lammps_input.THERMO_FILE in names:
            with retrieved.base.repository.open(lammps_input.THERMO_FILE) as handle:
                thermo = lammps_output.read_thermo(handle.read())
            thermo_node = make_thermo(thermo)

        arrays = [positions] + ([] if thermo_node is None else [thermo_node.get_array(k) for k in thermo])
        if not all(np.all(np.isfinite(a)) for a in arrays):
            return self.exit_codes.ERROR_NON_FINITE

        self.out("trajectory", trajectory)
        if thermo_node is not None:
            self.out("thermo", thermo_node)
        results = self._results(status, md)
        results["last_step"] = int(steps[-1])
        results["n_frames"] = len(steps)
        if thermo_node is not None and thermo_node.get_array("temp_K").size:
            temperatures = thermo_node.get_array("temp_K")
            results["mean_temperature_K"] = float(np.mean(temperatures))
            results["std_temperature_K"] = float(np.std(temperatures))
        self.out("results", orm.Dict(json_safe(results)))

        target = int(md["n_steps"])
        if int(steps[-1]) < target:
            if status.get("timeout"):
                return self.exit_codes.ERROR_OUT_OF_WALLTIME.format(step=int(steps[-1]), target=target)
            return self.exit_codes.ERROR_INCOMPLETE_TRAJECTORY.format(
                detail=f"last frame at step {int(steps[-1])} of {target}"
            )
        return None

    @staticmethod
    def _results(status: dict, md: dict) -> dict:
        keep = {k: v for k, v in status.items() if isinstance(v, (int, float, str, bool)) or v is None}
        keep["target_steps"] = int(md["n_steps"])
        keep["temperature_K"] = float(md["temperature_K"])
        return keep
