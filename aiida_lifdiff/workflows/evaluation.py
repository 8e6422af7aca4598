"""``EvaluationWorkChain``: how well a potential reproduces a labelled dataset (errors + parity plot).

Labels the dataset's frames with the potential (``lifdiff.label``), then compares the predictions with
the dataset's own labels (``compare_labels``), so the errors, the plot and the predictions all link back
to the potential and the reference data in the provenance graph.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import ToContext, WorkChain

from aiida_lifdiff.calculations.label import LifdiffLabelCalculation, species_problem
from aiida_lifdiff.codes import with_computer_options
from aiida_lifdiff.data.dataset import DatasetData, unlabelled_problem
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.workflows.functions.evaluation import compare_labels


def validate_evaluation_inputs(inputs: dict, _) -> str | None:
    """Refuse before anything runs: an unlabelled reference, or a potential that lacks some of its elements."""
    potential, dataset = inputs.get("potential"), inputs.get("dataset")
    message = unlabelled_problem(dataset, "the reference of an evaluation needs energy and forces")
    if message:
        return message
    if potential is not None and dataset is not None:
        return species_problem(potential, dataset)
    return None


class EvaluationWorkChain(WorkChain):
    """Errors of a potential's energies, forces and stresses on a labelled reference dataset."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("potential", valid_type=PotentialData, help="The potential to evaluate (any kind).")
        spec.input(
            "dataset",
            valid_type=DatasetData,
            help="The reference: labelled frames (energy and forces, stress optional) the potential is compared with.",
        )
        spec.expose_inputs(
            LifdiffLabelCalculation,
            namespace="label",
            exclude=("potential", "frames"),
            namespace_options={"help": "Inputs of the labelling calculation: code, parameters, metadata."},
        )
        spec.inputs.validator = validate_evaluation_inputs
        spec.outline(cls.run_label, cls.inspect_label, cls.compare, cls.results)
        spec.output("errors", valid_type=orm.Dict, help="Energy/force/stress errors (meV/atom, meV/A, meV/A^3).")
        spec.output("parity_plot", valid_type=orm.SinglefileData, help="PNG: energy and force parity panels.")
        spec.output("predictions", valid_type=DatasetData, help="The dataset's frames labelled by the potential.")
        spec.exit_code(401, "ERROR_LABEL_FAILED", message="The labelling calculation failed: {message}")

    def run_label(self):
        inputs = self.exposed_inputs(LifdiffLabelCalculation, namespace="label")
        inputs["potential"] = self.inputs.potential
        inputs["frames"] = self.inputs.dataset
        inputs.setdefault("metadata", {})["call_link_label"] = "label"
        node = self.submit(LifdiffLabelCalculation, **with_computer_options(inputs))
        self.report(f"labelling {self.inputs.dataset.n_frames} frames with {node.process_label}<{node.pk}>")
        return ToContext(label=node)

    def inspect_label(self):
        node = self.ctx.label
        if not node.is_finished_ok:
            message = f"{node.process_label}<{node.pk}> exit status {node.exit_status}: {node.exit_message}"
            self.report(message)
            return self.exit_codes.ERROR_LABEL_FAILED.format(message=message)
        return None

    def compare(self):
        predictions = self.ctx.label.outputs.dataset
        self.ctx.comparison = compare_labels(
            reference=self.inputs.dataset,
            predicted=predictions,
            metadata={"call_link_label": "compare_labels"},
        )

    def results(self):
        errors = self.ctx.comparison["errors"]
        self.out("errors", errors)
        self.out("parity_plot", self.ctx.comparison["parity_plot"])
        self.out("predictions", self.ctx.label.outputs.dataset)
        self.report(
            f"energy RMSE {errors['energy_rmse_meV_per_atom']:.3g} meV/atom, "
            f"force RMSE {errors['force_rmse_meV_per_A']:.3g} meV/A over {errors['n_frames']} frames"
        )
