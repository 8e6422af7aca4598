"""``BenchmarkWorkChain``: the study as one process: potentials (given or trained here) -> Arrhenius each.

Steps: build the supercell; optionally generate a labelled dataset (``TrainingDataWorkChain``); train
the requested models on it (``FineTuneWorkChain`` for MACE, ``DeepmdTrainWorkChain`` for DeePMD, in
parallel); then one ``DiffusionWorkChain`` per potential, all with the same settings, in parallel.
Every model's node links back through its training calculation and the dataset splits to the
labelled frames, the labeller and the sampling MD.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_

from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.workflows.diffusion import DiffusionWorkChain, validate_diffusion_inputs
from aiida_lifdiff.workflows.finetune import DeepmdTrainWorkChain, FineTuneWorkChain
from aiida_lifdiff.workflows.functions.benchmark import ARRHENIUS_PREFIX, POTENTIAL_PREFIX, summarize_benchmark
from aiida_lifdiff.workflows.functions.structures import create_lif_supercell, validate_supercell_settings
from aiida_lifdiff.workflows.md import engine_for
from aiida_lifdiff.workflows.training_data import TrainingDataWorkChain

RUNNER_ONLY_SETTINGS = {"device", "dtype", "members_per_job"}
TRAINERS = {"mace": ("train_mace", FineTuneWorkChain), "deepmd": ("train_deepmd", DeepmdTrainWorkChain)}


def validate_benchmark_inputs(inputs: dict, _) -> str | None:
    """Refuse a study that cannot run, before anything is stored."""
    potentials = inputs.get("potentials", {})
    names = inputs["trained_names"].get_dict() if "trained_names" in inputs else {}
    trained = [names.get(kind, kind) for kind, (namespace, _) in TRAINERS.items() if namespace in inputs]
    if not potentials and not trained:
        return "the study has no potential: give `potentials` and/or `train_mace` / `train_deepmd`"
    clashes = set(potentials) & set(trained)
    if clashes:
        return f"the names {sorted(clashes)} are used for a given potential and for a trained one"
    if trained and "training_data" not in inputs and "dataset" not in inputs:
        return "training a model needs a `dataset` or `training_data` to generate one"
    for name, potential in potentials.items():
        if not potential.covers(("Li", "F")):
            return f"potential {name!r} covers {potential.species}; LiF needs Li and F"
    supercell = inputs.get("supercell", {})
    return validate_supercell_settings(
        supercell["repeat"].value if "repeat" in supercell else None,
        supercell["lattice_constant"].value if "lattice_constant" in supercell else None,
        supercell["interstitial_site"].value if "interstitial_site" in supercell else None,
    )


def _validate_diffusion_namespace(inputs: dict, port) -> str | None:
    return validate_diffusion_inputs({**inputs, "structure": None}, port)


class BenchmarkWorkChain(WorkChain):
    """Diffusion and Arrhenius Ea of Li in LiF for several potentials under the same settings."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace("supercell", help="How to build the LiF supercell with one interstitial Li.")
        spec.input("supercell.repeat", valid_type=orm.Int, help="Conventional cubes per axis.")
        spec.input("supercell.lattice_constant", valid_type=orm.Float, help="Cubic lattice constant (A).")
        spec.input("supercell.interstitial_site", valid_type=orm.Str, help="Starting site of the extra Li.")
        spec.input_namespace(
            "potentials",
            valid_type=PotentialData,
            dynamic=True,
            help="Potentials that exist already, by name (e.g. the classical reference, a zero-shot foundation).",
        )
        spec.input(
            "dataset",
            valid_type=DatasetData,
            required=False,
            help="Labelled frames to train on (instead of, or before, generating them with `training_data`).",
        )
        spec.input(
            "trained_names",
            valid_type=orm.Dict,
            required=False,
            help="Names of the trained models in the outputs and the summary: {mace: NAME, deepmd: NAME} "
            "(default: mace, deepmd).",
        )
        spec.expose_inputs(
            TrainingDataWorkChain,
            namespace="training_data",
            exclude=("structure",),
            namespace_options={
                "required": False,
                "populate_defaults": False,
                "help": "Generate the training set: sampling MD + labelling (appended to `dataset` if given).",
            },
        )
        spec.expose_inputs(
            FineTuneWorkChain,
            namespace="train_mace",
            exclude=("dataset",),
            namespace_options={
                "required": False,
                "populate_defaults": False,
                "help": "Train (or fine-tune) a MACE model named `mace` on the training set.",
            },
        )
        spec.expose_inputs(
            DeepmdTrainWorkChain,
            namespace="train_deepmd",
            exclude=("dataset",),
            namespace_options={
                "required": False,
                "populate_defaults": False,
                "help": "Train a DeePMD model named `deepmd` on the training set.",
            },
        )
        spec.expose_inputs(
            DiffusionWorkChain,
            namespace="diffusion",
            exclude=("potential", "structure", "supercell"),
            namespace_options={"help": "The diffusion settings every potential runs with, and the MD codes."},
        )
        # The structure reaches each DiffusionWorkChain at run time (built once here), so its namespace is
        # checked as if one were given; every other setting is still refused before anything runs.
        spec.inputs["diffusion"].validator = _validate_diffusion_namespace
        spec.inputs.validator = validate_benchmark_inputs
        spec.outline(
            cls.setup,
            cls.run_given_diffusion,
            if_(cls.should_generate_data)(cls.generate_data, cls.inspect_data),
            if_(cls.should_train)(cls.train, cls.inspect_training),
            cls.run_diffusion,
            cls.results,
        )
        spec.output("structure", valid_type=orm.StructureData, help="The starting structure of every MD run.")
        spec.output("dataset", valid_type=DatasetData, required=False, help="The training set.")
        spec.output_namespace("models", valid_type=PotentialData, dynamic=True, help="Models trained in the study.")
        spec.output_namespace(
            "test_errors", valid_type=orm.Dict, dynamic=True, help="Test-set errors of each trained model."
        )
        spec.output_namespace(
            "arrhenius", valid_type=orm.Dict, dynamic=True, help="Ea, D0, D(300 K) with errors, per potential."
        )
        spec.output_namespace(
            "arrhenius_plot", valid_type=orm.SinglefileData, dynamic=True, help="Arrhenius plot per potential."
        )
        spec.output("summary", valid_type=orm.Dict, help="One row per potential: kind, Ea and its error, status.")
        spec.exit_code(450, "ERROR_TRAINING_DATA_FAILED", message="Generating the training set failed: {message}")
        spec.exit_code(451, "ERROR_TRAINING_FAILED", message="Training {names} failed: {message}")
        spec.exit_code(
            452, "ERROR_SOME_DIFFUSION_FAILED", message="No activation energy for {names} (see the summary for why)."
        )

    def setup(self) -> None:
        self.ctx.structure = create_lif_supercell(
            self.inputs.supercell.repeat,
            self.inputs.supercell.lattice_constant,
            self.inputs.supercell.interstitial_site,
        )
        self.out("structure", self.ctx.structure)
        self.ctx.dataset = self.inputs.get("dataset")
        self.ctx.potentials = dict(self.inputs.get("potentials", {}))

    def should_generate_data(self) -> bool:
        return "training_data" in self.inputs

    def generate_data(self):
        inputs = AttributeDict(self.exposed_inputs(TrainingDataWorkChain, "training_data"))
        inputs.structure = self.ctx.structure
        if self.ctx.dataset is not None:
            inputs.initial_dataset = self.ctx.dataset
        inputs.metadata = {"call_link_label": "training_data"}
        return ToContext(training_data=self.submit(TrainingDataWorkChain, **inputs))

    def inspect_data(self):
        node = self.ctx.training_data
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_TRAINING_DATA_FAILED.format(
                message=f"<{node.pk}> exit {node.exit_status}: {node.exit_message}"
            )
        self.ctx.dataset = node.outputs.dataset

    def should_train(self) -> bool:
        return any(namespace in self.inputs for namespace, _ in TRAINERS.values())

    def train(self):
        self.out("dataset", self.ctx.dataset)
        running = {}
        for name, (namespace, workchain) in TRAINERS.items():
            if namespace in self.inputs:
                inputs = AttributeDict(self.exposed_inputs(workchain, namespace))
                inputs.dataset = self.ctx.dataset
                inputs.metadata = {"call_link_label": f"train_{name}"}
                running[f"train_{name}"] = self.submit(workchain, **inputs)
        self.report(f"training {', '.join(running)} on {self.ctx.dataset.n_frames} frames")
        return ToContext(**running)

    def inspect_training(self):
        failed = []
        names = self.inputs.trained_names.get_dict() if "trained_names" in self.inputs else {}
        for kind in TRAINERS:
            node = self.ctx.get(f"train_{kind}")
            if node is None:
                continue
            name = names.get(kind, kind)
            if not node.is_finished_ok:
                failed.append(f"{name} <{node.pk}> exit {node.exit_status}: {node.exit_message}")
                continue
            self.ctx.potentials[name] = node.outputs.model
            self.out(f"models.{name}", node.outputs.model)
            if "test_errors" in node.outputs:
                self.out(f"test_errors.{name}", node.outputs.test_errors)
        # The other potentials still run: a failed training costs its own row, not the study.
        self.ctx.training_failed = failed
        if failed:
            self.report(f"training failed, continuing without: {'; '.join(failed)}")

    def _submit_diffusion(self, name: str, potential: PotentialData):
        inputs = AttributeDict(self.exposed_inputs(DiffusionWorkChain, "diffusion"))
        inputs.potential = potential
        inputs.structure = self.ctx.structure
        settings = inputs.md_settings.get_dict()
        if engine_for(potential, settings.get("engine")) == "lammps" and set(settings) & RUNNER_ONLY_SETTINGS:
            # One study, one set of MD settings: the runner's device/dtype/batching do not apply to LAMMPS.
            inputs.md_settings = orm.Dict({k: v for k, v in settings.items() if k not in RUNNER_ONLY_SETTINGS})
        # "study/potential", so `aiida-lifdiff results --label STUDY` finds every row of the study.
        label = f"{self.node.label}/{name}" if self.node.label else name
        inputs.metadata = {"call_link_label": f"diffusion_{name}", "label": label}
        return self.submit(DiffusionWorkChain, **inputs)

    def run_given_diffusion(self) -> None:
        """Start the potentials that exist already now: they need not wait for any training."""
        self.ctx.early = {}
        for name, potential in self.ctx.potentials.items():
            self.ctx.early[name] = self._submit_diffusion(name, potential).pk
        if self.ctx.early:
            self.report(f"diffusion started for {', '.join(sorted(self.ctx.early))}")

    def run_diffusion(self):
        running = {}
        for name, potential in self.ctx.potentials.items():
            if name not in self.ctx.early:
                running[f"diffusion_{name}"] = self._submit_diffusion(name, potential)
        if running:
            self.report(f"diffusion started for {', '.join(sorted(k[len('diffusion_') :] for k in running))}")
        # Wait for every diffusion, including those started before training (awaiting a finished one is a no-op).
        for name, pk in self.ctx.early.items():
            running[f"diffusion_{name}"] = orm.load_node(pk)
        return ToContext(**running)

    def results(self):
        primary = self.inputs.diffusion.analysis.get("primary_mode", "collective")
        arrhenius, failed = {}, []
        for name in sorted(self.ctx.potentials):
            node = self.ctx[f"diffusion_{name}"]
            if "arrhenius" in node.outputs:
                arrhenius[name] = node.outputs.arrhenius
                self.out(f"arrhenius.{name}", node.outputs.arrhenius)
            if "arrhenius_plot" in node.outputs:
                self.out(f"arrhenius_plot.{name}", node.outputs.arrhenius_plot)
            if not node.is_finished_ok:
                failed.append(f"{name} (exit {node.exit_status})")
        summary = summarize_benchmark(
            orm.Str(primary),
            **{f"{POTENTIAL_PREFIX}{name}": node for name, node in self.ctx.potentials.items()},
            **{f"{ARRHENIUS_PREFIX}{name}": node for name, node in arrhenius.items()},
            metadata={"call_link_label": "summary"},
        )
        self.out("summary", summary)
        if self.ctx.get("training_failed"):
            failed_training = self.ctx.training_failed
            return self.exit_codes.ERROR_TRAINING_FAILED.format(
                names=", ".join(f.split()[0] for f in failed_training), message="; ".join(failed_training)
            )
        for name, row in summary["rows"].items():
            if row.get("fit_ok"):
                self.report(f"{name}: Ea = {row['Ea_eV']:.3f} +- {row['Ea_err_eV']:.3f} eV ({primary})")
            else:
                self.report(f"{name}: no Ea: {row.get('reason')}")
        if failed:
            return self.exit_codes.ERROR_SOME_DIFFUSION_FAILED.format(names=", ".join(failed))
        return None
