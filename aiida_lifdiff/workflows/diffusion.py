"""``DiffusionWorkChain``: one potential, temperatures x replicas of MD -> D(T) -> Arrhenius Ea."""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_

from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.protocols import get_protocol_inputs
from aiida_lifdiff.workflows.functions.arrhenius import fit_arrhenius
from aiida_lifdiff.workflows.functions.diffusivity import compute_diffusivity, validate_diffusivity_parameters
from aiida_lifdiff.workflows.functions.structures import (
    create_lif_supercell,
    relaxed_lattice_constant,
    validate_supercell_settings,
)
from aiida_lifdiff.workflows.md import ENGINE_NAMESPACES, MdWorkChain, engine_for

#: Keys of ``md_settings`` (times in the units of their names) and their defaults (None = required).
MD_SETTINGS = {
    "timestep_fs": None,
    "production_ps": None,
    "equilibration_ps": 0.0,
    "frame_interval_fs": None,
    "thermo_interval_fs": None,
    "thermostat_damping_fs": 100.0,
    "timeout_s": None,
    # Engine choice and runner-only settings (MACE, or DeePMD through the runner).
    "engine": None,
    "device": None,
    "dtype": None,
    "members_per_job": None,
}
RUNNER_SETTINGS = ("device", "dtype")

MIN_TEMPERATURES = 3


def md_parameters_from_settings(settings: dict, members: list[dict]) -> dict:
    """Translate times in fs/ps into the step counts of one MD job; raise ValueError if they do not divide."""
    unknown = set(settings) - set(MD_SETTINGS)
    if unknown:
        raise ValueError(f"unknown md_settings {sorted(unknown)}; allowed: {sorted(MD_SETTINGS)}")
    missing = [
        k for k in ("timestep_fs", "production_ps", "frame_interval_fs", "thermo_interval_fs") if k not in settings
    ]
    if missing:
        raise ValueError(f"md_settings misses {missing}")
    dt = float(settings["timestep_fs"])
    if dt <= 0:
        raise ValueError(f"timestep_fs must be > 0, got {dt}")

    def steps(value_fs: float, name: str) -> int:
        count = value_fs / dt
        if abs(count - round(count)) > 1e-6 or (name != "equilibration" and round(count) < 1):
            raise ValueError(f"{name} ({value_fs} fs) must be a positive whole number of timesteps ({dt} fs)")
        return int(round(count))

    n_steps = steps(float(settings["production_ps"]) * 1000.0, "production")
    stride = steps(float(settings["frame_interval_fs"]), "frame_interval")
    if n_steps % stride:
        raise ValueError(
            f"production_ps must be a whole number of frame intervals ({settings['frame_interval_fs']} fs)"
        )
    parameters = {
        "timestep_fs": dt,
        "n_steps": n_steps,
        "equilibration_steps": steps(float(settings.get("equilibration_ps", 0.0)) * 1000.0, "equilibration"),
        "dump_stride": stride,
        "thermo_stride": steps(float(settings["thermo_interval_fs"]), "thermo_interval"),
        "thermostat_damping_fs": float(settings.get("thermostat_damping_fs", 100.0)),
        "members": members,
    }
    if settings.get("timeout_s") is not None:
        parameters["timeout_s"] = float(settings["timeout_s"])
    for key in RUNNER_SETTINGS:
        if settings.get(key) is not None:
            parameters[key] = settings[key]
    return parameters


def member_name(t_index: int, r_index: int) -> str:
    return f"T{t_index}_r{r_index}"


def run_seed(base_seed: int, temperature_index: int) -> int:
    """A distinct, reproducible seed per (replica, temperature) so no two runs share velocity draws."""
    return int(base_seed) * 1000 + 17 * temperature_index + 1


