"""``lifdiff.barrier``: the ``lifdiff-barrier`` program (lattice E(V) and NEB migration barriers) as a CalcJob."""

from __future__ import annotations

import copy
import json

from aiida import orm
from aiida.common.datastructures import CalcInfo, CodeInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJob

from aiida_lifdiff.calculations.model_spec import check_code_environment, runner_model
from aiida_lifdiff.codes import computer_device
from aiida_lifdiff.data.potential import PotentialData

INPUT_FILE = "input.json"
SUMMARY_FILE = "summary.json"
START_FILE = "start.extxyz"

#: Program settings the CalcJob passes through (see :mod:`aiida_lifdiff.runner.barrier` for their defaults),
#: plus ``cutoff``/``kspace_accuracy`` of a classical potential's LAMMPS lines.
PROGRAM_KEYS = ("lattice", "repeat", "paths", "start_site", "neb", "device", "dtype")
CLASSICAL_KEYS = ("cutoff", "kspace_accuracy")


def validate_barrier_parameters(parameters: dict) -> str | None:
    """A message if ``parameters`` cannot define a ``lifdiff-barrier`` run, else None (before anything is stored).

    The program's own input check does the work, with a stand-in model, so the CalcJob and the program can
    never disagree about what is valid.
    """
    from aiida_lifdiff.runner.barrier import parse_input
    from aiida_lifdiff.runner.io import InputError

    if not isinstance(parameters, dict):
        return f"barrier parameters must be a mapping, got {parameters!r}"
    unknown = sorted(set(parameters) - set(PROGRAM_KEYS) - set(CLASSICAL_KEYS))
    if unknown:
        return f"unknown barrier parameters {unknown}; allowed: {sorted(PROGRAM_KEYS + CLASSICAL_KEYS)}"
    for key in CLASSICAL_KEYS:
        value = parameters.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            return f"{key} must be a positive number, got {value!r}"
    accuracy = parameters.get("kspace_accuracy")
    if accuracy is not None and not accuracy < 1:
        return f"kspace_accuracy must be a relative accuracy in (0, 1), got {accuracy!r}"
    document = {key: parameters[key] for key in PROGRAM_KEYS if key in parameters}
    document["model"] = {"kind": "ase", "factory": "lifdiff.check:only"}
    try:
        parse_input(document)
    except InputError as exception:
        return str(exception)
    return None


def _validate_parameters(value: orm.Dict, _) -> str | None:
    return validate_barrier_parameters(value.get_dict())


def _validate_inputs(inputs: dict, _) -> str | None:
    potential, code = inputs.get("potential"), inputs.get("code")
    if potential is not None and code is not None:
        message = check_code_environment(potential, code)
        if message:
            return message
    if potential is not None and not potential.covers(("Li", "F")):
        return f"the potential covers {potential.species}; LiF needs Li and F"
    return None


class LifdiffBarrierCalculation(CalcJob):
    """Relaxed lattice constant and climbing-image NEB barriers of interstitial Li in LiF with one potential."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            "potential",
            valid_type=PotentialData,
            help="The potential: classical (LAMMPS through ASE), MACE, DeePMD or universal.",
        )
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            required=False,
            validator=_validate_parameters,
            help="lifdiff-barrier settings: lattice {relax, a0_A, strain, n_points}, repeat, paths (a list; [] = "
            "lattice only), start_site, neb {n_images, fmax_eV_A, max_steps, climb, relax_fmax_eV_A, "
            "relax_max_steps}, device, dtype; cutoff and kspace_accuracy for classical potentials.",
        )
        spec.inputs.validator = _validate_inputs
        options = spec.inputs["metadata"]["options"]
        options["parser_name"].default = "lifdiff.barrier"
        options["resources"].default = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
        options["withmpi"].default = False
        options["input_filename"].default = INPUT_FILE
        options["output_filename"].default = "barrier.out"

        spec.output("results", valid_type=orm.Dict, help="The program's summary without the band profiles.")
        spec.output(
            "profiles",
            valid_type=orm.ArrayData,
            required=False,
            help="Per path: <path>_reaction_coordinate_A and <path>_energies_eV (relative to the initial end point).",
        )
        spec.output(
            "eos",
            valid_type=orm.ArrayData,
            required=False,
            help="E(V) of the perfect crystal: lattice_constants_A, volumes_A3, energies_eV.",
        )
        spec.output(
            "start_structure", valid_type=orm.StructureData, required=False, help="The relaxed start (supercell)."
        )
        spec.default_output_node = "results"

        spec.exit_code(
            300,
            "ERROR_MISSING_OUTPUT",
            message="The barrier program left no usable output: {detail}",
            invalidates_cache=True,
        )
        spec.exit_code(302, "ERROR_INVALID_INPUT", message="The barrier program refused its input: {message}")
        spec.exit_code(
            303,
            "ERROR_CUDA_UNAVAILABLE",
            message="CUDA was requested but is not available: {message}",
            invalidates_cache=True,
        )
        spec.exit_code(310, "ERROR_ENGINE_FAILED", message="The calculator failed: {message}")
        spec.exit_code(
            340,
            "ERROR_NEB_NOT_CONVERGED",
            message="Not converged within the step limit (the bands are in the outputs): {message}",
        )
        spec.exit_code(
            341,
            "ERROR_ENDPOINT_CHANGED",
            message="An end point relaxed into something other than the requested configuration: {message}",
        )

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        parameters = copy.deepcopy(self.inputs.parameters.get_dict()) if "parameters" in self.inputs else {}
        potential = self.inputs.potential
        classical = {key: parameters[key] for key in CLASSICAL_KEYS if key in parameters}
        model, local_copy_list = runner_model(potential, folder, classical_settings=classical)
        # A computer made by `setup slurm --device cuda` computes on its GPU unless the inputs name a device.
        device = parameters.get("device") or computer_device(self.inputs.code.computer)
        if potential.kind == "universal":
            model["kwargs"]["device"] = device  # the ASE factory puts the model on the job's device
        document = {key: parameters[key] for key in PROGRAM_KEYS if key in parameters}
        document["model"] = model
        if potential.kind != "classical":
            document["device"] = device
        with folder.open(INPUT_FILE, "w") as handle:
            json.dump(document, handle, indent=1)

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = [INPUT_FILE]
        codeinfo.stdout_name = self.inputs.metadata.options.output_filename
        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = local_copy_list
        calcinfo.remote_copy_list = []
        calcinfo.retrieve_list = [SUMMARY_FILE, START_FILE, "path-*.extxyz", "endpoint-*.extxyz", codeinfo.stdout_name]
        return calcinfo
