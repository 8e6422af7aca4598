"""``BenchmarkWorkChain``: the whole study as one process: a reference and candidate potentials -> a comparison.

Steps:

1. build the supercell; start the diffusion of every potential that exists already (it waits for nothing);
2. optionally generate a labelled dataset (``TrainingDataWorkChain``, named ``generated``);
3. hold out the shared evaluation set, and draw each trained model's frames (``select_frames``);
4. train every requested model (``FineTuneWorkChain`` for MACE, zero-shot foundations excepted,
   ``DeepmdTrainWorkChain`` for DeePMD), all in parallel; a failed training costs its own row;
5. one ``DiffusionWorkChain`` per trained model, and one ``EvaluationWorkChain`` per potential on the
   evaluation set, all with the same settings;
6. ``compare_potentials``: the comparison table (Ea, D0, D(T) with errors, the difference to the reference
   in units of the combined error, evaluation-set errors), an Arrhenius overlay and a parity overlay.

Every model's node links back through its training calculation and the dataset selections and splits to
the labelled frames, the labeller and the sampling MD (or the imported dataset).
"""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_

from aiida_lifdiff.data.dataset import DatasetData, unlabelled_problem
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.protocols import get_protocol_inputs, load_protocols
from aiida_lifdiff.workflows.diffusion import DiffusionWorkChain, validate_diffusion_inputs
from aiida_lifdiff.workflows.evaluation import EvaluationWorkChain
from aiida_lifdiff.workflows.finetune import DeepmdTrainWorkChain, FineTuneWorkChain
from aiida_lifdiff.workflows.functions.benchmark import (
    ARRHENIUS_PREFIX,
    BARRIERS_PREFIX,
    EVALUATION_PREFIX,
    EVALUATION_SET,
    LATTICE_PREFIX,
    POTENTIAL_PREFIX,
    PREDICTIONS_PREFIX,
    PROFILES_PREFIX,
    TEST_ERRORS_PREFIX,
    compare_potentials,
)
from aiida_lifdiff.workflows.functions.datasets import select_frames, validate_split
from aiida_lifdiff.workflows.functions.structures import create_lif_supercell, validate_supercell_settings
from aiida_lifdiff.workflows.md import engine_for
from aiida_lifdiff.workflows.training_data import TrainingDataWorkChain

RUNNER_ONLY_SETTINGS = {"device", "dtype", "members_per_job"}
#: The dataset a ``training_data`` namespace produces, as training specs and the evaluation name it.
GENERATED = "generated"
TRAINING_KEYS = {
    "kind": "mace or deepmd",
    "data": f"name of the dataset to train on: one of `datasets`, or {GENERATED!r} (made by `training_data`)",
    "frames": "number of frames drawn (seeded) from that dataset for this model, split by `split` (default: all)",
    "finetune_from": "MACE only: name of a given MACE potential to fine-tune (default: train from scratch)",
    "replay": "MACE only: name of a dataset replayed in multihead fine-tuning",
    "flags": "MACE only: mace_run_train flags over the protocol's",
    "settings": "DeePMD only: training settings over the protocol's",
    "split": "fractions {train, valid, test} of the drawn frames",
    "seed": "seed of the frame draw and of the split",
}
TRAINERS = {"mace": FineTuneWorkChain, "deepmd": DeepmdTrainWorkChain}
#: Roles of ``environment_codes`` (``<environment>_<role>``): the programs a potential of another environment
#: (SevenNet: ``sevenn``) runs through instead of the main codes.
ENVIRONMENT_ROLES = ("runner", "label", "barrier")


def environment_code_key(environment: str, role: str) -> str:
    return f"{environment}_{role}"


def _environment_codes_problem(inputs: dict, potentials: dict, static_only: list) -> str | None:
    """A potential of a non-main environment needs that environment's codes for what it runs; each must run there."""
    from aiida_lifdiff.calculations.model_spec import MAIN_ENVIRONMENT, check_code_environment, potential_environment

    given = dict(inputs.get("environment_codes", {}))
    evaluation = inputs.get("evaluation", {})
    supercell = inputs.get("supercell", {})
    relax = "relax_lattice" in supercell and supercell["relax_lattice"].value
    barriers = "barriers" in inputs and inputs["barriers"].value
    for name, potential in potentials.items():
        environment = potential_environment(potential)
        if environment == MAIN_ENVIRONMENT:
            continue
        roles = {
            "runner": name not in static_only,
            "label": "dataset" in evaluation or "source" in evaluation,
            "barrier": relax or barriers,
        }
        for role in (role for role, needed in roles.items() if needed):
            key = environment_code_key(environment, role)
            if key not in given:
                return (
                    f"potential {name!r} runs in the {environment!r} environment: give `environment_codes.{key}` "
                    f"(`aiida-lifdiff setup localhost --environment {environment}` makes them)"
                )
            message = check_code_environment(potential, given[key])
            if message:
                return f"environment_codes.{key}: {message}"
    return None


