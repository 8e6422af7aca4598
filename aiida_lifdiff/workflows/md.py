"""``MdWorkChain``: one NVT MD run, restarted until it delivers the whole trajectory."""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from aiida_lifdiff.calculations.lammps import LifdiffLammpsCalculation
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.workflows.functions.lammps_inputs import (
    MD_PARAMETERS,
    prepare_lammps_md,
    validate_md_parameters,
)
from aiida_lifdiff.workflows.functions.trajectory import concatenate_trajectories

#: Engine that runs MD for each potential kind; ML kinds join with their own engines.
ENGINES = {"classical": "lammps"}

#: Smallest timestep the lost-atoms handler goes down to before giving up.
MIN_TIMESTEP_FS = 0.125

#: Time LAMMPS keeps, at most, between its own timer stop and the scheduler walltime.
WALLTIME_MARGIN_S = 300


def validate_md_inputs(inputs: dict, _) -> str | None:
    """Refuse, before anything runs, a potential without an engine or one that misses the structure's species."""
    potential = inputs.get("potential")
    structure = inputs.get("structure")
    if potential is not None and potential.kind not in ENGINES:
        return f"no MD engine for potential kind {potential.kind!r} yet; supported: {sorted(ENGINES)}"
    if potential is not None and structure is not None:
        missing = set(structure.get_kind_names()) - set(potential.species)
        if missing:
            return f"potential {potential.label or potential.pk} covers {potential.species} but not {sorted(missing)}"
    if "parameters" in inputs:
        params = {k: v for k, v in MD_PARAMETERS.items() if v is not None}
        params.update(inputs["parameters"].get_dict())
        return validate_md_parameters(params)
    return None


class MdWorkChain(BaseRestartWorkChain):
    """NVT MD of one structure with one potential; handles walltime stops and exploding dynamics."""

    _process_class = LifdiffLammpsCalculation

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(
            LifdiffLammpsCalculation,
            namespace="lammps",
            exclude=("script", "files", "filenames", "settings", "parent_folder"),
            namespace_options={"help": "Code and scheduler options of the LAMMPS calculations."},
        )
        spec.input("structure", valid_type=orm.StructureData, help="The starting structure.")
        spec.input("potential", valid_type=PotentialData, help="The interatomic potential.")
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            help="MD settings: temperature_K, timestep_fs, n_steps (production), equilibration_steps, seed, "
            "dump_stride, thermo_stride, thermostat_damping_fs, timeout_s (stop before the walltime).",
        )
        spec.inputs.validator = validate_md_inputs
        spec.outline(
            cls.setup,
            cls.prepare_first_run,
            while_(cls.should_run_process)(cls.run_process, cls.inspect_process),
            cls.results,
        )
        spec.expose_outputs(LifdiffLammpsCalculation)
        spec.exit_code(
            410,
            "ERROR_TIMESTEP_TOO_SMALL",
            message="Atoms were lost even at the smallest allowed timestep ({timestep} fs): the structure or "
            "potential is unphysical.",
        )

    def setup(self) -> None:
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(LifdiffLammpsCalculation, "lammps"))
        self.ctx.md = {k: v for k, v in MD_PARAMETERS.items() if v is not None}
        self.ctx.md.update(self.inputs.parameters.get_dict())
        walltime = self.ctx.inputs.get("metadata", {}).get("options", {}).get("max_wallclock_seconds")
        if self.ctx.md.get("timeout_s") is None and walltime:
            # Stop LAMMPS on its own timer before the scheduler kills it, so a restart file is always written.
            self.ctx.md["timeout_s"] = max(0.9 * walltime, walltime - WALLTIME_MARGIN_S)
        self.ctx.segments = []

    def _set_script(self, parent_folder: orm.RemoteData | None = None) -> None:
        """Write the LAMMPS input for the current MD settings (a calcfunction, so every script is in the graph)."""
        prepared = prepare_lammps_md(self.inputs.structure, self.inputs.potential, orm.Dict(self.ctx.md))
        self.ctx.inputs.script = prepared["script"]
        self.ctx.inputs.files = {"data": prepared["data"]}
        self.ctx.inputs.settings = prepared["settings"]
        if parent_folder is None:
            self.ctx.inputs.pop("parent_folder", None)
        else:
            self.ctx.inputs.parent_folder = parent_folder

    def prepare_first_run(self) -> None:
        self.ctx.md["restart"] = False
        self._set_script()

    def get_outputs(self, node) -> dict:
        outputs = dict(self.exposed_outputs(node, LifdiffLammpsCalculation))
        if self.ctx.segments:
            segments = {f"segment_{i:03d}": s for i, s in enumerate(self.ctx.segments + [node.outputs.trajectory])}
            outputs["trajectory"] = concatenate_trajectories(**segments)
        return outputs

    @process_handler(priority=600, exit_codes=LifdiffLammpsCalculation.exit_codes.ERROR_OUT_OF_WALLTIME)
    def handle_out_of_walltime(self, node) -> ProcessHandlerReport:
        """LAMMPS stopped on its timer: continue from the restart file it wrote, keeping what is done."""
        self.ctx.segments.append(node.outputs.trajectory)
        self.ctx.md["restart"] = True
        self._set_script(parent_folder=node.outputs.remote_folder)
        self.report(
            f"run stopped at step {node.outputs.results['last_step']} of {self.ctx.md['n_steps']} on the "
            "timer: continuing from its restart file"
        )
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=500, exit_codes=LifdiffLammpsCalculation.exit_codes.ERROR_LOST_ATOMS)
    def handle_lost_atoms(self, node) -> ProcessHandlerReport:
        """Dynamics exploded: halve the timestep, keep the same times in ps, and start over."""
        timestep = float(self.ctx.md["timestep_fs"]) / 2
        if timestep < MIN_TIMESTEP_FS:
            return ProcessHandlerReport(
                do_break=True,
                exit_code=self.exit_codes.ERROR_TIMESTEP_TOO_SMALL.format(timestep=timestep * 2),
            )
        for key in ("n_steps", "equilibration_steps", "dump_stride", "thermo_stride"):
            self.ctx.md[key] = int(self.ctx.md[key]) * 2
        self.ctx.md["timestep_fs"] = timestep
        self.ctx.md["restart"] = False
        self.ctx.segments = []
        self._set_script()
        self.report(f"atoms were lost: restarting from scratch with a timestep of {timestep} fs")
        return ProcessHandlerReport(do_break=True)
