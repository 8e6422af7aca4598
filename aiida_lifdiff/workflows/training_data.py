"""``TrainingDataWorkChain``: sample configurations by MD with one potential, label them with another.

One iteration is: MD with the sampler at each temperature (``MdWorkChain``, any engine) ->
``sample_frames`` (MD snapshots + rattled/strained copies) -> ``LifdiffLabelCalculation`` with the
labeller -> ``merge_datasets`` with what earlier iterations produced. In iterative mode (``iterations``
> 1 with a ``finetune`` namespace) a MACE model is fine-tuned on the data so far after each iteration
and becomes the sampler of the next one, as in the study's active-learning loop.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_, while_

from aiida_lifdiff.calculations.label import LifdiffLabelCalculation
from aiida_lifdiff.codes import with_computer_options
from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.protocols import get_protocol_inputs
from aiida_lifdiff.sampling import validate_sampling
from aiida_lifdiff.workflows.diffusion import md_parameters_from_settings
from aiida_lifdiff.workflows.finetune import FineTuneWorkChain
from aiida_lifdiff.workflows.functions.datasets import merge_datasets
from aiida_lifdiff.workflows.functions.sampling import sample_frames
from aiida_lifdiff.workflows.md import ENGINE_NAMESPACES, MdWorkChain, engine_for


def validate_training_data_inputs(inputs: dict, _) -> str | None:
    """Refuse unusable settings before anything is stored or run."""
    temperatures = inputs.get("temperatures")
    if temperatures is not None:
        values = temperatures.get_list()
        if not values or any(float(t) <= 0 for t in values):
            return f"temperatures must be a non-empty list of values > 0 K, got {values}"
    if "sampling" in inputs:
        message = validate_sampling(inputs["sampling"].get_dict())
        if message:
            return message
    if "md_settings" in inputs:
        try:
            md_parameters_from_settings(inputs["md_settings"].get_dict(), [])
        except ValueError as exception:
            return str(exception)
    structure, labeller, sampler = inputs.get("structure"), inputs.get("labeller"), inputs.get("sampler")
    if structure is not None:
        symbols = set(structure.get_symbols_set())
        for role, potential in (("labeller", labeller), ("sampler", sampler)):
            if potential is not None and not potential.covers(symbols):
                return f"the {role} covers {potential.species} but the structure has {sorted(symbols)}"
    if sampler is not None and "md_settings" in inputs:
        try:
            engine = engine_for(sampler, inputs["md_settings"].get_dict().get("engine"))
        except ValueError as exception:
            return str(exception)
        if "code" not in inputs.get("md", {}).get(ENGINE_NAMESPACES[engine], {}):
            return f"the sampler ({sampler.kind}) runs on the {engine} engine: set md.{ENGINE_NAMESPACES[engine]}.code"
    iterations = inputs.get("iterations")
    if iterations is not None and iterations.value > 1:
        if "finetune" not in inputs or "mace" not in inputs["finetune"]:
            return "iterative mode (iterations > 1) needs the `finetune` inputs (the model to sample with next)"
        if "code" not in inputs.get("md", {}).get("lifdiff_md", {}):
            return "iterative mode samples with the fine-tuned MACE model: set md.lifdiff_md.code"
    return None


class TrainingDataWorkChain(WorkChain):
    """Labelled configurations of LiF with an interstitial Li: MD with a sampler, single points with a labeller."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("structure", valid_type=orm.StructureData, help="Starting structure of the sampling MD.")
        spec.input("sampler", valid_type=PotentialData, help="Potential that drives the sampling MD.")
        spec.input("labeller", valid_type=PotentialData, help="Reference potential that labels the frames.")
        spec.input("temperatures", valid_type=orm.List, help="Sampling temperatures in K (one MD run each).")
        spec.input(
            "md_settings",
            valid_type=orm.Dict,
            help="Sampling MD settings, as DiffusionWorkChain's md_settings (timestep_fs, production_ps, "
            "equilibration_ps, frame_interval_fs = time between sampled frames, thermo_interval_fs, ...).",
        )
        spec.input(
            "sampling",
            valid_type=orm.Dict,
            default=lambda: orm.Dict({}),
            help="Frame selection: every, skip, max_frames_per_trajectory, rattle_fraction, rattle_sigma_A, "
            "strain_fraction, max_strain, seed (see aiida_lifdiff.sampling).",
        )
        spec.input("seed", valid_type=orm.Int, default=lambda: orm.Int(1), help="Base seed of the sampling MD.")
        spec.input(
            "iterations",
            valid_type=orm.Int,
            default=lambda: orm.Int(1),
            help="Sampling rounds; > 1 fine-tunes a MACE model after each round and samples with it next.",
        )
        spec.input(
            "initial_dataset",
            valid_type=DatasetData,
            required=False,
            help="Labelled frames to start from (e.g. imported DeePMD data); new frames are appended.",
        )
        spec.expose_inputs(
            MdWorkChain,
            namespace="md",
            exclude=("structure", "potential", "parameters", "engine"),
            namespace_options={"help": "Codes and options of the sampling MD (lammps and/or lifdiff_md)."},
        )
        spec.expose_inputs(
            LifdiffLabelCalculation,
            namespace="label",
            exclude=("potential", "frames"),
            namespace_options={"help": "Single-point code, settings and options of the labelling."},
        )
        spec.expose_inputs(
            FineTuneWorkChain,
            namespace="finetune",
            exclude=("dataset",),
            namespace_options={
                "required": False,
                "populate_defaults": False,
                "help": "Iterative mode: how to fine-tune the next sampler on the data so far.",
            },
        )
        spec.inputs.validator = validate_training_data_inputs
        spec.outline(
            cls.setup,
            while_(cls.should_iterate)(
                cls.run_md,
                cls.sample,
                cls.label,
                cls.collect,
                if_(cls.should_finetune)(cls.finetune, cls.inspect_finetune),
            ),
            cls.results,
        )
        spec.output("dataset", valid_type=DatasetData, help="Every labelled frame (initial + all iterations).")
        spec.output_namespace(
            "iteration_datasets", valid_type=DatasetData, dynamic=True, help="The frames labelled in each iteration."
        )
        spec.output(
            "model", valid_type=PotentialData, required=False, help="Iterative mode: the last fine-tuned model."
        )
        spec.exit_code(440, "ERROR_SAMPLING_MD_FAILED", message="Sampling MD failed: {details}")
        spec.exit_code(441, "ERROR_LABELLING_FAILED", message="Labelling failed: {message}")
        spec.exit_code(442, "ERROR_FINETUNING_FAILED", message="Fine-tuning in iteration {iteration} failed: {message}")

    @classmethod
    def get_builder_from_protocol(
        cls,
        structure: orm.StructureData,
        sampler: PotentialData,
        labeller: PotentialData,
        md_code: orm.AbstractCode,
        label_code: orm.AbstractCode,
        protocol: str | None = None,
        overrides: dict | None = None,
    ):
        """A builder with the sampling settings of ``protocol`` in ``protocols/training.yaml``."""
        values = get_protocol_inputs("training", protocol, overrides)["data"]
        builder = cls.get_builder()
        builder.structure = structure
        builder.sampler = sampler
        builder.labeller = labeller
        builder.temperatures = orm.List([float(t) for t in values["temperatures_K"]])
        builder.md_settings = orm.Dict(values["md_settings"])
        builder.sampling = orm.Dict(values["sampling"])
        builder.seed = orm.Int(values["seed"])
        engine = engine_for(sampler, values["md_settings"].get("engine"))
        builder.md[ENGINE_NAMESPACES[engine]].code = md_code
        builder.label.code = label_code
        return builder

    def setup(self) -> None:
        self.ctx.iteration = 0
        self.ctx.sampler = self.inputs.sampler
        self.ctx.dataset = self.inputs.get("initial_dataset")

    def should_iterate(self) -> bool:
        return self.ctx.iteration < self.inputs.iterations.value

    def run_md(self):
        settings = self.inputs.md_settings.get_dict()
        engine = engine_for(self.ctx.sampler, settings.get("engine") if self.ctx.iteration == 0 else None)
        members = [
            {
                "name": f"T{index}",
                "temperature_K": float(t),
                "seed": self.inputs.seed.value * 1000 + 100 * self.ctx.iteration + index,
            }
            for index, t in enumerate(self.inputs.temperatures.get_list())
        ]
        jobs = [[member] for member in members] if engine == "lammps" else [members]
        running = {}
        for index, job in enumerate(jobs):
            inputs = AttributeDict(self.exposed_inputs(MdWorkChain, "md"))
            inputs.structure = self.inputs.structure
            inputs.potential = self.ctx.sampler
            inputs.engine = orm.Str(engine)
            md_settings = {k: v for k, v in settings.items() if k != "engine"}
            inputs.parameters = orm.Dict(md_parameters_from_settings(md_settings, job))
            inputs.metadata = {"call_link_label": f"sampling_md_{self.ctx.iteration}_{index}"}
            running[f"md_{index}"] = self.submit(MdWorkChain, **inputs)
        self.ctx.md_keys = sorted(running)
        self.report(
            f"iteration {self.ctx.iteration}: sampling MD with {self.ctx.sampler.label or self.ctx.sampler.kind} "
            f"at {len(members)} temperatures ({engine})"
        )
        return ToContext(**running)

    def sample(self):
        trajectories = {}
        failed = []
        for key in self.ctx.md_keys:
            node = self.ctx[key]
            if "trajectories" in node.outputs:
                for name, trajectory in node.outputs.trajectories.items():
                    trajectories[name] = trajectory
            if not node.is_finished_ok:
                failed.append(f"{node.process_label}<{node.pk}> exit {node.exit_status}")
        if not trajectories:
            return self.exit_codes.ERROR_SAMPLING_MD_FAILED.format(details="; ".join(failed) or "no trajectories")
        if failed:
            self.report(f"some sampling MD failed, sampling the {len(trajectories)} finished runs: {failed}")
        sampler = self.ctx.sampler
        settings = self.inputs.sampling.get_dict()
        settings["seed"] = int(settings.get("seed", 0)) + self.ctx.iteration
        settings["source"] = (
            f"MD with {sampler.label or sampler.kind} ({sampler.kind}, sha256 {sampler.sha256[:12]}) at "
            f"{', '.join(f'{t:g}' for t in self.inputs.temperatures.get_list())} K, iteration {self.ctx.iteration}"
        )
        self.ctx.frames = sample_frames(orm.Dict(settings), **trajectories)

    def label(self):
        inputs = AttributeDict(self.exposed_inputs(LifdiffLabelCalculation, "label"))
        inputs.potential = self.inputs.labeller
        inputs.frames = self.ctx.frames
        inputs.metadata = {**inputs.get("metadata", {}), "call_link_label": f"label_{self.ctx.iteration}"}
        node = self.submit(LifdiffLabelCalculation, **with_computer_options(inputs))
        self.report(f"labelling {self.ctx.frames.n_frames} frames with {self.inputs.labeller.label}: <{node.pk}>")
        return ToContext(labelling=node)

    def collect(self):
        node = self.ctx.labelling
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_LABELLING_FAILED.format(
                message=f"{node.process_label}<{node.pk}> exit {node.exit_status}: {node.exit_message}"
            )
        labelled = node.outputs.dataset
        self.out(f"iteration_datasets.iteration_{self.ctx.iteration}", labelled)
        if self.ctx.dataset is None:
            self.ctx.dataset = labelled
        else:
            self.ctx.dataset = merge_datasets(previous=self.ctx.dataset, new=labelled)
        self.report(f"iteration {self.ctx.iteration}: {self.ctx.dataset.n_frames} labelled frames in total")
        self.ctx.iteration += 1

    def should_finetune(self) -> bool:
        return self.inputs.iterations.value > 1 and "finetune" in self.inputs

    def finetune(self):
        inputs = AttributeDict(self.exposed_inputs(FineTuneWorkChain, "finetune"))
        inputs.dataset = self.ctx.dataset
        inputs.metadata = {"call_link_label": f"finetune_{self.ctx.iteration - 1}"}
        return ToContext(finetuning=self.submit(FineTuneWorkChain, **inputs))

    def inspect_finetune(self):
        node = self.ctx.finetuning
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_FINETUNING_FAILED.format(
                iteration=self.ctx.iteration - 1, message=f"<{node.pk}> exit {node.exit_status}: {node.exit_message}"
            )
        self.ctx.sampler = node.outputs.model
        self.ctx.model = node.outputs.model

    def results(self) -> None:
        self.out("dataset", self.ctx.dataset)
        if "model" in self.ctx:
            self.out("model", self.ctx.model)
