"""``FineTuneWorkChain`` (MACE) and ``DeepmdTrainWorkChain``: a labelled dataset -> a model with test errors.

Both follow the same steps, so the graph reads the same for either kind of model:

1. ``split_dataset`` (calcfunction, seeded) -> train / valid / test parts;
2. the training CalcJob on train (+ valid, + test for the trainer's own report);
3. ``EvaluationWorkChain`` of the new model on the held-out test part (our own single points, the same
   procedure for every kind of model, so the numbers of a MACE and a DeePMD model compare directly);
   a fine-tuned MACE model's foundation is evaluated on the same frames, to show what fine-tuning bought.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_

from aiida_lifdiff.calculations.deepmd_train import LifdiffDeepmdTrainCalculation
from aiida_lifdiff.calculations.mace_train import LifdiffMaceTrainCalculation
from aiida_lifdiff.codes import with_computer_options
from aiida_lifdiff.data.dataset import DatasetData, unlabelled_problem
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.protocols import get_protocol_inputs
from aiida_lifdiff.workflows.evaluation import EvaluationWorkChain
from aiida_lifdiff.workflows.functions.datasets import split_dataset, validate_split

DEFAULT_SPLIT = {"train": 0.8, "valid": 0.1, "test": 0.1}


def _validate_dataset(value: DatasetData, _) -> str | None:
    return unlabelled_problem(value, "label it first (TrainingDataWorkChain)")


def _validate_split(value: orm.Dict, _) -> str | None:
    return validate_split(value.get_dict()) if value is not None else None


class _ModelTrainingWorkChain(WorkChain):
    """Split, train, evaluate: the steps both trainers share. Subclasses name the CalcJob and its namespace."""

    _calculation = None
    _namespace = ""
    _model_kind = ""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            "dataset",
            valid_type=DatasetData,
            validator=_validate_dataset,
            help="Labelled configurations; split into train/valid/test by `split` and `seed`.",
        )
        spec.input(
            "split",
            valid_type=orm.Dict,
            default=lambda: orm.Dict(DEFAULT_SPLIT),
            validator=_validate_split,
            help="Fractions {train, valid, test} of the dataset (sum 1; test may be 0 to skip evaluation).",
        )
        spec.input("seed", valid_type=orm.Int, default=lambda: orm.Int(1), help="Seed of the split permutation.")
        spec.expose_inputs(
            EvaluationWorkChain,
            namespace="evaluate",
            exclude=("potential", "dataset"),
            namespace_options={
                "required": False,
                "populate_defaults": False,
                "help": "Single-point code and options for the evaluation on the test part; absent: no evaluation.",
            },
        )
        spec.outline(
            cls.split,
            cls.train,
            cls.inspect_training,
            if_(cls.should_evaluate)(cls.evaluate, cls.inspect_evaluation),
        )
        spec.output_namespace("splits", valid_type=DatasetData, dynamic=True, help="The train/valid/test parts.")
        spec.output("model", valid_type=PotentialData, help="The trained model.")
        spec.output("training_errors", valid_type=orm.Dict, help="Errors the trainer reported (train/valid/test).")
        spec.output("test_errors", valid_type=orm.Dict, required=False, help="Our evaluation on the test part.")
        spec.output("parity_plot", valid_type=orm.SinglefileData, required=False, help="Test-set parity plot (PNG).")
        spec.exit_code(430, "ERROR_TRAINING_FAILED", message="The training calculation failed: {message}")
        spec.exit_code(431, "ERROR_EVALUATION_FAILED", message="The evaluation of {what} failed: {message}")

    @classmethod
    def _builder_from_values(cls, values: dict, code: orm.AbstractCode, dataset: DatasetData | None, evaluation_code):
        """The shared part of both protocol builders: dataset, split, seed, code, walltime, evaluation code."""
        builder = cls.get_builder()
        if dataset is not None:
            builder.dataset = dataset
        builder.split = orm.Dict(values["split"])
        builder.seed = orm.Int(values["seed"])
        namespace = builder[cls._namespace]
        namespace.code = code
        namespace.metadata.options.max_wallclock_seconds = int(values["max_wallclock_seconds"])
        if evaluation_code is not None:
            builder.evaluate.label.code = evaluation_code
        return builder

    def split(self) -> None:
        parts = split_dataset(self.inputs.dataset, self.inputs.split, self.inputs.seed)
        self.ctx.splits = parts
        for name, node in parts.items():
            self.out(f"splits.{name}", node)
        self.report(
            f"split {self.inputs.dataset.n_frames} frames: "
            + ", ".join(f"{name} {node.n_frames}" for name, node in parts.items())
        )

    def _training_inputs(self) -> AttributeDict:
        inputs = AttributeDict(self.exposed_inputs(self._calculation, self._namespace))
        inputs.train = self.ctx.splits["train"]
        for name in ("valid", "test"):
            if name in self.ctx.splits:
                inputs[name] = self.ctx.splits[name]
        return inputs

    def train(self):
        inputs = self._training_inputs()
        inputs.metadata = {**inputs.get("metadata", {}), "call_link_label": "train"}
        node = self.submit(self._calculation, **with_computer_options(inputs))
        self.report(f"training {self._model_kind} model: {node.process_label}<{node.pk}>")
        return ToContext(training=node)

    def inspect_training(self):
        node = self.ctx.training
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_TRAINING_FAILED.format(
                message=f"{node.process_label}<{node.pk}> exit {node.exit_status}: {node.exit_message}"
            )
        self.out("model", node.outputs.model)
        self.out("training_errors", node.outputs.errors)

    def should_evaluate(self) -> bool:
        return "test" in self.ctx.splits and "evaluate" in self.inputs and "label" in self.inputs.evaluate

    def _models_to_evaluate(self) -> dict[str, PotentialData]:
        return {"model": self.ctx.training.outputs.model}

    def evaluate(self):
        running = {}
        for key, potential in self._models_to_evaluate().items():
            inputs = AttributeDict(self.exposed_inputs(EvaluationWorkChain, "evaluate"))
            inputs.potential = potential
            inputs.dataset = self.ctx.splits["test"]
            inputs.metadata = {"call_link_label": f"evaluate_{key}"}
            running[f"evaluation_{key}"] = self.submit(EvaluationWorkChain, **inputs)
        return ToContext(**running)

    def inspect_evaluation(self):
        for key in self._models_to_evaluate():
            node = self.ctx[f"evaluation_{key}"]
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_EVALUATION_FAILED.format(
                    what=key, message=f"{node.process_label}<{node.pk}> exit {node.exit_status}: {node.exit_message}"
                )
        evaluation = self.ctx.evaluation_model
        self.out("test_errors", evaluation.outputs.errors)
        self.out("parity_plot", evaluation.outputs.parity_plot)
        errors = evaluation.outputs.errors.get_dict()
        self.report(
            "test errors: energy {:.2f} meV/atom, forces {:.1f} meV/A RMSE".format(
                errors.get("energy_rmse_meV_per_atom", float("nan")), errors.get("force_rmse_meV_per_A", float("nan"))
            )
        )


class FineTuneWorkChain(_ModelTrainingWorkChain):
    """A MACE model from a labelled dataset: from scratch, or fine-tuned from a foundation model."""

    _calculation = LifdiffMaceTrainCalculation
    _namespace = "mace"
    _model_kind = "MACE"

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(
            LifdiffMaceTrainCalculation,
            namespace="mace",
            exclude=("train", "valid", "test"),
            namespace_options={"help": "mace_run_train code, mode, flags, foundation model and replay set."},
        )
        spec.output(
            "foundation_test_errors",
            valid_type=orm.Dict,
            required=False,
            help="The foundation model's errors on the same test part (what fine-tuning improved on).",
        )

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        dataset: DatasetData | None,
        protocol: str | None = None,
        overrides: dict | None = None,
        foundation: PotentialData | None = None,
        evaluation_code: orm.AbstractCode | None = None,
    ):
        """A builder with the MACE settings of ``protocol`` in ``protocols/training.yaml``."""
        values = get_protocol_inputs("training", protocol, overrides)["mace"]
        builder = cls._builder_from_values(values, code, dataset, evaluation_code)
        builder.mace.mode = orm.Str(values["mode"] if foundation is None else values["finetune_mode"])
        flags = dict(values["flags"])
        if foundation is not None:
            flags.update(values.get("finetune_flags", {}))
            builder.mace.foundation = foundation
        builder.mace.parameters = orm.Dict(flags)
        return builder

    def _models_to_evaluate(self) -> dict[str, PotentialData]:
        models = super()._models_to_evaluate()
        if "foundation" in self.inputs.mace:
            models["foundation"] = self.inputs.mace.foundation
        return models

    def inspect_evaluation(self):
        result = super().inspect_evaluation()
        if result is not None:
            return result
        if "evaluation_foundation" in self.ctx:
            errors = self.ctx.evaluation_foundation.outputs.errors
            self.out("foundation_test_errors", errors)
            self.report(
                "foundation on the same test frames: forces {:.1f} meV/A RMSE".format(
                    errors.get_dict().get("force_rmse_meV_per_A", float("nan"))
                )
            )


class DeepmdTrainWorkChain(_ModelTrainingWorkChain):
    """A DeePMD model (dp train + freeze) from a labelled dataset."""

    _calculation = LifdiffDeepmdTrainCalculation
    _namespace = "deepmd"
    _model_kind = "DeePMD"

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(
            LifdiffDeepmdTrainCalculation,
            namespace="deepmd",
            exclude=("train", "valid", "test"),
            namespace_options={"help": "dp code and DeePMD training settings."},
        )

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        dataset: DatasetData | None,
        protocol: str | None = None,
        overrides: dict | None = None,
        evaluation_code: orm.AbstractCode | None = None,
    ):
        """A builder with the DeePMD settings of ``protocol`` in ``protocols/training.yaml``."""
        values = get_protocol_inputs("training", protocol, overrides)["deepmd"]
        builder = cls._builder_from_values(values, code, dataset, evaluation_code)
        builder.deepmd.parameters = orm.Dict(values["settings"])
        return builder
