"""Parser of ``lifdiff.md``: the runner's per-member outputs -> the trajectory contract."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_lifdiff.calculations.md import SUMMARY_FILE
from aiida_lifdiff.engines.lammps_output import read_thermo
from aiida_lifdiff.parsers.contract import killed_at_walltime, thermo_node, trajectory_node
from aiida_lifdiff.serialization import json_safe

#: Runner exit codes (see aiida_lifdiff.runner.md) that mean the input itself was refused.
RUNNER_BAD_INPUT, RUNNER_NO_CUDA, RUNNER_MEMBERS_FAILED, RUNNER_TIMEOUT = 2, 3, 4, 5


class LifdiffMdParser(Parser):
    """Attach a trajectory and a thermo log per finished member, and the runner summary."""

    def _read(self, path: str, mode: str = "r"):
        repository = self.retrieved.base.repository
        return repository.get_object_content(path, mode=mode)

    def parse(self, **kwargs) -> ExitCode | None:
        names = self._all_names()
        if SUMMARY_FILE not in names and killed_at_walltime(self):
            # Killed before the runner could checkpoint on SIGTERM: the work chain reruns this segment.
            return self.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME
        if SUMMARY_FILE not in names:
            stdout = self.node.base.attributes.get("output_filename")
            tail = self._read(stdout)[-2000:] if stdout in names else "(no output)"
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(detail=tail.strip() or "(empty output)")
        summary = json.loads(self._read(SUMMARY_FILE))
        exit_code = int(summary.get("exit_code", 0))
        message = summary.get("message", "")
        if exit_code == RUNNER_BAD_INPUT:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        if exit_code == RUNNER_NO_CUDA:
            return self.exit_codes.ERROR_CUDA_UNAVAILABLE.format(message=message)

        parameters = self.node.inputs.parameters.get_dict()
        failed, last_steps = [], []
        for member in parameters["members"]:
            name = member["name"]
            status_path = f"{name}/status.json"
            if status_path not in names:
                failed.append(f"{name}: no status written")
                continue
            status = json.loads(self._read(status_path))
            if status.get("status") == "failed":
                failed.append(f"{name}: {status.get('reason', 'unknown reason')}")
                continue
            last_steps.append(int(status.get("last_step", -1)))
            with io.BytesIO(self._read(f"{name}/trajectory.npz", mode="rb")) as handle:
                data = np.load(handle, allow_pickle=False)
                arrays = {key: data[key] for key in data.files}
            if len(arrays["steps"]) == 0:
                # A member that had already finished before this continuation run: nothing new to attach.
                continue
            md = {
                "temperature_K": float(member["temperature_K"]),
                "timestep_fs": float(parameters["timestep_fs"]),
                "dump_stride": int(parameters["dump_stride"]),
                "equilibration_steps": int(parameters.get("equilibration_steps", 0)),
                "seed": int(member["seed"]),
                "engine": str(arrays["engine"]) if "engine" in arrays else "lifdiff-md",
            }
            cells = np.broadcast_to(arrays["cell"], (len(arrays["steps"]), 3, 3))
            self.out(
                f"trajectories.{name}",
                trajectory_node(
                    symbols=[str(s) for s in arrays["symbols"]],
                    steps=arrays["steps"],
                    positions=arrays["positions"],
                    cells=np.array(cells),
                    md=md,
                ),
            )
            if f"{name}/thermo.dat" in names:
                self.out(f"thermo.{name}", thermo_node(read_thermo(self._read(f"{name}/thermo.dat"))))

        summary["failed_members"] = failed
        self.out("results", orm.Dict(json_safe(summary)))
        if exit_code == RUNNER_TIMEOUT:
            return self.exit_codes.ERROR_OUT_OF_WALLTIME.format(
                step=min(last_steps) if last_steps else -1, target=parameters["n_steps"]
            )
        if failed:
            return self.exit_codes.ERROR_MEMBERS_FAILED.format(count=len(failed), details="; ".join(failed))
        return None

    def _all_names(self) -> set[str]:
        """Every file in the retrieved folder, with its path relative to the folder."""
        repository = self.retrieved.base.repository
        found = set()

        def walk(prefix: str) -> None:
            for name in repository.list_object_names(prefix or None):
                path = f"{prefix}/{name}" if prefix else name
                try:
                    repository.list_object_names(path)
                except NotADirectoryError:
                    found.add(path)
                else:
                    walk(path)

        walk("")
        return found