def validate_diffusion_inputs(inputs: dict, _) -> str | None:
    """Refuse unusable studies before anything is stored or run."""
    temperatures = inputs.get("temperatures")
    if temperatures is not None:
        values = temperatures.get_list()
        if len(set(values)) < MIN_TEMPERATURES:
            return f"an Arrhenius fit needs at least {MIN_TEMPERATURES} distinct temperatures, got {values}"
        if any(float(t) <= 0 for t in values):
            return f"temperatures must be > 0 K, got {values}"
    seeds = inputs.get("seeds")
    if seeds is not None:
        values = seeds.get_list()
        if not values or len(set(values)) != len(values) or any(int(s) < 0 for s in values):
            return f"seeds must be distinct non-negative integers (one per replica), got {values}"
    supercell = inputs.get("supercell", {})
    relax = "relax_lattice" in supercell and supercell["relax_lattice"].value
    if relax and inputs.get("structure") is not None:
        return "supercell.relax_lattice builds the structure at the relaxed lattice constant: give no `structure`"
    if relax and "code" not in inputs.get("lattice", {}):
        return "supercell.relax_lattice needs `lattice.code` (the lifdiff-barrier code that relaxes the crystal)"
    if "structure" not in inputs:
        message = validate_supercell_settings(
            supercell["repeat"].value if "repeat" in supercell else None,
            supercell["lattice_constant"].value if "lattice_constant" in supercell else None,
            supercell["interstitial_site"].value if "interstitial_site" in supercell else None,
        )
        if message:
            return message
    if "md_settings" in inputs and temperatures is not None:
        settings = inputs["md_settings"].get_dict()
        try:
            md_parameters_from_settings(settings, [])
        except ValueError as exception:
            return str(exception)
        potential = inputs.get("potential")
        if potential is not None:
            try:
                engine = engine_for(potential, settings.get("engine"))
            except ValueError as exception:
                return str(exception)
            if engine == "lammps" and any(settings.get(k) is not None for k in RUNNER_SETTINGS):
                return f"{list(RUNNER_SETTINGS)} apply to the runner engine only, not to LAMMPS"
            namespace = ENGINE_NAMESPACES[engine]
            if "code" not in inputs.get("md", {}).get(namespace, {}):
                return f"the {engine!r} engine runs this {potential.kind} potential: give `md.{namespace}.code`"
    if "analysis" in inputs:
        analysis = {k: v for k, v in inputs["analysis"].get_dict().items() if k != "primary_mode"}
        message = validate_diffusivity_parameters(analysis)
        if message:
            return message
        primary = inputs["analysis"].get("primary_mode", "collective")
        if primary not in analysis.get("modes", ("tracer", "collective")):
            return f"primary_mode {primary!r} is not among the computed modes"
    potential = inputs.get("potential")
    if potential is not None and not potential.covers(("Li", "F")):
        return f"the potential covers {potential.species}; LiF needs Li and F"
    return None


