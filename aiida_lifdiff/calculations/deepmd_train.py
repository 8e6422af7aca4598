"""``lifdiff.deepmd_train``: ``dp --tf train`` + ``dp --tf freeze`` (+ ``dp --tf test``) of an se_e2_a model.

One job, one code (deepmd-kit's ``dp``), up to three commands in series. The TensorFlow backend is named
explicitly: ``dp`` defaults to it today, and deepmd-kit's PyTorch backend does not load with the torch of this
environment (see DESIGN.md section 5). The datasets are written as ``deepmd/npy`` systems into the job folder
but kept out of the node's repository: they are stored once, as the DatasetData inputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiida import orm
from aiida.common.datastructures import CalcInfo, CodeInfo, CodeRunMode
from aiida.common.folders import Folder
from aiida.engine import CalcJob

from aiida_lifdiff.data.dataset import DatasetData, unlabelled_problem
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.training.deepmd import (
    LCURVE_FILE,
    check_species,
    deepmd_input,
    neighbour_sel,
    validate_deepmd_settings,
    with_defaults,
)

INPUT_FILE = "input.json"
MODEL_FILE = "model.pb"
TRAIN_LOG = "train.out"
FREEZE_LOG = "freeze.out"
TEST_LOG = "test.out"
TEST_DETAIL = "test_detail"
#: Job-folder sub-directories of the exported datasets (excluded from the node's repository).
DATA_FOLDERS = {"train": "train", "valid": "valid", "test": "test"}


def _validate_parameters(value: orm.Dict | None, _) -> str | None:
    if value is None:
        return None
    return validate_deepmd_settings(value.get_dict())


def _validate_dataset(value: DatasetData | None, _) -> str | None:
    return unlabelled_problem(value, "dp can only train on labelled frames")


def resolved_type_map(inputs: Mapping[str, Any]) -> list[str]:
    """The model's types: ``type_map`` from the parameters, else the sorted species of all datasets."""
    settings = inputs["parameters"].get_dict() if "parameters" in inputs else {}
    if settings.get("type_map"):
        return list(settings["type_map"])
    species: set[str] = set()
    for name in ("train", "valid", "test"):
        if name in inputs:
            species.update(inputs[name].species)
    return sorted(species)


def _validate_inputs(inputs, _) -> str | None:
    """Checks that need several ports: every dataset's species are model types, sel/atom_ener fit the types."""
    if "train" not in inputs:
        return None
    settings = inputs["parameters"].get_dict() if "parameters" in inputs else {}
    if validate_deepmd_settings(settings):
        return None  # reported by the parameters port itself
    type_map = resolved_type_map(inputs)
    for name in ("train", "valid", "test"):
        if name in inputs:
            missing = sorted(set(inputs[name].species) - set(type_map))
            if missing:
                return f"the {name} dataset holds {missing}, which are not in the type_map {type_map}"
    return check_species(settings, type_map)