def training_spec_problem(
    name: str,
    spec: Any,
    *,
    protocol: str | None,
    datasets: dict[str, int],
    mace_potentials: set[str] | list[str],
    generated: bool,
) -> str | None:
    """A message if training spec ``name`` cannot run, else None (shared by the study loader and the validator).

    ``datasets`` maps the names of the available datasets to the frames a model may train on (None when not
    known before the run, e.g. a generated dataset); ``mace_potentials`` are the names of given MACE potentials
    a model may be fine-tuned from; ``generated``: whether the study generates the ``generated`` dataset.
    """
    from aiida_lifdiff.training.deepmd import validate_deepmd_settings
    from aiida_lifdiff.training.mace import validate_mace_settings

    where = f"trainings.{name}"
    if not isinstance(spec, dict):
        return f"{where} must be a mapping of {sorted(TRAINING_KEYS)}"
    unknown = sorted(set(spec) - set(TRAINING_KEYS))
    if unknown:
        return f"{where}: unknown key(s) {unknown}; allowed: {sorted(TRAINING_KEYS)}"
    kind = spec.get("kind")
    if kind not in TRAINERS:
        return f"{where}.kind must be one of {sorted(TRAINERS)}, got {kind!r}"
    data = spec.get("data")
    if data == GENERATED:
        if not generated:
            return f"{where}.data is {GENERATED!r} but no `training_data` generates a dataset"
    elif data not in datasets:
        return f"{where}.data must name one of the datasets {sorted(datasets)} or {GENERATED!r}, got {data!r}"
    frames = spec.get("frames")
    if frames is not None:
        if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
            return f"{where}.frames must be a positive integer, got {frames!r}"
        available = datasets.get(data)
        if available is not None and frames > available:
            return f"{where}.frames is {frames} but dataset {data!r} has only {available} frames to train on"
    message = validate_split(spec.get("split") or {"train": 0.8, "valid": 0.1, "test": 0.1}, frames)
    if message:
        return f"{where}.split: {message}"
    seed = spec.get("seed", 1)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        return f"{where}.seed must be a non-negative integer, got {seed!r}"
    values = get_protocol_inputs("training", protocol)[kind]
    if kind == "deepmd":
        wrong = sorted({"finetune_from", "replay", "flags"} & set(spec))
        if wrong:
            return f"{where}: {wrong} apply to MACE only"
        message = validate_deepmd_settings({**values["settings"], **(spec.get("settings") or {})})
        return f"{where}.settings: {message}" if message else None
    if "settings" in spec:
        return f"{where}: 'settings' applies to DeePMD only (MACE takes 'flags')"
    source = spec.get("finetune_from")
    if source is not None and source not in mace_potentials:
        return f"{where}.finetune_from must name a given MACE potential {sorted(mace_potentials)}, got {source!r}"
    replay = spec.get("replay")
    if replay is not None:
        if replay not in datasets and replay != GENERATED:
            return f"{where}.replay must name one of the datasets {sorted(datasets)}, got {replay!r}"
        if source is None:
            return f"{where}.replay is for multihead fine-tuning: give `finetune_from` as well"
    mode = _mace_mode(values, source is not None, replay is not None)
    flags = {**values["flags"], **(values.get("finetune_flags", {}) if source else {}), **(spec.get("flags") or {})}
    message = validate_mace_settings(flags, has_foundation=source is not None, has_replay=replay is not None, mode=mode)
    return f"{where}.flags: {message}" if message else None


def _mace_mode(values: dict, finetune: bool, replay: bool) -> str:
    if not finetune:
        return values["mode"]
    return "multihead_finetune" if replay else "naive_finetune"


