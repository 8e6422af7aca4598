"""``MdWorkChain``: NVT MD of one structure with one potential, restarted until the trajectories are complete.

The engine follows the potential: classical and DeePMD models run in LAMMPS (``lifdiff.lammps``, one
member per calculation), MACE models in the batched ``lifdiff-md`` runner (``lifdiff.md``, many
members (temperature, seed) per calculation). DeePMD can also go through the runner (``engine='runner'``).
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from aiida_lifdiff.calculations.lammps import LifdiffLammpsCalculation
from aiida_lifdiff.calculations.md import LifdiffMdCalculation, validate_runner_parameters
from aiida_lifdiff.codes import with_computer_options
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.workflows.functions.lammps_inputs import (
    MD_PARAMETERS,
    prepare_lammps_md,
    validate_md_parameters,
)
from aiida_lifdiff.workflows.functions.trajectory import concatenate_trajectories

#: Which engine runs each potential kind by default, and which it may run.
DEFAULT_ENGINE = {"classical": "lammps", "deepmd": "lammps", "mace": "runner", "universal": "runner"}
ALLOWED_ENGINES = {
    "classical": ("lammps",),
    "deepmd": ("lammps", "runner"),
    "mace": ("runner",),
    "universal": ("runner",),
}
ENGINE_CALCULATIONS = {"lammps": LifdiffLammpsCalculation, "runner": LifdiffMdCalculation}
#: Input namespace of each engine's code and options (``runner`` itself would clash with the engine's
#: ``runner`` keyword of ``submit``).
ENGINE_NAMESPACES = {"lammps": "lammps", "runner": "lifdiff_md"}

#: Settings shared by both engines; ``members`` lists {name, temperature_K, seed}.
COMMON_KEYS = (
    "timestep_fs",
    "n_steps",
    "equilibration_steps",
    "dump_stride",
    "thermo_stride",
    "thermostat_damping_fs",
    "timeout_s",
    "members",
)
RUNNER_ONLY_KEYS = ("device", "dtype", "batch_size", "checkpoint_stride")

#: Smallest timestep the lost-atoms handler goes down to before giving up.
MIN_TIMESTEP_FS = 0.125

#: Time LAMMPS keeps, at most, between its own timer stop and the scheduler walltime.
WALLTIME_MARGIN_S = 300


def engine_for(potential: PotentialData, requested: str | None = None) -> str:
    """The engine that runs ``potential``; raise ValueError for a combination that cannot run."""
    if potential.kind not in DEFAULT_ENGINE:
        raise ValueError(f"no MD engine for potential kind {potential.kind!r}")
    engine = requested or DEFAULT_ENGINE[potential.kind]
    if engine not in ALLOWED_ENGINES[potential.kind]:
        raise ValueError(
            f"a {potential.kind} potential cannot run in {engine!r}; possible: {ALLOWED_ENGINES[potential.kind]}"
        )
    return engine


def validate_md_inputs(inputs: dict, _) -> str | None:
    """Refuse, before anything runs, an engine that cannot run the potential, missing species, bad settings."""
    potential = inputs.get("potential")
    structure = inputs.get("structure")
    if potential is None or "parameters" not in inputs:
        return None
    try:
        engine = engine_for(potential, inputs["engine"].value if "engine" in inputs else None)
    except ValueError as exception:
        return str(exception)
    if structure is not None:
        missing = set(structure.get_kind_names()) - set(potential.species)
        if missing:
            return f"potential {potential.label or potential.pk} covers {potential.species} but not {sorted(missing)}"
    namespace = ENGINE_NAMESPACES[engine]
    if namespace not in inputs or "code" not in inputs[namespace]:
        return f"the {engine!r} engine runs this {potential.kind} potential: give `{namespace}.code`"
    if engine == "runner":
        from aiida_lifdiff.calculations.model_spec import check_code_environment

        message = check_code_environment(potential, inputs[namespace]["code"])
        if message:
            return message
    parameters = inputs["parameters"].get_dict()
    unknown = set(parameters) - set(COMMON_KEYS) - set(RUNNER_ONLY_KEYS)
    if unknown:
        return f"unknown MD parameters {sorted(unknown)}; allowed: {sorted(COMMON_KEYS + RUNNER_ONLY_KEYS)}"
    members = parameters.get("members") or []
    if engine == "lammps":
        if len(members) != 1:
            return f"the LAMMPS engine runs one member per calculation, got {len(members)}"
        extra = set(parameters) & set(RUNNER_ONLY_KEYS)
        if extra:
            return f"{sorted(extra)} only apply to the runner engine"
        return validate_md_parameters(lammps_parameters(parameters))
    return validate_runner_parameters(parameters)


def lammps_parameters(parameters: dict) -> dict:
    """The single-member LAMMPS parameters of a one-member MD parameter set."""
    member = parameters["members"][0]
    params = {k: v for k, v in MD_PARAMETERS.items() if v is not None}
    params.update({k: v for k, v in parameters.items() if k != "members"})
    params.update(temperature_K=float(member["temperature_K"]), seed=int(member["seed"]))
    return params


class MdWorkChain(BaseRestartWorkChain):
    """NVT MD of a structure with a potential at one or more (temperature, seed) members."""

    _process_class = LifdiffLammpsCalculation  # replaced per instance by the engine of the potential

    @property
    def process_class(self):
        return ENGINE_CALCULATIONS[self.ctx.engine] if "engine" in self.ctx else self._process_class

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(
            LifdiffLammpsCalculation,
            namespace="lammps",
            exclude=("script", "files", "filenames", "settings", "parent_folder"),
            namespace_options={
                "required": False,
                "populate_defaults": False,
                "help": "LAMMPS code and scheduler options (classical and DeePMD potentials).",
            },
        )
        spec.expose_inputs(
            LifdiffMdCalculation,
            namespace="lifdiff_md",
            exclude=("structure", "potential", "parameters", "parent_folder"),
            namespace_options={
                "required": False,
                "populate_defaults": False,
                "help": "lifdiff-md code and scheduler options (MACE, or DeePMD with engine=runner).",
            },
        )
        spec.input("structure", valid_type=orm.StructureData, help="The starting structure.")
        spec.input("potential", valid_type=PotentialData, help="The interatomic potential.")
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            help="MD settings: timestep_fs, n_steps (production), equilibration_steps, dump_stride, thermo_stride, "
            "thermostat_damping_fs, timeout_s, members [{name, temperature_K, seed}] (one for LAMMPS); runner only: "
            "device, dtype, batch_size, checkpoint_stride.",
        )
        spec.input(
            "engine",
            valid_type=orm.Str,
            required=False,
            help="Override the engine chosen from the potential kind ('lammps' or 'runner').",
        )
        spec.inputs.validator = validate_md_inputs
        spec.outline(
            cls.setup,
            cls.prepare_first_run,
            while_(cls.should_run_process)(cls.run_process, cls.inspect_process),
            cls.results,
        )
        spec.output_namespace(
            "trajectories", valid_type=orm.TrajectoryData, dynamic=True, help="Complete trajectory per member."
        )
        spec.output_namespace("thermo", valid_type=orm.ArrayData, dynamic=True, help="Thermo log per member.")
        spec.output("results", valid_type=orm.Dict, required=False, help="Results of the last calculation.")
        spec.exit_code(
            410,
            "ERROR_TIMESTEP_TOO_SMALL",
            message="Atoms were lost even at the smallest allowed timestep ({timestep} fs): the structure or "
            "potential is unphysical.",
        )
        spec.exit_code(
            411,
            "ERROR_SOME_MEMBERS_FAILED",
            message="{count} member(s) failed; the trajectories of the others are in the outputs: {details}",
        )
        spec.exit_code(
            412,
            "ERROR_UNKNOWN_WALLTIME",
            message="The scheduler killed a calculation at a time limit the inputs do not state: set "
            "metadata.options.max_wallclock_seconds so that the engine can stop itself in time.",
        )

    def setup(self) -> None:
        self.ctx.engine = engine_for(
            self.inputs.potential, self.inputs.engine.value if "engine" in self.inputs else None
        )
        super().setup()
        # Partition, account and GPU request of the code's computer (`setup slurm`); explicit options win.
        self.ctx.inputs = with_computer_options(
            self.exposed_inputs(self.process_class, ENGINE_NAMESPACES[self.ctx.engine])
        )
        self.ctx.md = dict(self.inputs.parameters.get_dict())
        walltime = self.ctx.inputs.get("metadata", {}).get("options", {}).get("max_wallclock_seconds")
        if self.ctx.md.get("timeout_s") is None and walltime:
            # Stop on the engine's own timer before the scheduler kills it, so a restart file is always written.
            self.ctx.md["timeout_s"] = max(0.9 * walltime, walltime - WALLTIME_MARGIN_S)
        self.ctx.segments = {member["name"]: [] for member in self.ctx.md["members"]}

    def _set_inputs(self, parent_folder: orm.RemoteData | None = None, restart: bool = False) -> None:
        """Inputs of the next calculation for the current MD settings."""
        if self.ctx.engine == "lammps":
            params = lammps_parameters(self.ctx.md)
            params["restart"] = restart
            # A calcfunction, so that every LAMMPS script that ran is a node of the graph.
            prepared = prepare_lammps_md(self.inputs.structure, self.inputs.potential, orm.Dict(params))
            self.ctx.inputs.script = prepared["script"]
            self.ctx.inputs.files = {"data": prepared["data"]}
            self.ctx.inputs.settings = prepared["settings"]
            if self.inputs.potential.kind != "classical":
                self.ctx.inputs.files["model"] = self.inputs.potential
        else:
            self.ctx.inputs.structure = self.inputs.structure
            self.ctx.inputs.potential = self.inputs.potential
            self.ctx.inputs.parameters = orm.Dict({k: v for k, v in self.ctx.md.items() if v is not None})
        if parent_folder is None:
            self.ctx.inputs.pop("parent_folder", None)
        else:
            self.ctx.inputs.parent_folder = parent_folder

    def prepare_first_run(self) -> None:
        self._set_inputs()

    def _member_trajectories(self, node) -> dict[str, orm.TrajectoryData]:
        if self.ctx.engine == "lammps":
            if "trajectory" not in node.outputs:
                return {}
            return {self.ctx.md["members"][0]["name"]: node.outputs.trajectory}
        return dict(node.outputs.trajectories) if "trajectories" in node.outputs else {}

    def _member_thermo(self, node) -> dict[str, orm.ArrayData]:
        if self.ctx.engine == "lammps":
            return {self.ctx.md["members"][0]["name"]: node.outputs.thermo} if "thermo" in node.outputs else {}
        return dict(node.outputs.thermo) if "thermo" in node.outputs else {}

    def get_outputs(self, node) -> dict:
        outputs: dict = {"trajectories": {}, "thermo": self._member_thermo(node)}
        last = self._member_trajectories(node)
        for name, segments in self.ctx.segments.items():
            # A member may have finished in an earlier segment and have nothing in the last calculation.
            pieces = segments + ([last[name]] if name in last else [])
            if len(pieces) == 1:
                outputs["trajectories"][name] = pieces[0]
            elif pieces:
                joined = {f"segment_{i:03d}": s for i, s in enumerate(pieces)}
                outputs["trajectories"][name] = concatenate_trajectories(**joined)
        if "results" in node.outputs:
            outputs["results"] = node.outputs.results
        return outputs

    @process_handler(priority=600, exit_codes=LifdiffLammpsCalculation.exit_codes.ERROR_OUT_OF_WALLTIME)
    def handle_out_of_walltime(self, node) -> ProcessHandlerReport:
        """The engine stopped on its timer: continue from the restart file it wrote, keeping what is done.

        Both engines use exit status 400 for this, so one handler serves both.
        """
        for name, trajectory in self._member_trajectories(node).items():
            self.ctx.segments[name].append(trajectory)
        self._set_inputs(parent_folder=node.outputs.remote_folder, restart=True)
        self.report(f"{node.process_label}<{node.pk}> stopped on its timer: continuing from its restart file")
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=610, exit_codes=LifdiffLammpsCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME)
    def handle_scheduler_walltime(self, node) -> ProcessHandlerReport:
        """The scheduler killed the job at its walltime before the engine's own timer stopped it.

        That happens when start-up or a slow node eats the margin, or when the timer was set by hand. The
        killed run left no restart file, so the same segment runs again with the engine's timer at half of
        what failed: the next run stops itself, writes its restart file, and the walltime handler above
        continues from there.
        """
        walltime = node.get_option("max_wallclock_seconds")
        previous = self.ctx.md.get("timeout_s") or walltime
        if not previous:
            return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_UNKNOWN_WALLTIME)
        timeout = 0.5 * min(float(previous), float(walltime or previous))
        self.ctx.md["timeout_s"] = timeout
        parent = self.ctx.inputs.get("parent_folder")
        self._set_inputs(parent_folder=parent, restart=parent is not None)
        self.report(
            f"{node.process_label}<{node.pk}> was killed by the scheduler at its walltime ({walltime} s): "
            f"running the segment again with the engine stopping itself after {timeout:.0f} s"
        )
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=500, exit_codes=LifdiffLammpsCalculation.exit_codes.ERROR_LOST_ATOMS)
    def handle_lost_atoms(self, node) -> ProcessHandlerReport:
        """Dynamics exploded in LAMMPS: halve the timestep, keep the same times in ps, and start over."""
        timestep = float(self.ctx.md["timestep_fs"]) / 2
        if timestep < MIN_TIMESTEP_FS:
            return ProcessHandlerReport(
                do_break=True, exit_code=self.exit_codes.ERROR_TIMESTEP_TOO_SMALL.format(timestep=timestep * 2)
            )
        for key in ("n_steps", "equilibration_steps", "dump_stride", "thermo_stride"):
            if key in self.ctx.md:
                self.ctx.md[key] = int(self.ctx.md[key]) * 2
        self.ctx.md["timestep_fs"] = timestep
        self.ctx.segments = {name: [] for name in self.ctx.segments}
        self._set_inputs()
        self.report(f"atoms were lost: restarting from scratch with a timestep of {timestep} fs")
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=400, exit_codes=LifdiffMdCalculation.exit_codes.ERROR_MEMBERS_FAILED)
    def handle_failed_members(self, node) -> ProcessHandlerReport:
        """Some members exploded (NaN or runaway energies): keep the others, report the failed ones.

        Rerunning would repeat the same dynamics, so the finished members are attached and the work chain
        ends with its own exit code naming the failed ones.
        """
        failed = node.outputs.results.get("failed_members", [])
        self.ctx.is_finished = True
        self.results()
        return ProcessHandlerReport(
            do_break=True,
            exit_code=self.exit_codes.ERROR_SOME_MEMBERS_FAILED.format(count=len(failed), details="; ".join(failed)),
        )
