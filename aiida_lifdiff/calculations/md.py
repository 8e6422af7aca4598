"""``lifdiff.md``: the ``lifdiff-md`` runner (batched NVT MD with MACE or any ASE calculator) as a CalcJob."""

from __future__ import annotations

import io
import json

from aiida import orm
from aiida.common.datastructures import CalcInfo, CodeInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJob

from aiida_lifdiff.calculations.model_spec import check_code_environment, runner_model
from aiida_lifdiff.codes import computer_device
from aiida_lifdiff.data.potential import PotentialData

INPUT_FILE = "input.json"
STRUCTURE_FILE = "structure.extxyz"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.npz"
PARENT_CHECKPOINT_FILE = "parent_checkpoint.npz"
MEMBER_FILES = ("trajectory.npz", "thermo.dat", "status.json")

#: Keys of ``parameters`` with defaults (None = unset, REQUIRED_RUNNER_PARAMETERS have no default).
RUNNER_PARAMETERS = {
    "timestep_fs": None,
    "n_steps": None,
    "equilibration_steps": 0,
    "dump_stride": None,
    "thermo_stride": None,
    "thermostat_damping_fs": 100.0,
    "checkpoint_stride": None,
    "timeout_s": None,
    "device": "cpu",
    "dtype": "float64",
    "batch_size": None,
    "members": None,
}
REQUIRED_RUNNER_PARAMETERS = ("timestep_fs", "n_steps", "dump_stride", "thermo_stride", "members")


def validate_runner_parameters(parameters: dict) -> str | None:
    """A message if ``parameters`` cannot define a runner job, else None (checked before submission)."""
    unknown = set(parameters) - set(RUNNER_PARAMETERS)
    if unknown:
        return f"unknown runner parameters {sorted(unknown)}; allowed: {sorted(RUNNER_PARAMETERS)}"
    missing = [k for k in REQUIRED_RUNNER_PARAMETERS if k not in parameters]
    if missing:
        return f"missing runner parameters {missing}"
    if parameters.get("device", "cpu") not in ("cpu", "cuda"):
        return f"device must be 'cpu' or 'cuda', got {parameters['device']!r}"
    if parameters.get("dtype", "float64") not in ("float32", "float64"):
        return f"dtype must be 'float32' or 'float64', got {parameters['dtype']!r}"
    if float(parameters["timestep_fs"]) <= 0:
        return f"timestep_fs must be > 0, got {parameters['timestep_fs']}"
    for key in ("n_steps", "dump_stride", "thermo_stride"):
        if int(parameters[key]) < 1:
            return f"{key} must be >= 1, got {parameters[key]}"
    members = parameters["members"]
    if not members:
        return "members must list at least one {name, temperature_K, seed}"
    names = [m.get("name") for m in members]
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n.isidentifier() for n in names):
        return f"member names must be distinct identifiers, got {names}"
    for member in members:
        if set(member) != {"name", "temperature_K", "seed"}:
            return f"each member needs exactly name, temperature_K and seed, got {sorted(member)}"
        if float(member["temperature_K"]) <= 0:
            return f"member {member['name']}: temperature_K must be > 0"
    return None


def _validate_parameters(value: orm.Dict, _) -> str | None:
    return validate_runner_parameters(value.get_dict())


def _validate_potential(value: PotentialData, _) -> str | None:
    if value.kind not in ("mace", "deepmd", "universal"):
        return f"lifdiff.md runs MACE, DeePMD or universal models, not a {value.kind!r} potential (use LAMMPS for that)"
    return None


def _validate_inputs(inputs: dict, _) -> str | None:
    """A potential whose package the code's environment lacks (SevenNet on a main-venv code) is refused here."""
    potential, code = inputs.get("potential"), inputs.get("code")
    if potential is None or code is None:
        return None
    return check_code_environment(potential, code)