def validate_benchmark_inputs(inputs: dict, _) -> str | None:
    """Refuse a study that cannot run, before anything is stored."""
    potentials = dict(inputs.get("potentials", {}))
    specs = inputs["trainings"].get_dict() if "trainings" in inputs else {}
    if not potentials and not specs:
        return "the study has no potential: give `potentials` and/or `trainings`"
    clashes = sorted(set(potentials) & set(specs))
    if clashes:
        return f"the names {clashes} are used for a given potential and for a trained one"
    for name in specs:
        if not str(name).isidentifier():
            return f"trained potential name {name!r} must be letters, digits and '_'"
    reference = inputs["reference"].value if "reference" in inputs else None
    if reference is not None and reference not in potentials and reference not in specs:
        return f"the reference {reference!r} is not one of the potentials {sorted(potentials) + sorted(specs)}"
    static_only = inputs["static_only"].get_list() if "static_only" in inputs else []
    unknown = sorted(set(static_only) - set(potentials) - set(specs))
    if unknown:
        return f"static_only names {unknown} that are not potentials of the study"
    if reference is not None and reference in static_only:
        return f"the reference {reference!r} must run MD: every Ea is compared with its Ea"
    message = _environment_codes_problem(inputs, potentials, static_only)
    if message:
        return message
    for name, potential in potentials.items():
        if not potential.covers(("Li", "F")):
            return f"potential {name!r} covers {potential.species}; LiF needs Li and F"
    for name, dataset in dict(inputs.get("datasets", {})).items():
        message = unlabelled_problem(dataset, f"dataset {name!r} is used to train or evaluate")
        if message:
            return message
    if "training_protocol" in inputs:
        available = sorted(load_protocols("training")["protocols"])
        if inputs["training_protocol"].value not in available:
            return f"unknown training protocol {inputs['training_protocol'].value!r}; available: {available}"

    evaluation = inputs.get("evaluation", {})
    held_out: dict[str, int] = {}
    if "dataset" in evaluation and ("source" in evaluation or "frames" in evaluation):
        return "evaluation: give either `dataset` or `source` + `frames`, not both"
    if ("source" in evaluation) != ("frames" in evaluation):
        return "evaluation: `source` (a dataset name) and `frames` (how many to hold out) go together"
    if "source" in evaluation:
        source, frames = evaluation["source"].value, evaluation["frames"].value
        datasets = dict(inputs.get("datasets", {}))
        if source == GENERATED and "training_data" not in inputs:
            return f"evaluation.source is {GENERATED!r} but no `training_data` generates a dataset"
        if source != GENERATED and source not in datasets:
            return f"evaluation.source must name one of the datasets {sorted(datasets)} or {GENERATED!r}"
        if frames < 1 or (source in datasets and frames >= datasets[source].n_frames):
            available = datasets[source].n_frames if source in datasets else "?"
            return f"evaluation.frames must be >= 1 and leave frames to train on (dataset has {available})"
        held_out[source] = frames
    if ("dataset" in evaluation or "source" in evaluation) and "label" not in inputs.get("codes", {}):
        return "an evaluation set needs `codes.label` (the single-point code, lifdiff-label)"

    codes = inputs.get("codes", {})
    protocol = inputs["training_protocol"].value if "training_protocol" in inputs else None
    available = {name: node.n_frames - held_out.get(name, 0) for name, node in dict(inputs.get("datasets", {})).items()}
    for name, spec in specs.items():
        message = training_spec_problem(
            name,
            spec,
            protocol=protocol,
            datasets={**available, **({GENERATED: None} if "training_data" in inputs else {})},
            mace_potentials={n for n, p in potentials.items() if p.kind == "mace"},
            generated="training_data" in inputs,
        )
        if message:
            return message
        code = {"mace": "mace_train", "deepmd": "dp"}[spec["kind"]]
        if code not in codes:
            return f"trainings.{name} ({spec['kind']}) needs `codes.{code}`"
    if specs and "label" not in codes:
        return "trained models are evaluated on their test split: give `codes.label`"

    supercell = inputs.get("supercell", {})
    relax = "relax_lattice" in supercell and supercell["relax_lattice"].value
    barriers = "barriers" in inputs and inputs["barriers"].value
    if (relax or barriers) and "barrier" not in codes:
        wanted = "supercell.relax_lattice" if relax else "barriers"
        return f"{wanted} needs `codes.barrier` (the lifdiff-barrier code)"
    if "barrier_parameters" in inputs:
        from aiida_lifdiff.calculations.barrier import validate_barrier_parameters

        message = validate_barrier_parameters(inputs["barrier_parameters"].get_dict())
        if message:
            return f"barrier_parameters: {message}"
    return validate_supercell_settings(
        supercell["repeat"].value if "repeat" in supercell else None,
        supercell["lattice_constant"].value if "lattice_constant" in supercell else None,
        supercell["interstitial_site"].value if "interstitial_site" in supercell else None,
    )


def _validate_diffusion_namespace(inputs: dict, port) -> str | None:
    return validate_diffusion_inputs({**inputs, "structure": None}, port)


class _NoMd:
    """Stands for the diffusion of a static-only potential in :meth:`BenchmarkWorkChain.results`: no outputs."""

    outputs: dict = {}
    is_finished_ok = False
    exit_status = None


