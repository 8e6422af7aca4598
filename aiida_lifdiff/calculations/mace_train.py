"""``lifdiff.mace_train``: mace-torch's ``mace_run_train`` (from scratch, naive or multihead fine-tuning) as a CalcJob.

Everything the run reads is staged from nodes: the data sets (extxyz of :class:`DatasetData`), the foundation
model (:class:`PotentialData` of kind mace) and the replay set for multihead fine-tuning. Settings that would make
mace-torch download something at run time (a foundation or replay set by name) or that conflict with the inputs
are refused by the input validators, i.e. before a node is stored or a job submitted; see
:func:`aiida_lifdiff.training.mace.validate_mace_settings`.
"""

from __future__ import annotations

from aiida import orm
from aiida.common.datastructures import CalcInfo, CodeInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJob

from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.training.mace import (
    MODES,
    RUN_NAME,
    check_flags,
    mace_train_arguments,
    output_files,
    training_flags,
    validate_mace_settings,
)

#: Names of the staged files in the working directory.
TRAIN_FILE = "train.extxyz"
VALID_FILE = "valid.extxyz"
TEST_FILE = "test.extxyz"
REPLAY_FILE = "replay.extxyz"
# Not a name mace-torch resolves (small, medium, ...): a local file is loaded with torch.load.
FOUNDATION_FILE = "foundation.model"
STDOUT_FILE = "mace.out"
STDERR_FILE = "mace.err"

#: The labels mace needs in every frame of a data set it trains or tests on.
REQUIRED_LABELS = ("energy", "forces")


def _validate_mode(value: orm.Str, _) -> str | None:
    if value.value not in MODES:
        return f"mode must be one of {', '.join(MODES)}, got {value.value!r}"
    return None


def _validate_foundation(value: PotentialData, _) -> str | None:
    if value.kind != "mace":
        return f"the foundation must be a MACE model, got a {value.kind!r} potential"
    return None


def _validate_dataset(value: DatasetData, _) -> str | None:
    if value.n_frames < 1:
        return "the data set holds no frames"
    missing = [label for label in REQUIRED_LABELS if label not in value.labels]
    if missing:
        return f"every frame needs {', '.join(REQUIRED_LABELS)} labels; missing in some frames: {', '.join(missing)}"
    return None


def _validate_parameters(value: orm.Dict, _) -> str | None:
    # The checks that need no other port; those against the mode and the inputs are in _validate_inputs.
    return check_flags(value.get_dict())


def _validate_inputs(inputs: dict, namespace) -> str | None:
    """Cross-port checks: the flags against the mode and the foundation / replay inputs that are present."""
    # A wrapping WorkChain may expose this namespace without some ports; it validates them itself.
    if "mode" not in namespace or "parameters" not in namespace:
        return None
    mode = inputs.get("mode")
    if mode is None:
        return None
    parameters = inputs.get("parameters")
    flags = parameters.get_dict() if parameters is not None else {}
    species = set()
    for name in ("train", "valid", "test", "replay"):
        if name in inputs:
            species |= set(inputs[name].species)
    message = validate_mace_settings(
        flags, has_foundation="foundation" in inputs, has_replay="replay" in inputs, mode=mode.value, species=species
    )
    if message:
        return message
    foundation = inputs.get("foundation")
    if foundation is not None:
        uncovered = sorted(species - set(foundation.species))
        if uncovered:
            return f"the foundation model {foundation.label!r} does not cover {', '.join(uncovered)}"
    return None


