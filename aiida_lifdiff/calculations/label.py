"""``lifdiff.label``: the ``lifdiff-label`` program (single points with any potential kind) as a CalcJob."""

from __future__ import annotations

import json
import math

from aiida import orm
from aiida.common.datastructures import CalcInfo, CodeInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJob

from aiida_lifdiff.calculations.model_spec import (  # noqa: F401
    DEEPMD_FACTORY,
    PARAMETERS_FILE,
    check_code_environment,
    runner_model,
)
from aiida_lifdiff.codes import computer_device
from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.data.potential import PotentialData

INPUT_FILE = "input.json"
FRAMES_FILE = "frames.extxyz"
OUTPUT_FILE = "labelled.extxyz"
SUMMARY_FILE = "summary.json"

#: Keys of ``parameters`` and their defaults; ``cutoff`` and ``kspace_accuracy`` only apply to classical
#: potentials (LAMMPS, Ewald), ``device``/``dtype``/``batch_size`` only to MACE and DeePMD.
LABEL_PARAMETERS = {
    "device": "cpu",
    "dtype": "float64",
    "batch_size": 16,
    "compute_stress": True,
    "cutoff": 8.0,
    "kspace_accuracy": 1e-7,
}


def validate_label_parameters(parameters: dict) -> str | None:
    """A message if ``parameters`` cannot define a labelling job, else None (checked before submission)."""
    unknown = set(parameters) - set(LABEL_PARAMETERS)
    if unknown:
        return f"unknown label parameters {sorted(unknown)}; allowed: {sorted(LABEL_PARAMETERS)}"
    device = parameters.get("device", "cpu")
    if not isinstance(device, str) or not (device in ("cpu", "cuda") or device.startswith("cuda:")):
        return f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}"
    if parameters.get("dtype", "float64") not in ("float32", "float64"):
        return f"dtype must be 'float32' or 'float64', got {parameters['dtype']!r}"
    batch_size = parameters.get("batch_size", 1)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        return f"batch_size must be an integer >= 1, got {batch_size!r}"
    if not isinstance(parameters.get("compute_stress", True), bool):
        return f"compute_stress must be true or false, got {parameters['compute_stress']!r}"
    cutoff = parameters.get("cutoff", 8.0)
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not math.isfinite(cutoff) or cutoff <= 0:
        return f"cutoff must be a positive number of Angstrom, got {cutoff!r}"
    accuracy = parameters.get("kspace_accuracy", 1e-7)
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not 0 < accuracy < 1:
        return f"kspace_accuracy must be a relative accuracy in (0, 1), got {accuracy!r}"
    return None


def species_problem(potential: PotentialData, frames: DatasetData) -> str | None:
    """A message naming both sides when ``potential`` does not cover every element of ``frames``."""
    if potential.covers(frames.species):
        return None
    missing = sorted(set(frames.species) - set(potential.species))
    name = potential.label or f"{potential.kind} potential"
    return (
        f"potential {name!r} ({potential.kind}) covers {potential.species}, but dataset "
        f"{frames.label or frames.pk or 'frames'!r} contains {frames.species}: no parameters for {missing}"
    )


def _validate_parameters(value: orm.Dict, _) -> str | None:
    return validate_label_parameters(value.get_dict())


def _validate_inputs(inputs: dict, _) -> str | None:
    potential, frames, code = inputs.get("potential"), inputs.get("frames"), inputs.get("code")
    if potential is not None and code is not None:
        message = check_code_environment(potential, code)
        if message:
            return message
    if potential is None or frames is None:
        return None
    return species_problem(potential, frames)


class LifdiffLabelCalculation(CalcJob):
    """Energy, forces and stress of every frame of a dataset with one potential (classical, MACE or DeePMD)."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            "potential",
            valid_type=PotentialData,
            help="The potential that labels the frames: classical (LAMMPS single points), MACE or DeePMD.",
        )
        spec.input(
            "frames",
            valid_type=DatasetData,
            help="The frames to label; only elements, positions and cells are used (existing labels are ignored, "
            "per-frame info such as config_type is kept).",
        )
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            required=False,
            validator=_validate_parameters,
            help="Optional settings: device ('cpu'|'cuda'), dtype ('float32'|'float64', MACE weights), batch_size "
            "(frames per MACE call), compute_stress (bool), cutoff (A) and kspace_accuracy (Ewald) for classical "
            f"potentials. Defaults: {LABEL_PARAMETERS}.",
        )
        spec.inputs.validator = _validate_inputs
        options = spec.inputs["metadata"]["options"]
        options["parser_name"].default = "lifdiff.label"
        options["resources"].default = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
        options["withmpi"].default = False
        options["input_filename"].default = INPUT_FILE
        options["output_filename"].default = "label.out"

        spec.output("dataset", valid_type=DatasetData, help="The frames with the potential's labels.")
        spec.output("results", valid_type=orm.Dict, help="The program's summary: timing, model, versions.")
        spec.default_output_node = "results"

        spec.exit_code(
            300,
            "ERROR_MISSING_OUTPUT",
            message="The labelling program left no usable output: {detail}",
            invalidates_cache=True,
        )
        spec.exit_code(302, "ERROR_INVALID_INPUT", message="The labelling program refused its input: {message}")
        spec.exit_code(
            303,
            "ERROR_CUDA_UNAVAILABLE",
            message="CUDA was requested but is not available: {message}",
            invalidates_cache=True,
        )
        spec.exit_code(310, "ERROR_ENGINE_FAILED", message="The engine (LAMMPS) failed: {message}")
        spec.exit_code(320, "ERROR_NON_FINITE_LABELS", message="Some frames got non-finite labels: {message}")

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        parameters = dict(LABEL_PARAMETERS)
        # A computer made by `setup slurm --device cuda` labels on its GPU unless the inputs name a device.
        parameters["device"] = computer_device(self.inputs.code.computer)
        if "parameters" in self.inputs:
            parameters.update(self.inputs.parameters.get_dict())
        potential = self.inputs.potential
        frames = self.inputs.frames

        model, local_copy_list = runner_model(potential, folder, classical_settings=parameters)
        if potential.kind == "universal":
            model["kwargs"]["device"] = parameters["device"]  # the ASE factory puts the model on the job's device
        local_copy_list.insert(0, (frames.uuid, frames.filename, FRAMES_FILE))

        runner_input = {
            "model": model,
            "frames": FRAMES_FILE,
            "output": OUTPUT_FILE,
            "device": parameters["device"],
            "dtype": parameters["dtype"],
            "batch_size": int(parameters["batch_size"]),
            "compute_stress": bool(parameters["compute_stress"]),
        }
        with folder.open(INPUT_FILE, "w") as handle:
            json.dump(runner_input, handle, indent=1)

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = [INPUT_FILE]
        codeinfo.stdout_name = self.inputs.metadata.options.output_filename
        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = local_copy_list
        calcinfo.remote_copy_list = []
        calcinfo.retrieve_list = [SUMMARY_FILE, OUTPUT_FILE, self.inputs.metadata.options.output_filename]
        return calcinfo
