"""``lifdiff.lammps``: aiida-lammps' ``lammps.raw`` with the outputs and exit codes of an MD run.

``lammps.raw`` stages our own input script and data file unchanged; this subclass only adds what an MD
run needs around it: retrieving the dump and thermo files, copying a restart file from a parent run,
and declaring the trajectory outputs and the failure modes that :class:`~aiida_lifdiff.workflows.md.MdWorkChain`
knows how to handle.
"""

from __future__ import annotations

from aiida import orm
from aiida.common.datastructures import CalcInfo
from aiida.common.folders import Folder
from aiida_lammps.calculations.raw import LammpsRawCalculation

from aiida_lifdiff.engines import lammps_input

#: Name under which the parent's final restart file is copied into a continued run.
CONTINUE_RESTART_FILE = "parent.restart"


class LifdiffLammpsCalculation(LammpsRawCalculation):
    """Run a LAMMPS MD input written by :func:`~aiida_lifdiff.workflows.functions.lammps_inputs.prepare_lammps_md`."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            "parent_folder",
            valid_type=orm.RemoteData,
            required=False,
            help="Remote folder of an interrupted run; its restart file is copied in to continue the trajectory.",
        )
        spec.inputs["metadata"]["options"]["parser_name"].default = "lifdiff.lammps"
        spec.inputs["metadata"]["options"]["resources"].default = {
            "num_machines": 1,
            "num_mpiprocs_per_machine": 1,
        }
        spec.inputs["metadata"]["options"]["withmpi"].default = False

        spec.output(
            "trajectory",
            valid_type=orm.TrajectoryData,
            required=False,
            help="Unwrapped Cartesian positions of all atoms (A) at the dump stride, time in ps, cell, symbols.",
        )
        spec.output(
            "thermo",
            valid_type=orm.ArrayData,
            required=False,
            help="Thermodynamic log: time (ps), temperature (K), potential and total energy (eV), pressure (bar).",
        )
        spec.default_output_node = "results"

        spec.exit_code(
            310,
            "ERROR_LOST_ATOMS",
            message="LAMMPS lost atoms: the dynamics blew up (timestep too large or a bad structure).",
        )
        spec.exit_code(
            311,
            "ERROR_TRAJECTORY_MISSING",
            message="The trajectory dump was not retrieved or holds no frame.",
            invalidates_cache=True,
        )
        spec.exit_code(
            312,
            "ERROR_NON_FINITE",
            message="The trajectory or thermo output contains NaN or infinite values.",
        )
        spec.exit_code(
            313,
            "ERROR_INCOMPLETE_TRAJECTORY",
            message="LAMMPS stopped before the requested number of steps without a timeout: {detail}",
        )
        spec.exit_code(
            400,
            "ERROR_OUT_OF_WALLTIME",
            message="LAMMPS stopped at step {step} of {target} on its timer before the walltime; a restart file "
            "was written.",
            invalidates_cache=True,
        )

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        calcinfo = super().prepare_for_submission(folder)
        calcinfo.retrieve_list = list(calcinfo.retrieve_list) + [
            lammps_input.TRAJECTORY_FILE,
            lammps_input.THERMO_FILE,
            lammps_input.LOG_FILE,
        ]
        if "parent_folder" in self.inputs:
            parent = self.inputs.parent_folder
            source = f"{parent.get_remote_path().rstrip('/')}/{lammps_input.FINAL_RESTART_FILE}"
            calcinfo.remote_copy_list = [(parent.computer.uuid, source, CONTINUE_RESTART_FILE)]
        return calcinfo