class LifdiffMaceTrainCalculation(CalcJob):
    """Train a MACE model with ``mace_run_train``: from scratch, or fine-tuning a local foundation model."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            "train", valid_type=DatasetData, validator=_validate_dataset, help="Training set (energy and forces)."
        )
        spec.input(
            "valid",
            valid_type=DatasetData,
            required=False,
            validator=_validate_dataset,
            help="Validation set; without it mace holds out `valid_fraction` of the training set.",
        )
        spec.input(
            "test",
            valid_type=DatasetData,
            required=False,
            validator=_validate_dataset,
            help="Test set: mace reports the final model's errors on it (per config_type).",
        )
        spec.input(
            "foundation",
            valid_type=PotentialData,
            required=False,
            validator=_validate_foundation,
            help="MACE model to fine-tune (a local file in the node: nothing is downloaded). Needed by the "
            "fine-tuning modes, refused in mode scratch.",
        )
        spec.input(
            "replay",
            valid_type=DatasetData,
            required=False,
            validator=_validate_dataset,
            help="Replay set of the foundation's own data for multihead fine-tuning (passed as --pt_train_file).",
        )
        spec.input(
            "mode",
            valid_type=orm.Str,
            validator=_validate_mode,
            help="scratch (a new model), naive_finetune (continue training the foundation on the new data) or "
            "multihead_finetune (train a new head while replaying the foundation's data in another).",
        )
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            required=False,
            validator=_validate_parameters,
            help="mace_run_train flags without '--' (e.g. max_num_epochs, lr, device, default_dtype, E0s), on top "
            "of aiida_lifdiff.training.mace.DEFAULT_FLAGS. File, folder and download flags are refused.",
        )
        spec.inputs.validator = _validate_inputs
        options = spec.inputs["metadata"]["options"]
        options["parser_name"].default = "lifdiff.mace_train"
        options["resources"].default = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
        options["withmpi"].default = False
        options["output_filename"].default = STDOUT_FILE

        spec.output("model", valid_type=PotentialData, help="The trained MACE model with its lineage.")
        spec.output(
            "learning_curves",
            valid_type=orm.ArrayData,
            required=False,
            help="Validation metrics per evaluated epoch (and the mean training loss per epoch).",
        )
        spec.output(
            "errors",
            valid_type=orm.Dict,
            required=False,
            help="Final train/valid/test errors of the saved model (meV units) and the training wall time.",
        )
        spec.default_output_node = "errors"

        spec.exit_code(
            300, "ERROR_MISSING_MODEL", message="mace_run_train wrote no model file: {detail}", invalidates_cache=True
        )
        spec.exit_code(301, "ERROR_OUTPUT_PARSING", message="The outputs of mace_run_train could not be read: {detail}")
        spec.exit_code(302, "ERROR_INVALID_INPUT", message="mace_run_train refused its arguments: {detail}")
        spec.exit_code(310, "ERROR_TRAINING_DIVERGED", message="The training diverged (NaN or infinite loss): {detail}")
        spec.exit_code(320, "ERROR_INVALID_MODEL", message="The model file could not be loaded: {detail}")
        spec.exit_code(
            400,
            "ERROR_OUT_OF_WALLTIME",
            message="The job ran out of walltime before mace_run_train saved a model (last epoch: {epoch}); "
            "the checkpoints are in the remote folder.",
            invalidates_cache=True,
        )

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        mode = self.inputs.mode.value
        parameters = self.inputs.parameters.get_dict() if "parameters" in self.inputs else {}
        flags = training_flags(parameters, mode)

        local_copy_list = []
        files = {}
        for port, flag, filename in (
            ("train", "train_file", TRAIN_FILE),
            ("valid", "valid_file", VALID_FILE),
            ("test", "test_file", TEST_FILE),
            ("replay", "pt_train_file", REPLAY_FILE),
            ("foundation", "foundation_model", FOUNDATION_FILE),
        ):
            if port in self.inputs:
                node = self.inputs[port]
                local_copy_list.append((node.uuid, node.filename, filename))
                files[flag] = filename

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = mace_train_arguments(flags, files, name=RUN_NAME)
        codeinfo.stdout_name = self.inputs.metadata.options.output_filename
        codeinfo.stderr_name = STDERR_FILE

        outputs = output_files(flags, name=RUN_NAME)
        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = local_copy_list
        calcinfo.remote_copy_list = []
        # The log and the curves stay in the retrieved folder; the model only passes through: the parser stores it
        # once, as the PotentialData output.
        calcinfo.retrieve_list = [STDERR_FILE, outputs["log"], outputs["results"]]
        calcinfo.retrieve_temporary_list = [outputs["model"], outputs["model_stagetwo"]]
        return calcinfo