class LifdiffDeepmdTrainCalculation(CalcJob):
    """Train a DeePMD-kit se_e2_a model on a DatasetData, freeze it, and test it on a held-out set."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            "train",
            valid_type=DatasetData,
            validator=_validate_dataset,
            help="Training frames (energies and forces, optionally stress) in eV, eV/A, eV/A^3.",
        )
        spec.input(
            "valid",
            valid_type=DatasetData,
            required=False,
            validator=_validate_dataset,
            help="Validation frames for the learning curve; without them the training set is reused (and reported), "
            "so rmse_*_val in lcurve.out is then a training error.",
        )
        spec.input(
            "test",
            valid_type=DatasetData,
            required=False,
            validator=_validate_dataset,
            help="Held-out frames: `dp test` evaluates the frozen model on them (errors in the `errors` output).",
        )
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            required=False,
            validator=_validate_parameters,
            help="DeePMD settings (aiida_lifdiff.training.deepmd.DEFAULT_SETTINGS, missing keys take the defaults): "
            "type_map, rcut, rcut_smth, sel, sel_margin, neuron, axis_neuron, fitting_neuron, atom_ener, precision, "
            "start_lr, stop_lr, decay_steps, start/limit_pref_e/f/v, numb_steps, batch_size, valid_batches, seed, "
            "disp_freq, save_freq.",
        )
        spec.inputs["code"].help = (
            "deepmd-kit's `dp` executable (aiida_lifdiff.codes.ensure_dp_code), run as `dp --tf train`, "
            "`dp --tf freeze` and `dp --tf test`."
        )
        spec.inputs.validator = _validate_inputs
        options = spec.inputs["metadata"]["options"]
        options["parser_name"].default = "lifdiff.deepmd_train"
        options["resources"].default = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
        options["withmpi"].default = False
        options["input_filename"].default = INPUT_FILE
        options["output_filename"].default = TRAIN_LOG

        spec.output(
            "model",
            valid_type=PotentialData,
            required=False,
            help="The frozen model (PotentialData, kind deepmd); lineage: datasets, settings, deepmd-kit version.",
        )
        spec.output("lcurve", valid_type=orm.ArrayData, required=False, help="The columns of dp's lcurve.out.")
        spec.output(
            "errors",
            valid_type=orm.Dict,
            required=False,
            help="Test errors from dp test (meV/atom, meV/A), the final lcurve errors and the training wall time.",
        )
        spec.default_output_node = "errors"

        spec.exit_code(
            300, "ERROR_MISSING_OUTPUT", message="dp wrote no frozen model: {detail}", invalidates_cache=True
        )
        spec.exit_code(
            301, "ERROR_TEST_FAILED", message="The model was trained and frozen, but dp test gave no errors: {detail}"
        )
        spec.exit_code(302, "ERROR_INVALID_INPUT", message="dp refused its input: {message}")
        spec.exit_code(310, "ERROR_TRAINING_DIVERGED", message="The training diverged: {reason}")
        spec.exit_code(
            400,
            "ERROR_OUT_OF_WALLTIME",
            message="The job hit its wall time at training step {step} of {target}; the checkpoint (model.ckpt*) "
            "is in the remote folder.",
            invalidates_cache=True,
        )

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        settings = with_defaults(self.inputs.parameters.get_dict() if "parameters" in self.inputs else {})
        type_map = resolved_type_map(self.inputs)
        datasets = {name: self.inputs[name] for name in ("train", "valid", "test") if name in self.inputs}

        systems: dict[str, list[str]] = {}
        for name, dataset in datasets.items():
            subfolder = folder.get_subfolder(DATA_FOLDERS[name], create=True)
            paths = dataset.write_deepmd(subfolder.abspath, fmt="deepmd/npy", type_map=type_map)
            # Paths relative to the job folder: the input must work wherever the folder is copied to.
            systems[name] = [f"{DATA_FOLDERS[name]}/{path.name}" for path in paths]
        if "valid" not in systems:
            systems["valid"] = systems["train"]
            self.report(
                "no validation set given: the training set is reused, so lcurve's rmse_*_val are training errors"
            )

        if settings["sel"] == "auto":
            # Every frame the model will see in this job, so no atom has more neighbours than sel allows.
            frames = [frame for dataset in datasets.values() for frame in dataset.get_frames()]
            sel = neighbour_sel(frames, settings["rcut"], type_map, margin=settings["sel_margin"])
        else:
            sel = list(settings["sel"])
        with folder.open(INPUT_FILE, "w") as handle:
            json.dump(deepmd_input(settings, type_map, systems["train"], systems["valid"], sel), handle, indent=1)

        commands = [
            (["--tf", "train", INPUT_FILE], TRAIN_LOG),
            (["--tf", "freeze", "-o", MODEL_FILE], FREEZE_LOG),
        ]
        if "test" in systems:
            commands.append(
                (["--tf", "test", "-m", MODEL_FILE, "-s", DATA_FOLDERS["test"], "-d", TEST_DETAIL], TEST_LOG)
            )
        calcinfo = CalcInfo()
        calcinfo.codes_info = []
        for arguments, log in commands:
            codeinfo = CodeInfo()
            codeinfo.code_uuid = self.inputs.code.uuid
            codeinfo.cmdline_params = arguments
            codeinfo.stdout_name = log
            # dp logs through Python's logging (stderr) and TensorFlow writes there too: one file per command.
            codeinfo.join_files = True
            calcinfo.codes_info.append(codeinfo)
        # Each step needs the previous one's files; a failed step leaves the next without them, which the
        # parser reports from the logs.
        calcinfo.codes_run_mode = CodeRunMode.SERIAL
        calcinfo.local_copy_list = []
        calcinfo.remote_copy_list = []
        calcinfo.provenance_exclude_list = list(DATA_FOLDERS[name] for name in datasets)
        calcinfo.retrieve_list = [LCURVE_FILE, MODEL_FILE, TRAIN_LOG, FREEZE_LOG, TEST_LOG, f"{TEST_DETAIL}.*"]
        return calcinfo