class DiffusionWorkChain(WorkChain):
    """Li diffusivity in LiF at several temperatures with one potential, and the Arrhenius activation energy."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("potential", valid_type=PotentialData, help="The interatomic potential to study.")
        spec.input(
            "structure",
            valid_type=orm.StructureData,
            required=False,
            help="Starting structure; if absent it is built from the `supercell` inputs.",
        )
        spec.input_namespace("supercell", help="How to build the LiF supercell with one interstitial Li.")
        spec.input("supercell.repeat", valid_type=orm.Int, required=False, help="Conventional cubes per axis.")
        spec.input(
            "supercell.lattice_constant",
            valid_type=orm.Float,
            required=False,
            help="Cubic lattice constant (A).",
        )
        spec.input(
            "supercell.interstitial_site",
            valid_type=orm.Str,
            required=False,
            help="Starting site of the extra Li.",
        )
        spec.input(
            "supercell.relax_lattice",
            valid_type=orm.Bool,
            default=lambda: orm.Bool(False),
            help="Relax the perfect crystal's lattice constant with this potential first (0 K, E(V) fit, "
            "`lattice.code`) and build the supercell at it; `lattice_constant` is then the starting guess.",
        )
        spec.input_namespace("lattice", help="The lattice relaxation (supercell.relax_lattice).")
        spec.input(
            "lattice.code",
            valid_type=orm.AbstractCode,
            required=False,
            help="lifdiff-barrier code (an environment with this potential's package) that relaxes the lattice.",
        )
        spec.input(
            "lattice.parameters",
            valid_type=orm.Dict,
            required=False,
            help="Settings of the relaxation over the defaults: lattice {strain, n_points}, device, dtype.",
        )
        spec.input("temperatures", valid_type=orm.List, help="Temperatures in K (at least three distinct).")
        spec.input("seeds", valid_type=orm.List, help="One base seed per replica; each temperature runs them all.")
        spec.input(
            "md_settings",
            valid_type=orm.Dict,
            help="timestep_fs, production_ps, equilibration_ps, frame_interval_fs, thermo_interval_fs, "
            "thermostat_damping_fs, optional timeout_s, engine (lammps|runner), and for the runner device, dtype "
            "and members_per_job (how many (T, seed) members share one batched calculation; default the replicas "
            "of one temperature, so that a cached study with one more temperature reruns none of the others).",
        )
        spec.input(
            "analysis",
            valid_type=orm.Dict,
            help="n_blocks, fit_window (fractions of a block), modes (tracer/collective), primary_mode.",
        )
        spec.expose_inputs(
            MdWorkChain,
            namespace="md",
            exclude=("structure", "potential", "parameters", "engine"),
            namespace_options={"help": "Inputs of the MdWorkChains: the LAMMPS code and scheduler options."},
        )
        spec.inputs.validator = validate_diffusion_inputs

        spec.outline(
            if_(cls.should_relax_lattice)(cls.relax_lattice, cls.inspect_lattice),
            cls.setup,
            cls.run_md,
            cls.inspect_md,
            cls.compute_diffusivities,
            cls.fit,
        )
        spec.output("structure", valid_type=orm.StructureData, help="The starting structure of every MD run.")
        spec.output(
            "lattice",
            valid_type=orm.Dict,
            required=False,
            help="The relaxed lattice of this potential: a0_A, B0_GPa and the E(V) points (supercell.relax_lattice).",
        )
        spec.output_namespace("diffusivity", valid_type=orm.Dict, dynamic=True, help="D per temperature.")
        spec.output_namespace("msd", valid_type=orm.ArrayData, dynamic=True, help="MSD curves per temperature.")
        spec.output("arrhenius", valid_type=orm.Dict, required=False, help="Ea, D0 and D(300 K) with errors.")
        spec.output("arrhenius_plot", valid_type=orm.SinglefileData, required=False, help="Arrhenius plot (PNG).")
        spec.exit_code(
            419, "ERROR_LATTICE_RELAXATION_FAILED", message="The lattice relaxation <{pk}> failed: {message}"
        )
        spec.exit_code(420, "ERROR_MD_FAILED", message="{count} MD runs failed: {failed}")
        spec.exit_code(
            421,
            "ERROR_ARRHENIUS_FIT_FAILED",
            message="No activation energy for the {mode} diffusivity: {reason}",
        )

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        potential: PotentialData,
        protocol: str | None = None,
        overrides: dict | None = None,
        lattice_code: orm.AbstractCode | None = None,
    ):
        """A builder with the inputs of ``protocol`` (see ``protocols/diffusion.yaml``) and ``overrides``.

        The protocols relax each potential's lattice first (``supercell.relax_lattice``), which needs
        ``lattice_code`` (lifdiff-barrier); ``overrides={"supercell": {"relax_lattice": False}}`` keeps
        ``lattice_constant`` fixed instead.
        """
        values = get_protocol_inputs("diffusion", protocol, overrides)
        builder = cls.get_builder()
        builder.potential = potential
        builder.supercell.repeat = orm.Int(values["supercell"]["repeat"])
        builder.supercell.lattice_constant = orm.Float(values["supercell"]["lattice_constant"])
        builder.supercell.interstitial_site = orm.Str(values["supercell"]["interstitial_site"])
        relax = bool(values["supercell"].get("relax_lattice", False))
        if relax and lattice_code is None:
            raise ValueError(
                "the protocol relaxes the lattice of the potential: pass lattice_code (the lifdiff-barrier code), "
                "or overrides {'supercell': {'relax_lattice': False}} to keep lattice_constant fixed"
            )
        builder.supercell.relax_lattice = orm.Bool(relax)
        if relax:
            builder.lattice.code = lattice_code
        builder.temperatures = orm.List([float(t) for t in values["temperatures_K"]])
        builder.seeds = orm.List([int(s) for s in values["seeds"]])
        builder.md_settings = orm.Dict(values["md_settings"])
        builder.analysis = orm.Dict(values["analysis"])
        engine = engine_for(potential, values["md_settings"].get("engine"))
        namespace = builder.md[ENGINE_NAMESPACES[engine]]
        namespace.code = code
        namespace.metadata.options.max_wallclock_seconds = int(values["max_wallclock_seconds"])
        return builder

    def should_relax_lattice(self) -> bool:
        return bool(self.inputs.supercell.relax_lattice.value)

    def relax_lattice(self):
        from aiida_lifdiff.workflows.barrier import lattice_relaxation_inputs

        inputs = lattice_relaxation_inputs(
            self.inputs.potential,
            self.inputs.lattice.code,
            guess=self.inputs.supercell.lattice_constant.value,
            overrides=self.inputs.lattice.parameters.get_dict() if "parameters" in self.inputs.lattice else None,
        )
        inputs["metadata"] = {"call_link_label": "relax_lattice"}
        from aiida_lifdiff.workflows.barrier import BarrierWorkChain

        return ToContext(lattice=self.submit(BarrierWorkChain, **inputs))

    def inspect_lattice(self):
        node = self.ctx.lattice
        if not node.is_finished_ok or "results" not in node.outputs:
            return self.exit_codes.ERROR_LATTICE_RELAXATION_FAILED.format(
                pk=node.pk, message=f"exit {node.exit_status}: {node.exit_message}"
            )
        self.out("lattice", node.outputs.results)
        results = node.outputs.results
        self.report(f"relaxed lattice constant a0 = {results['a0_A']:.4f} A (B0 = {results.get('B0_GPa', 0):.0f} GPa)")
        return None

    def setup(self) -> None:
        if "structure" in self.inputs:
            self.ctx.structure = self.inputs.structure
        else:
            if self.should_relax_lattice():
                lattice_constant = relaxed_lattice_constant(self.ctx.lattice.outputs.results)
            else:
                lattice_constant = self.inputs.supercell.lattice_constant
            self.ctx.structure = create_lif_supercell(
                self.inputs.supercell.repeat, lattice_constant, self.inputs.supercell.interstitial_site
            )
        self.out("structure", self.ctx.structure)

    def run_md(self):
        settings = self.inputs.md_settings.get_dict()
        engine = engine_for(self.inputs.potential, settings.get("engine"))
        members = [
            {
                "name": member_name(t_index, r_index),
                "temperature_K": float(temperature),
                "seed": run_seed(base_seed, t_index),
            }
            for t_index, temperature in enumerate(self.inputs.temperatures.get_list())
            for r_index, base_seed in enumerate(self.inputs.seeds.get_list())
        ]
        if engine == "lammps":
            jobs = [[member] for member in members]
        else:
            # Default: one job per temperature. A job spanning temperatures would change (and miss the cache)
            # whenever a temperature is added to the study.
            size = int(settings.get("members_per_job") or len(self.inputs.seeds.get_list()))
            jobs = [members[i : i + size] for i in range(0, len(members), size)]
        running = {}
        self.ctx.job_of_member = {}
        for index, job in enumerate(jobs):
            inputs = AttributeDict(self.exposed_inputs(MdWorkChain, "md"))
            inputs.structure = self.ctx.structure
            inputs.potential = self.inputs.potential
            inputs.engine = orm.Str(engine)
            inputs.parameters = orm.Dict(md_parameters_from_settings(settings, job))
            key = f"md_{index}"
            inputs.metadata = {"call_link_label": key}
            running[key] = self.submit(MdWorkChain, **inputs)
            for member in job:
                self.ctx.job_of_member[member["name"]] = key
        self.report(f"submitted {len(running)} MdWorkChains ({engine}) for {len(members)} MD runs")
        return ToContext(**running)

    def _replica_trajectories(self, t_index: int) -> dict[str, orm.TrajectoryData]:
        found = {}
        for r_index in range(len(self.inputs.seeds.get_list())):
            name = member_name(t_index, r_index)
            job = self.ctx[self.ctx.job_of_member[name]]
            if "trajectories" in job.outputs and name in job.outputs.trajectories:
                found[f"replica_{r_index}"] = job.outputs.trajectories[name]
        return found

    def inspect_md(self):
        jobs = sorted(set(self.ctx.job_of_member.values()))
        failed = [
            f"{key}<{self.ctx[key].pk}> (exit {self.ctx[key].exit_status})"
            for key in jobs
            if not self.ctx[key].is_finished_ok
            and self.ctx[key].exit_status != MdWorkChain.exit_codes.ERROR_SOME_MEMBERS_FAILED.status
        ]
        if failed:
            return self.exit_codes.ERROR_MD_FAILED.format(count=len(failed), failed=", ".join(failed))
        lost = [
            name
            for name, key in self.ctx.job_of_member.items()
            if "trajectories" not in self.ctx[key].outputs or name not in self.ctx[key].outputs.trajectories
        ]
        if lost:
            self.report(f"members without a trajectory (left out of the analysis): {', '.join(sorted(lost))}")
        return None

    def compute_diffusivities(self) -> None:
        analysis = {k: v for k, v in self.inputs.analysis.get_dict().items() if k != "primary_mode"}
        parameters = orm.Dict(analysis)
        self.ctx.diffusivities = {}
        for t_index, temperature in enumerate(self.inputs.temperatures.get_list()):
            trajectories = self._replica_trajectories(t_index)
            if not trajectories:
                self.report(f"T = {temperature:.0f} K: every replica failed, no diffusivity")
                continue
            result = compute_diffusivity(parameters, **trajectories)
            label = f"T_{t_index}"
            self.ctx.diffusivities[label] = result["diffusivity"]
            self.out(f"diffusivity.{label}", result["diffusivity"])
            self.out(f"msd.{label}", result["msd"])
            for mode in analysis.get("modes", ("tracer", "collective")):
                entry = result["diffusivity"][mode]
                flag = "" if entry["diffusive"] else f"  NOT DIFFUSIVE: {entry['diagnosis']}"
                self.report(
                    f"T = {temperature:.0f} K {mode}: D = {entry['D_cm2_s']:.3e} +- {entry['D_err_cm2_s']:.1e} "
                    f"cm^2/s{flag}"
                )

    def fit(self):
        primary = self.inputs.analysis.get("primary_mode", "collective")
        potential = self.inputs.potential
        title = f"{potential.label or potential.kind} ({potential.kind})"
        result = fit_arrhenius(orm.Dict({"primary_mode": primary, "title": title}), **self.ctx.diffusivities)
        self.out("arrhenius", result["arrhenius"])
        if "plot" in result:
            self.out("arrhenius_plot", result["plot"])
        record = result["arrhenius"][primary]
        if not record["fit_ok"]:
            return self.exit_codes.ERROR_ARRHENIUS_FIT_FAILED.format(mode=primary, reason=record["reason"])
        self.report(f"Ea ({primary}) = {record['Ea_eV']:.3f} +- {record['Ea_err_eV']:.3f} eV")
        return None