class BenchmarkWorkChain(WorkChain):
    """Diffusion, Arrhenius Ea and evaluation-set errors of Li in LiF for several potentials, compared."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace("supercell", help="How to build the LiF supercell with one interstitial Li.")
        spec.input("supercell.repeat", valid_type=orm.Int, help="Conventional cubes per axis.")
        spec.input("supercell.lattice_constant", valid_type=orm.Float, help="Cubic lattice constant (A).")
        spec.input("supercell.interstitial_site", valid_type=orm.Str, help="Starting site of the extra Li.")
        spec.input(
            "supercell.relax_lattice",
            valid_type=orm.Bool,
            default=lambda: orm.Bool(False),
            help="Run every potential at its own relaxed lattice constant (0 K E(V) fit with `codes.barrier`); "
            "`lattice_constant` is then the starting guess and the lattice of the generated training data.",
        )
        spec.input(
            "barriers",
            valid_type=orm.Bool,
            default=lambda: orm.Bool(False),
            help="Also compute every potential's static migration barriers (BarrierWorkChain, `codes.barrier`).",
        )
        spec.input(
            "barrier_parameters",
            valid_type=orm.Dict,
            required=False,
            help="Settings of the barrier runs over the lifdiff-barrier defaults (repeat, paths, neb, ...).",
        )
        spec.input(
            "static_only",
            valid_type=orm.List,
            required=False,
            help="Names of potentials that get no MD (too slow for this computer, e.g. a universal model on a CPU): "
            "their rows have a0, barriers and evaluation errors, and say that no Ea was computed.",
        )
        spec.input_namespace(
            "potentials",
            valid_type=PotentialData,
            dynamic=True,
            help="Potentials that exist already, by name (the classical or DeePMD reference, zero-shot foundations).",
        )
        spec.input(
            "reference",
            valid_type=orm.Str,
            required=False,
            help="Name of the reference potential (given or trained); every other Ea is compared with its Ea.",
        )
        spec.input_namespace(
            "datasets",
            valid_type=DatasetData,
            dynamic=True,
            help="Labelled datasets by name (e.g. imported DFT frames) that trainings and the evaluation draw from.",
        )
        spec.expose_inputs(
            TrainingDataWorkChain,
            namespace="training_data",
            exclude=("structure",),
            namespace_options={
                "required": False,
                "populate_defaults": False,
                "help": f"Generate a dataset named {GENERATED!r}: sampling MD + labelling (optionally iterative).",
            },
        )
        spec.input(
            "trainings",
            valid_type=orm.Dict,
            required=False,
            help="Models trained in the study, by name: {NAME: {kind, data, frames, finetune_from, replay, flags | "
            "settings, split, seed}} (see TRAINING_KEYS); each is built from `training_protocol`.",
        )
        spec.input(
            "training_protocol",
            valid_type=orm.Str,
            default=lambda: orm.Str("quick"),
            help="Protocol of protocols/training.yaml the trainings start from (quick | production).",
        )
        spec.input_namespace("codes", help="Codes of the trainings and evaluations.")
        spec.input("codes.mace_train", valid_type=orm.AbstractCode, required=False, help="mace_run_train code.")
        spec.input("codes.dp", valid_type=orm.AbstractCode, required=False, help="DeePMD-kit `dp` code.")
        spec.input(
            "codes.label",
            valid_type=orm.AbstractCode,
            required=False,
            help="lifdiff-label code: single points for the evaluation set and the trained models' test splits.",
        )
        spec.input(
            "codes.barrier",
            valid_type=orm.AbstractCode,
            required=False,
            help="lifdiff-barrier code: lattice relaxations (supercell.relax_lattice) and barriers (barriers).",
        )
        spec.input_namespace(
            "environment_codes",
            valid_type=orm.AbstractCode,
            dynamic=True,
            required=False,
            help="Codes of other environments by `<environment>_<role>` (role: runner, label, barrier), e.g. "
            "`sevenn_runner`: a potential whose package lives in another environment (SevenNet) runs with these "
            "instead of `diffusion.md.lifdiff_md.code`, `codes.label`, `codes.barrier`.",
        )
        spec.input_namespace("evaluation", help="The frames every potential's energies and forces are checked on.")
        spec.input(
            "evaluation.dataset",
            valid_type=DatasetData,
            required=False,
            help="A labelled dataset to evaluate on (instead of holding frames out of `source`).",
        )
        spec.input(
            "evaluation.source",
            valid_type=orm.Str,
            required=False,
            help=f"Name of the dataset (or {GENERATED!r}) whose `frames` are held out: no model trains on them.",
        )
        spec.input("evaluation.frames", valid_type=orm.Int, required=False, help="How many frames to hold out.")
        spec.input("evaluation.seed", valid_type=orm.Int, default=lambda: orm.Int(0), help="Seed of the held-out draw.")
        spec.expose_inputs(
            DiffusionWorkChain,
            namespace="diffusion",
            exclude=("potential", "structure", "supercell", "lattice"),
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
            cls.prepare_data,
            if_(cls.should_train)(cls.train, cls.inspect_training),
            cls.run_diffusion_and_evaluation,
            cls.results,
        )
        spec.output("structure", valid_type=orm.StructureData, help="The starting structure of every MD run.")
        spec.output("generated_dataset", valid_type=DatasetData, required=False, help="The generated training set.")
        spec.output(
            "evaluation_set", valid_type=DatasetData, required=False, help="The frames every potential is checked on."
        )
        spec.output_namespace("models", valid_type=PotentialData, dynamic=True, help="Models trained in the study.")
        spec.output_namespace(
            "test_errors", valid_type=orm.Dict, dynamic=True, help="Each trained model's errors on its own test split."
        )
        spec.output_namespace(
            "evaluation_errors", valid_type=orm.Dict, dynamic=True, help="Errors on the evaluation set."
        )
        spec.output_namespace(
            "arrhenius", valid_type=orm.Dict, dynamic=True, help="Ea, D0, D(300 K) with errors, per potential."
        )
        spec.output_namespace(
            "arrhenius_plot", valid_type=orm.SinglefileData, dynamic=True, help="Arrhenius plot per potential."
        )
        spec.output(
            "comparison",
            valid_type=orm.Dict,
            help="One row per potential: Ea, D0, D(T) with errors, difference to the reference in units of the "
            "combined error, evaluation-set errors, training set; or the reason a number is missing.",
        )
        spec.output_namespace(
            "lattice", valid_type=orm.Dict, dynamic=True, help="Relaxed lattice (a0, B0) per potential."
        )
        spec.output_namespace(
            "barriers", valid_type=orm.Dict, dynamic=True, help="Static migration barriers per potential."
        )
        spec.output("arrhenius_overlay", valid_type=orm.SinglefileData, help="PNG: every potential's D(T) and fit.")
        spec.output(
            "barrier_overlay",
            valid_type=orm.SinglefileData,
            required=False,
            help="PNG: every potential's NEB energy profile per path.",
        )
        spec.output(
            "parity_overlay",
            valid_type=orm.SinglefileData,
            required=False,
            help="PNG: energy and force parity of every potential on the evaluation set.",
        )
        spec.exit_code(450, "ERROR_TRAINING_DATA_FAILED", message="Generating the training set failed: {message}")
        spec.exit_code(451, "ERROR_TRAINING_FAILED", message="Training {names} failed: {message}")
        spec.exit_code(
            452, "ERROR_SOME_DIFFUSION_FAILED", message="No activation energy for {names} (see the comparison for why)."
        )
        spec.exit_code(453, "ERROR_EVALUATION_FAILED", message="The evaluation of {names} failed: {message}")
        spec.exit_code(454, "ERROR_NOT_ENOUGH_FRAMES", message="Not enough frames: {message}")
        spec.exit_code(455, "ERROR_BARRIERS_FAILED", message="The barriers of {names} failed: {message}")

    def setup(self) -> None:
        self.ctx.structure = create_lif_supercell(
            self.inputs.supercell.repeat,
            self.inputs.supercell.lattice_constant,
            self.inputs.supercell.interstitial_site,
        )
        self.out("structure", self.ctx.structure)
        self.ctx.datasets = dict(self.inputs.get("datasets", {}))
        self.ctx.potentials = dict(self.inputs.get("potentials", {}))
        self.ctx.specs = self.inputs.trainings.get_dict() if "trainings" in self.inputs else {}
        self.ctx.failed = {}
        self.ctx.test_errors = {}
        self.ctx.static_only = set(self.inputs.static_only.get_list()) if "static_only" in self.inputs else set()

    def _code(self, potential: PotentialData, role: str, default=None):
        """The ``role`` code for ``potential``: its environment's (``environment_codes``), else ``default``."""
        from aiida_lifdiff.calculations.model_spec import MAIN_ENVIRONMENT, potential_environment

        environment = potential_environment(potential)
        if environment == MAIN_ENVIRONMENT:
            return default
        return self.inputs.environment_codes[environment_code_key(environment, role)]

    def _submit_diffusion(self, name: str, potential: PotentialData):
        inputs = AttributeDict(self.exposed_inputs(DiffusionWorkChain, "diffusion"))
        inputs.potential = potential
        runner = self._code(potential, "runner")
        if runner is not None:
            md = {key: dict(value) for key, value in dict(inputs.get("md", {})).items()}
            md["lifdiff_md"] = {**md.get("lifdiff_md", {}), "code": runner}
            inputs.md = md
        if self.inputs.supercell.relax_lattice.value:
            # Each potential at its own lattice: the diffusion relaxes it and builds its own supercell.
            supercell = self.inputs.supercell
            inputs.supercell = {
                "repeat": supercell.repeat,
                "lattice_constant": supercell.lattice_constant,
                "interstitial_site": supercell.interstitial_site,
                "relax_lattice": supercell.relax_lattice,
            }
            inputs.lattice = {"code": self._code(potential, "barrier", self.inputs.codes.barrier)}
        else:
            inputs.structure = self.ctx.structure
        settings = inputs.md_settings.get_dict()
        if engine_for(potential, settings.get("engine")) == "lammps" and set(settings) & RUNNER_ONLY_SETTINGS:
            # One study, one set of MD settings: the runner's device/dtype/batching do not apply to LAMMPS.
            inputs.md_settings = orm.Dict({k: v for k, v in settings.items() if k not in RUNNER_ONLY_SETTINGS})
        # "study/potential", so `aiida-lifdiff results --label STUDY` finds every row of the study.
        label = f"{self.node.label}/{name}" if self.node.label else name
        inputs.metadata = {"call_link_label": f"diffusion_{name}", "label": label}
        return self.submit(DiffusionWorkChain, **inputs)

    def _submit_barriers(self, name: str, potential: PotentialData) -> None:
        if not self.inputs.barriers.value:
            return
        from aiida_lifdiff.workflows.barrier import BarrierWorkChain, barrier_inputs

        overrides = self.inputs.barrier_parameters.get_dict() if "barrier_parameters" in self.inputs else {}
        overrides.setdefault("lattice", {}).setdefault("a0_A", self.inputs.supercell.lattice_constant.value)
        inputs = barrier_inputs(potential, self._code(potential, "barrier", self.inputs.codes.barrier), overrides)
        label = f"{self.node.label}/{name}" if self.node.label else name
        inputs["metadata"] = {"call_link_label": f"barriers_{name}", "label": label}
        self.ctx.barrier_pks[name] = self.submit(BarrierWorkChain, **inputs).pk

    def run_given_diffusion(self) -> None:
        """Start the potentials that exist already now: they need not wait for any data or training."""
        self.ctx.early = {}
        self.ctx.barrier_pks = {}
        for name, potential in self.ctx.potentials.items():
            if name not in self.ctx.static_only:
                self.ctx.early[name] = self._submit_diffusion(name, potential).pk
            self._submit_barriers(name, potential)
        if self.ctx.early:
            self.report(f"diffusion started for {', '.join(sorted(self.ctx.early))}")

    def should_generate_data(self) -> bool:
        return "training_data" in self.inputs

    def generate_data(self):
        inputs = AttributeDict(self.exposed_inputs(TrainingDataWorkChain, "training_data"))
        inputs.structure = self.ctx.structure
        inputs.metadata = {"call_link_label": "training_data"}
        return ToContext(training_data=self.submit(TrainingDataWorkChain, **inputs))

    def inspect_data(self):
        node = self.ctx.training_data
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_TRAINING_DATA_FAILED.format(
                message=f"<{node.pk}> exit {node.exit_status}: {node.exit_message}"
            )
        self.ctx.datasets[GENERATED] = node.outputs.dataset
        self.out("generated_dataset", node.outputs.dataset)
        return None

    def prepare_data(self):
        """Hold out the evaluation set, then draw each model's frames from what is left."""
        evaluation = self.inputs.evaluation
        self.ctx.evaluation_set = evaluation.get("dataset")
        if "source" in evaluation:
            source = evaluation.source.value
            dataset = self.ctx.datasets[source]
            if evaluation.frames.value >= dataset.n_frames:
                return self.exit_codes.ERROR_NOT_ENOUGH_FRAMES.format(
                    message=f"evaluation.frames {evaluation.frames.value} of {dataset.n_frames} in {source!r}"
                )
            parts = select_frames(
                dataset, evaluation.frames, evaluation.seed, metadata={"call_link_label": "hold_out_evaluation"}
            )
            self.ctx.evaluation_set = parts["selected"]
            self.ctx.datasets[source] = parts["rest"]
        if self.ctx.evaluation_set is not None:
            self.out("evaluation_set", self.ctx.evaluation_set)

        self.ctx.training_sets = {}
        for name, spec in self.ctx.specs.items():
            dataset = self.ctx.datasets[spec["data"]]
            frames = spec.get("frames")
            if frames is not None:
                if frames > dataset.n_frames:
                    return self.exit_codes.ERROR_NOT_ENOUGH_FRAMES.format(
                        message=f"trainings.{name} asks for {frames} frames, {spec['data']!r} has {dataset.n_frames}"
                    )
                if frames < dataset.n_frames:
                    dataset = select_frames(
                        dataset,
                        orm.Int(frames),
                        orm.Int(spec.get("seed", 1)),
                        metadata={"call_link_label": f"frames_{name}"},
                    )["selected"]
            self.ctx.training_sets[name] = dataset
        return None

    def should_train(self) -> bool:
        return bool(self.ctx.specs)

    def _training_builder(self, name: str, spec: dict):
        protocol = self.inputs.training_protocol.value
        codes = self.inputs.codes
        if spec["kind"] == "deepmd":
            overrides = {"deepmd": {k: spec[k] for k in ("settings", "split", "seed") if k in spec}}
            return DeepmdTrainWorkChain.get_builder_from_protocol(
                codes.dp, self.ctx.training_sets[name], protocol, overrides, evaluation_code=codes.label
            )
        overrides = {"mace": {k: spec[k] for k in ("flags", "split", "seed") if k in spec}}
        foundation = self.ctx.potentials[spec["finetune_from"]] if spec.get("finetune_from") else None
        if spec.get("replay"):
            overrides["mace"]["finetune_mode"] = "multihead_finetune"
        elif foundation is not None:
            overrides["mace"]["finetune_mode"] = "naive_finetune"
        builder = FineTuneWorkChain.get_builder_from_protocol(
            codes.mace_train,
            self.ctx.training_sets[name],
            protocol,
            overrides,
            foundation=foundation,
            evaluation_code=codes.label,
        )
        if spec.get("replay"):
            builder.mace.replay = self.ctx.datasets[spec["replay"]]
        return builder

    def train(self):
        running = {}
        for name, spec in self.ctx.specs.items():
            builder = self._training_builder(name, spec)
            builder.metadata.call_link_label = f"train_{name}"
            builder.metadata.label = f"{self.node.label}/{name}" if self.node.label else name
            running[f"train_{name}"] = self.submit(builder)
        self.report(
            "training "
            + ", ".join(f"{name} ({self.ctx.training_sets[name].n_frames} frames)" for name in self.ctx.specs)
        )
        return ToContext(**running)

    def inspect_training(self) -> None:
        for name in self.ctx.specs:
            node = self.ctx[f"train_{name}"]
            if not node.is_finished_ok:
                self.ctx.failed[name] = f"training <{node.pk}> exit {node.exit_status}: {node.exit_message}"
                continue
            self.ctx.potentials[name] = node.outputs.model
            self.out(f"models.{name}", node.outputs.model)
            if "test_errors" in node.outputs:
                self.ctx.test_errors[name] = node.outputs.test_errors
                self.out(f"test_errors.{name}", node.outputs.test_errors)
        # The other potentials still run: a failed training costs its own row, not the study.
        if self.ctx.failed:
            self.report(f"training failed, continuing without: {'; '.join(self.ctx.failed.values())}")

    def run_diffusion_and_evaluation(self):
        running = {}
        for name, potential in self.ctx.potentials.items():
            if name not in self.ctx.early and name in self.ctx.static_only:
                continue
            if name not in self.ctx.early:
                running[f"diffusion_{name}"] = self._submit_diffusion(name, potential)
                self._submit_barriers(name, potential)
        for name, pk in self.ctx.barrier_pks.items():
            running[f"barriers_{name}"] = orm.load_node(pk)
        if running:
            self.report(f"diffusion started for {', '.join(sorted(k[len('diffusion_') :] for k in running))}")
        # Wait for every diffusion, including those started first (awaiting a finished one is a no-op).
        for name, pk in self.ctx.early.items():
            running[f"diffusion_{name}"] = orm.load_node(pk)
        if self.ctx.evaluation_set is not None:
            for name, potential in self.ctx.potentials.items():
                inputs = AttributeDict(
                    {
                        "potential": potential,
                        "dataset": self.ctx.evaluation_set,
                        "label": {"code": self._code(potential, "label", self.inputs.codes.label)},
                        "metadata": {"call_link_label": f"evaluate_{name}"},
                    }
                )
                running[f"evaluation_{name}"] = self.submit(EvaluationWorkChain, **inputs)
            count = len(self.ctx.potentials)
            self.report(f"evaluating {count} potentials on {self.ctx.evaluation_set.n_frames} frames")
        return ToContext(**running)

    def results(self):
        primary = self.inputs.diffusion.analysis.get("primary_mode", "collective")
        nodes: dict = {}
        failed_diffusion, failed_evaluation, failed_barriers = [], [], []
        for name, potential in self.ctx.potentials.items():
            nodes[f"{POTENTIAL_PREFIX}{name}"] = potential
            diffusion = self.ctx.get(f"diffusion_{name}")
            if diffusion is None:
                diffusion = _NoMd()
            if "arrhenius" in diffusion.outputs:
                nodes[f"{ARRHENIUS_PREFIX}{name}"] = diffusion.outputs.arrhenius
                self.out(f"arrhenius.{name}", diffusion.outputs.arrhenius)
            if "arrhenius_plot" in diffusion.outputs:
                self.out(f"arrhenius_plot.{name}", diffusion.outputs.arrhenius_plot)
            if not diffusion.is_finished_ok and name not in self.ctx.static_only:
                failed_diffusion.append(f"{name} (exit {diffusion.exit_status})")
            if "lattice" in diffusion.outputs:
                nodes[f"{LATTICE_PREFIX}{name}"] = diffusion.outputs.lattice
                self.out(f"lattice.{name}", diffusion.outputs.lattice)
            barrier = self.ctx.get(f"barriers_{name}")
            if barrier is not None:
                # An unconverged NEB still reports its band (flagged in the row); a failed run has no results.
                if "results" in barrier.outputs:
                    nodes[f"{BARRIERS_PREFIX}{name}"] = barrier.outputs.results
                    self.out(f"barriers.{name}", barrier.outputs.results)
                if "profiles" in barrier.outputs:
                    nodes[f"{PROFILES_PREFIX}{name}"] = barrier.outputs.profiles
                if not barrier.is_finished_ok:
                    failed_barriers.append(f"{name} <{barrier.pk}> exit {barrier.exit_status}")
            if name in self.ctx.test_errors:
                nodes[f"{TEST_ERRORS_PREFIX}{name}"] = self.ctx.test_errors[name]
            evaluation = self.ctx.get(f"evaluation_{name}")
            if evaluation is not None:
                if evaluation.is_finished_ok:
                    nodes[f"{EVALUATION_PREFIX}{name}"] = evaluation.outputs.errors
                    nodes[f"{PREDICTIONS_PREFIX}{name}"] = evaluation.outputs.predictions
                    self.out(f"evaluation_errors.{name}", evaluation.outputs.errors)
                else:
                    failed_evaluation.append(f"{name} <{evaluation.pk}> exit {evaluation.exit_status}")
        if self.ctx.evaluation_set is not None:
            nodes[EVALUATION_SET] = self.ctx.evaluation_set
        reference = self.inputs.reference.value if "reference" in self.inputs else None
        if reference is not None and reference not in self.ctx.potentials:
            self.report(f"the reference {reference!r} has no model ({self.ctx.failed.get(reference)}): no differences")
            reference = None
        parameters = {
            "primary_mode": primary,
            "reference": reference,
            "static_only": sorted(self.ctx.static_only),
            "title": self.node.label or "",
            # Potentials that never came to be still get a row, with the reason instead of numbers.
            "missing": {name: self.ctx.failed[name] for name in sorted(self.ctx.failed)},
        }
        outputs = compare_potentials(orm.Dict(parameters), **nodes, metadata={"call_link_label": "compare"})
        self.out("comparison", outputs["comparison"])
        self.out("arrhenius_overlay", outputs["arrhenius_overlay"])
        if "parity_overlay" in outputs:
            self.out("parity_overlay", outputs["parity_overlay"])
        if "barrier_overlay" in outputs:
            self.out("barrier_overlay", outputs["barrier_overlay"])

        for name, row in outputs["comparison"]["rows"].items():
            if row.get("fit_ok"):
                text = f"{name}: Ea = {row['Ea_eV']:.3f} +- {row['Ea_compare_err_eV']:.3f} eV ({primary})"
                if "delta_sigma" in row:
                    text += f", {row['delta_Ea_eV']:+.3f} eV = {row['delta_sigma']:+.1f} sigma from {reference}"
                self.report(text)
            else:
                self.report(f"{name}: no Ea: {row.get('reason')}")
        if self.ctx.failed:
            return self.exit_codes.ERROR_TRAINING_FAILED.format(
                names=", ".join(sorted(self.ctx.failed)), message="; ".join(self.ctx.failed.values())
            )
        if failed_diffusion:
            return self.exit_codes.ERROR_SOME_DIFFUSION_FAILED.format(names=", ".join(failed_diffusion))
        if failed_evaluation:
            return self.exit_codes.ERROR_EVALUATION_FAILED.format(
                names=", ".join(n.split()[0] for n in failed_evaluation), message="; ".join(failed_evaluation)
            )
        if failed_barriers:
            return self.exit_codes.ERROR_BARRIERS_FAILED.format(
                names=", ".join(n.split()[0] for n in failed_barriers), message="; ".join(failed_barriers)
            )
        return None
