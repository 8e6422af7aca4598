"""Parser of ``lifdiff.barrier``: the summary -> ``results``, the bands -> ``profiles``, E(V) -> ``eos``."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser
from ase.io import read

from aiida_lifdiff.calculations.barrier import START_FILE, SUMMARY_FILE
from aiida_lifdiff.parsers.contract import killed_at_walltime
from aiida_lifdiff.serialization import json_safe

#: Exit codes of ``lifdiff-barrier`` (see :mod:`aiida_lifdiff.runner.barrier`).
BAD_INPUT, NO_CUDA, NOT_CONVERGED, WRONG_ENDPOINT, ENGINE_FAILED = 2, 3, 4, 5, 6
#: Lists of each path's summary entry that go to the ``profiles`` array instead of the ``results`` Dict.
PROFILE_KEYS = {"reaction_coordinate_A": "reaction_coordinate_A", "energies_eV": "energies_eV"}


def split_summary(summary: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """``(results, arrays)``: the summary with the per-path profiles moved out, plus the flat per-path tables.

    ``results`` also gets ``converged`` and ``max_force_eV_A`` as ``{path: value}`` (the benchmark's columns).
    """
    results = json.loads(json.dumps(summary))  # a deep copy
    arrays: dict[str, np.ndarray] = {}
    converged, forces = {}, {}
    for name, entry in (results.get("paths") or {}).items():
        for key, suffix in PROFILE_KEYS.items():
            values = entry.pop(key, None)
            if values is not None:
                arrays[f"{name}_{suffix}"] = np.asarray(values, dtype=float)
        converged[name] = bool(entry.get("converged", False))
        if entry.get("max_force_eV_A") is not None:
            forces[name] = entry["max_force_eV_A"]
    results["converged"] = converged
    results["max_force_eV_A"] = forces
    return results, arrays


class LifdiffBarrierParser(Parser):
    """Attach the barrier program's results; an unconverged NEB or a changed end point keeps its outputs."""

    def _read(self, path: str, mode: str = "r"):
        return self.retrieved.base.repository.get_object_content(path, mode=mode)

    def parse(self, **kwargs) -> ExitCode | None:
        names = set(self.retrieved.base.repository.list_object_names())
        if SUMMARY_FILE not in names:
            if killed_at_walltime(self):
                return self.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME
            stdout = self.node.base.attributes.get("output_filename")
            tail = self._read(stdout)[-2000:] if stdout in names else "(no output)"
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(detail=tail.strip() or "(empty output)")
        summary = json.loads(self._read(SUMMARY_FILE))
        exit_code = int(summary.get("exit_code", 0))
        message = str(summary.get("message", ""))
        results, arrays = split_summary(summary)
        self.out("results", orm.Dict(json_safe(results)))
        if arrays:
            profiles = orm.ArrayData()
            for key, values in arrays.items():
                profiles.set_array(key, values)
            self.out("profiles", profiles)
        eos = summary.get("eos")
        if eos and eos.get("energies_eV"):
            node = orm.ArrayData()
            for key in ("lattice_constants_A", "volumes_A3", "energies_eV"):
                if eos.get(key) is not None:
                    node.set_array(key, np.asarray(eos[key], dtype=float))
            self.out("eos", node)
        if START_FILE in names:
            atoms = read(io.StringIO(self._read(START_FILE)), format="extxyz")
            self.out("start_structure", orm.StructureData(ase=atoms))

        if exit_code == BAD_INPUT:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        if exit_code == NO_CUDA:
            return self.exit_codes.ERROR_CUDA_UNAVAILABLE.format(message=message)
        if exit_code == NOT_CONVERGED:
            return self.exit_codes.ERROR_NEB_NOT_CONVERGED.format(message=message)
        if exit_code == WRONG_ENDPOINT:
            return self.exit_codes.ERROR_ENDPOINT_CHANGED.format(message=message)
        if exit_code == ENGINE_FAILED:
            return self.exit_codes.ERROR_ENGINE_FAILED.format(message=message[-2000:])
        if exit_code != 0:
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(detail=f"unknown exit code {exit_code}: {message}")
        return None