class LifdiffMdCalculation(CalcJob):
    """NVT MD of a batch of members (temperature, seed) from one structure with one ML potential."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("structure", valid_type=orm.StructureData, help="Starting structure of every member.")
        spec.input(
            "potential",
            valid_type=PotentialData,
            validator=_validate_potential,
            help="MACE, DeePMD or universal model.",
        )
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            validator=_validate_parameters,
            help="Runner settings: timestep_fs, n_steps, equilibration_steps, dump_stride, thermo_stride, "
            "thermostat_damping_fs, checkpoint_stride, timeout_s, device, dtype, batch_size and the members "
            "[{name, temperature_K, seed}].",
        )
        spec.input(
            "parent_folder",
            valid_type=orm.RemoteData,
            required=False,
            help="Remote folder of a run stopped on its timer; its checkpoint is continued to the same end step.",
        )
        spec.inputs.validator = _validate_inputs
        options = spec.inputs["metadata"]["options"]
        options["parser_name"].default = "lifdiff.md"
        options["resources"].default = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
        options["withmpi"].default = False
        options["input_filename"].default = INPUT_FILE
        options["output_filename"].default = "runner.out"

        spec.output_namespace(
            "trajectories", valid_type=orm.TrajectoryData, dynamic=True, help="Unwrapped trajectory per member."
        )
        spec.output_namespace("thermo", valid_type=orm.ArrayData, dynamic=True, help="Thermo log per member.")
        spec.output("results", valid_type=orm.Dict, help="Runner summary: statuses, throughput, versions.")
        spec.default_output_node = "results"

        spec.exit_code(
            300, "ERROR_MISSING_OUTPUT", message="The runner wrote no summary: {detail}", invalidates_cache=True
        )
        spec.exit_code(302, "ERROR_INVALID_INPUT", message="The runner refused its input: {message}")
        spec.exit_code(
            303,
            "ERROR_CUDA_UNAVAILABLE",
            message="CUDA was requested but is not available: {message}",
            invalidates_cache=True,
        )
        spec.exit_code(
            320,
            "ERROR_MEMBERS_FAILED",
            message="{count} member(s) failed (the others finished and are in the outputs): {details}",
        )
        spec.exit_code(
            400,
            "ERROR_OUT_OF_WALLTIME",
            message="The runner stopped on its timer at step {step} of {target}; a checkpoint was written.",
            invalidates_cache=True,
        )

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        parameters = {k: v for k, v in RUNNER_PARAMETERS.items() if v is not None}
        # A computer made by `setup slurm --device cuda` runs MD on its GPU unless the inputs name a device.
        parameters["device"] = computer_device(self.inputs.code.computer)
        parameters.update(self.inputs.parameters.get_dict())
        potential = self.inputs.potential

        atoms = self.inputs.structure.get_ase()
        buffer = io.StringIO()
        atoms.write(buffer, format="extxyz")
        with folder.open(STRUCTURE_FILE, "w") as handle:
            handle.write(buffer.getvalue())

        model, local_copy_list = runner_model(potential, folder)
        model.pop("species")  # lifdiff-md checks species against the model itself
        if potential.kind == "universal":
            model["kwargs"]["device"] = parameters["device"]  # the ASE factory puts the model on the job's device
        runner_input = {
            "model": model,
            "device": parameters["device"],
            "dtype": parameters["dtype"],
            "timestep_fs": float(parameters["timestep_fs"]),
            "n_steps": int(parameters["n_steps"]),
            "equilibration_steps": int(parameters["equilibration_steps"]),
            "dump_stride": int(parameters["dump_stride"]),
            "thermo_stride": int(parameters["thermo_stride"]),
            "thermostat": {"kind": "csvr", "tau_fs": float(parameters["thermostat_damping_fs"])},
            "checkpoint_stride": int(parameters.get("checkpoint_stride") or parameters["n_steps"]),
            "timeout_s": parameters.get("timeout_s"),
            "batch_size": parameters.get("batch_size"),
            "members": [
                {
                    "name": m["name"],
                    "structure": STRUCTURE_FILE,
                    "temperature_K": float(m["temperature_K"]),
                    "seed": int(m["seed"]),
                }
                for m in parameters["members"]
            ],
        }
        calcinfo = CalcInfo()
        calcinfo.remote_copy_list = []
        if "parent_folder" in self.inputs:
            parent = self.inputs.parent_folder
            runner_input["restart"] = PARENT_CHECKPOINT_FILE
            calcinfo.remote_copy_list.append(
                (
                    parent.computer.uuid,
                    f"{parent.get_remote_path().rstrip('/')}/{CHECKPOINT_FILE}",
                    PARENT_CHECKPOINT_FILE,
                )
            )
        with folder.open(INPUT_FILE, "w") as handle:
            json.dump(runner_input, handle, indent=1)

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = [INPUT_FILE]
        codeinfo.stdout_name = self.inputs.metadata.options.output_filename
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = local_copy_list
        calcinfo.retrieve_list = [SUMMARY_FILE, self.inputs.metadata.options.output_filename] + [
            # (path, target, depth): keep the member folder in the retrieved node.
            (f"{m['name']}/{name}", ".", 2)
            for m in parameters["members"]
            for name in MEMBER_FILES
        ]
        return calcinfo
