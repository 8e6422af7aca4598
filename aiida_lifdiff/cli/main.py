"""``aiida-lifdiff``: run, submit and inspect diffusion studies. Builds builders and prints; nothing else."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click

from aiida_lifdiff.study import StudyError, build_builder, load_study

#: chi^2/dof above which the D points clearly scatter more than their errors (p < ~0.1 for 3-4 dof).
CHI2_WARNING = 2.0


def _load_profile(profile: str | None) -> None:
    from aiida import load_profile
    from aiida.common.exceptions import ConfigurationError, ProfileConfigurationError

    try:
        load_profile(profile, allow_switch=True)
    except (ConfigurationError, ProfileConfigurationError, ValueError) as exception:
        hint = "run `make demo` (creates a local SQLite profile) or `verdi presto`, or pass --profile NAME"
        message = f"cannot load AiiDA profile {profile or '(default)'}: {exception}. {hint}"
        raise click.ClickException(message) from exception


def _study_builder(path: str):
    try:
        study = load_study(path)
        return study, build_builder(study)
    except StudyError as exception:
        raise click.ClickException(str(exception)) from exception


@click.group()
@click.option("-p", "--profile", default=None, help="AiiDA profile to use (default: the default profile).")
@click.pass_context
def cli(ctx: click.Context, profile: str | None) -> None:
    """Li diffusion in LiF with classical and machine-learned potentials, on AiiDA."""
    ctx.obj = {"profile": profile}


@cli.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
def validate(study_file: str) -> None:
    """Check a study YAML without touching any database (exit 1 if it is wrong or names missing files)."""
    missing: list[str] = []
    try:
        study = load_study(study_file, missing_files=missing)
    except StudyError as exception:
        raise click.ClickException(str(exception)) from exception
    if missing:
        click.echo(f"{study.path}: the study is well formed, but {len(missing)} file(s) it names are missing:")
        for message in missing:
            click.echo(f"  - {message.replace(f'{study.path}: ', '', 1)}")
        click.echo("place them (paths are relative to the study file); `submit --dry-run` checks everything else")
        raise SystemExit(1)
    click.echo(f"{study.path}: valid study '{study.name}' (protocol {study.protocol})")


@cli.group()
def setup() -> None:
    """Create the computers and codes a study needs (idempotent)."""


CACHING_OPTION = click.option(
    "--caching/--no-caching",
    default=True,
    show_default=True,
    help="Enable AiiDA caching of the deterministic steps in this profile (the daemon reads it).",
)


ENVIRONMENT_OPTION = click.option(
    "--environment",
    type=click.Choice(["main", "sevenn"]),
    default="main",
    show_default=True,
    help="Which environment's programs become codes: main (the plugin's venv), or sevenn (SevenNet's own venv, "
    "`make venv-sevenn`): codes lifdiff-md-sevenn, lifdiff-label-sevenn, lifdiff-barrier-sevenn.",
)
ENVIRONMENT_VENV_OPTION = click.option(
    "--environment-venv",
    default=None,
    help="The venv of a non-main --environment [default: .venv-<environment> of this checkout; for setup slurm "
    "with --venv: <venv>-<environment>].",
)


def _setup_environment_codes(computer, environment: str, venv: str | None) -> None:
    """``setup ... --environment X``: the codes of environment X on ``computer``, or a ClickException."""
    from aiida_lifdiff import codes as setup_codes

    try:
        codes, warnings = setup_codes.ensure_environment_codes(computer, environment, venv=venv)
    except (FileNotFoundError, ValueError) as exception:  # SetupConflict is a ValueError
        raise click.ClickException(str(exception)) from exception
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    names = ", ".join(f"{code.full_label!r} (pk {code.pk})" for code in codes)
    click.echo(f"{environment} environment codes on computer {computer.label!r}: {names}")


@setup.command("localhost")
@click.option("--label", default="lammps", show_default=True, help="Label of the LAMMPS code.")
@ENVIRONMENT_OPTION
@ENVIRONMENT_VENV_OPTION
@CACHING_OPTION
@click.pass_context
def setup_localhost(
    ctx: click.Context, label: str, environment: str, environment_venv: str | None, caching: bool
) -> None:
    """The localhost computer (direct scheduler) and the codes of this environment: LAMMPS, lifdiff-md,
    lifdiff-label, and mace_run_train and dp when the `ml` extra is installed.

    With --environment sevenn: the codes of SevenNet's venv instead (lifdiff-md-sevenn, ...)."""
    _load_profile(ctx.obj["profile"])
    from aiida_lifdiff import codes as setup_codes

    computer = setup_codes.ensure_localhost_computer()
    if environment != "main":
        _setup_environment_codes(computer, environment, environment_venv)
        if caching:
            _enable_caching(ctx.obj["profile"])
        return
    try:
        codes = [setup_codes.ensure_lammps_code(computer, label=label)]
    except setup_codes.SetupConflict as exception:
        raise click.ClickException(str(exception)) from exception
    for role, ensure in setup_codes.CODE_MAKERS.items():
        if role == "lammps":
            continue
        try:
            codes.append(ensure(computer))
        except FileNotFoundError as exception:
            click.echo(f"warning: {exception}", err=True)
        except setup_codes.SetupConflict as exception:
            raise click.ClickException(str(exception)) from exception
    names = ", ".join(f"{code.full_label!r} (pk {code.pk})" for code in codes)
    click.echo(f"computer {computer.label!r} and codes {names} are ready")
    if caching:
        _enable_caching(ctx.obj["profile"])


def _enable_caching(profile: str | None) -> None:
    from aiida_lifdiff.caching import configure_profile_caching

    enabled = configure_profile_caching(profile)
    click.echo(
        f"caching is on for {len(enabled)} deterministic process types of this profile (docs/caching.md); "
        "restart a running daemon (`verdi daemon restart`) for it to take effect"
    )


@setup.command("slurm")
@click.option("--label", default="gpu", show_default=True, help="Label of the computer (codes are CODE@LABEL).")
@click.option("--hostname", default="localhost", show_default=True, help="Login node of the cluster.")
@click.option(
    "--transport",
    type=click.Choice(["core.local", "core.ssh", "core.ssh_async"]),
    default="core.ssh",
    show_default=True,
    help="How AiiDA reaches the cluster: core.local when the daemon runs on the cluster itself.",
)
@click.option("--username", default=None, help="SSH user name (core.ssh); configures the transport with your keys.")
@click.option(
    "--workdir",
    default=None,
    help="Scratch directory for the jobs on the cluster ({username} is replaced) [default: "
    "/scratch/{username}/aiida, or the AiiDA config directory for core.local].",
)
@click.option("--partition", default=None, help="SLURM partition of the GPU nodes (#SBATCH --partition).")
@click.option("--account", default=None, help="SLURM account to charge (#SBATCH --account).")
@click.option(
    "--gpus", type=click.IntRange(min=0), default=1, show_default=True, help="GPUs per job (#SBATCH --gres=gpu:N)."
)
@click.option(
    "--cpus",
    type=click.IntRange(min=1),
    default=None,
    help="CPU cores per job (#SBATCH --cpus-per-task; the codes use them as threads).",
)
@click.option(
    "--prepend",
    multiple=True,
    help="A shell line every job runs first, e.g. 'module load cuda/12.4' (repeatable, kept in order).",
)
@click.option(
    "--device",
    type=click.Choice(["cuda", "cpu"]),
    default="cuda",
    show_default=True,
    help="Device of the MD runner and single points on this computer, unless a study's md.device says otherwise.",
)
@click.option(
    "--venv",
    default=None,
    help="The plugin's virtual environment ON THE CLUSTER (same Python version); the codes point into it "
    "[default: this environment].",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds between two squeue calls of the daemon.",
)
@ENVIRONMENT_OPTION
@ENVIRONMENT_VENV_OPTION
@CACHING_OPTION
@click.pass_context
def setup_slurm(
    ctx: click.Context,
    label: str,
    hostname: str,
    transport: str,
    username: str | None,
    workdir: str | None,
    partition: str | None,
    account: str | None,
    gpus: int,
    cpus: int | None,
    prepend: tuple[str, ...],
    device: str,
    venv: str | None,
    poll_interval: float,
    environment: str,
    environment_venv: str | None,
    caching: bool,
) -> None:
    """A SLURM GPU computer and the codes a study needs on it (lammps, lifdiff-md, lifdiff-label,
    mace_run_train, dp).

    Every job on it asks for the partition, account, GPUs and CPUs given here. Running it again with the
    same options creates nothing; with other options for an existing label it refuses and lists the
    differences. With --environment sevenn it makes the codes of SevenNet's venv on the cluster instead
    (lifdiff-md-sevenn, lifdiff-label-sevenn, lifdiff-barrier-sevenn).
    """
    _load_profile(ctx.obj["profile"])
    from aiida_lifdiff import codes as setup_codes

    try:
        computer, created = setup_codes.ensure_slurm_computer(
            label,
            hostname=hostname,
            transport=transport,
            username=username,
            workdir=workdir,
            partition=partition,
            account=account,
            gpus=gpus,
            cpus=cpus,
            prepend=prepend,
            device=device,
            poll_interval=poll_interval,
        )
        if environment == "main":
            codes, warnings = setup_codes.ensure_study_codes(computer, venv=venv)
        else:
            environment_venv = environment_venv or setup_codes.default_environment_venv(environment, venv)
            codes, warnings = setup_codes.ensure_environment_codes(computer, environment, venv=environment_venv)
    except (setup_codes.SetupConflict, ValueError, FileNotFoundError) as exception:
        raise click.ClickException(str(exception)) from exception
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    options = setup_codes.computer_settings(computer)["scheduler_options"]
    click.echo(f"computer {computer.label!r} ({'created' if created else 'already there'}): core.slurm on {hostname}")
    for key, value in options.items():
        click.echo(f"  {key}: " + str(value).replace("\n", "; "))
    click.echo(f"  MD device: {setup_codes.computer_device(computer)}")
    click.echo("codes: " + ", ".join(f"{code.full_label} (pk {code.pk})" for code in codes))
    if not computer.is_configured:
        click.echo(f"next: verdi computer configure {transport} {label}   (then: verdi computer test {label})")
    if caching:
        _enable_caching(ctx.obj["profile"])


def _print_study(node, output: Path | None) -> None:
    from tabulate import tabulate

    from aiida_lifdiff.queries import diffusivity_table

    if "diffusivity" not in node.outputs:
        click.echo(f"{node.process_label}<{node.pk}> has no diffusivity output (exit status {node.exit_status})")
        return
    rows = diffusivity_table(node)
    table = []
    for row in rows:
        cells = [f"{row['T_K']:.0f}", row["replicas"], f"{row['production_ps']:.0f}"]
        for mode in ("collective", "tracer"):
            if f"D_{mode}_cm2_s" in row:
                flag = "" if row[f"{mode}_diffusive"] else " (not diffusive)"
                cells.append(f"{row[f'D_{mode}_cm2_s']:.3e} +- {row[f'D_{mode}_err_cm2_s']:.1e}{flag}")
        table.append(cells)
    click.echo(tabulate(table, headers=["T (K)", "replicas", "ps each", "D per defect (cm2/s)", "D tracer Li (cm2/s)"]))
    if "arrhenius" in node.outputs:
        arrhenius = node.outputs.arrhenius.get_dict()
        for mode in ("collective", "tracer"):
            record = arrhenius.get(mode)
            if record is None:
                continue
            name = "per-defect" if mode == "collective" else "tracer"
            if record["fit_ok"]:
                click.echo(
                    f"Ea ({name}) = {record['Ea_eV']:.3f} +- {record['Ea_err_eV']:.3f} eV, "
                    f"D0 = {record['D0_cm2_s']:.2e} +- {record['D0_err_cm2_s']:.1e} cm2/s, "
                    f"chi2/dof = {record['chi2_dof']:.2f}, D(300 K) = {_d300_text(record)} cm2/s"
                )
                for note in _sensitivity_lines(record):
                    click.echo(f"  {note}")
                if record["chi2_dof"] > CHI2_WARNING:
                    click.echo(
                        f"  D scatters more than its errors (chi2/dof > 1): Ea error scaled by sqrt(chi2/dof) "
                        f"= {record['Ea_err_scaled_eV']:.3f} eV"
                    )
            else:
                click.echo(f"Ea ({name}): no fit: {record['reason']}")
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        csv_path = output / f"diffusion-{node.pk}.csv"
        with csv_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        click.echo(f"table: {csv_path}")
        if "arrhenius_plot" in node.outputs:
            png_path = output / f"arrhenius-{node.pk}.png"
            png_path.write_bytes(node.outputs.arrhenius_plot.get_content(mode="rb"))
            click.echo(f"plot: {png_path}")
        if "arrhenius" in node.outputs:
            json_path = output / f"arrhenius-{node.pk}.json"
            json_path.write_text(json.dumps(node.outputs.arrhenius.get_dict(), indent=2))
            click.echo(f"fit: {json_path}")


def _d300_text(record: dict) -> str:
    """D(300 K) with its 1-sigma factor (log space, Birge-scaled): ``1.2e-09 x/ 3.4``; older fits: +- error."""
    if record.get("D300_factor") is not None:
        return f"{record['D300_cm2_s']:.2e} x/ {record['D300_factor']:.2g}"
    return f"{record['D300_cm2_s']:.2e} +- {record['D300_err_cm2_s']:.1e}"


def _sensitivity_lines(record: dict) -> list[str]:
    sensitivity = record.get("sensitivity")
    if not sensitivity:
        return []
    dropped = ", ".join(f"{t:.0f} K" for t in sensitivity.get("excluded_temperatures_K", []))
    if "Ea_with_excluded_eV" in sensitivity:
        return [
            f"left out as non-diffusive: {dropped}; with them Ea = {sensitivity['Ea_with_excluded_eV']:.3f} "
            f"+- {sensitivity['Ea_err_with_excluded_eV']:.3f} eV ({sensitivity['delta_Ea_eV']:+.3f} eV)"
        ]
    return [f"left out as non-diffusive: {dropped} ({sensitivity.get('note', '')})"]


def _print_benchmark(node, output: Path | None) -> None:
    """Each potential's D(T) table and Ea, the trained models' test errors, and the summary of a benchmark."""
    from tabulate import tabulate

    from aiida_lifdiff.queries import training_lineage
    from aiida_lifdiff.workflows.diffusion import DiffusionWorkChain

    for child in sorted(node.called, key=lambda c: c.ctime):
        if child.process_class is DiffusionWorkChain:
            click.echo(f"\n== {child.label or 'potential'}: {child.process_label}<{child.pk}>")
            _print_study(child, output)
    if "models" in node.outputs:
        rows = []
        for name, model in node.outputs.models.items():
            lineage = training_lineage(model)
            has_errors = "test_errors" in node.outputs and name in node.outputs.test_errors
            errors = node.outputs.test_errors[name].get_dict() if has_errors else {}
            rows.append(
                [
                    name,
                    model.kind,
                    lineage.get("train_frames"),
                    lineage.get("test_frames"),
                    _number(errors.get("energy_rmse_meV_per_atom"), ".2f"),
                    _number(errors.get("force_rmse_meV_per_A"), ".1f"),
                    model.uuid,
                ]
            )
        click.echo("\n== trained models (errors on the held-out test frames, our own single points)")
        click.echo(
            tabulate(rows, headers=["model", "kind", "train", "test", "E RMSE (meV/atom)", "F RMSE (meV/A)", "UUID"])
        )
    if "comparison" in node.outputs:
        comparison = node.outputs.comparison.get_dict()
        reference = comparison.get("reference")
        rows = []
        for name, row in comparison["rows"].items():
            if row.get("fit_ok"):
                ea = f"{row['Ea_eV']:.3f} +- {row['Ea_compare_err_eV']:.3f}"
            else:
                ea = f"- ({row.get('reason')})"
            delta = "-"
            if "delta_sigma" in row:
                delta = f"{row['delta_Ea_eV']:+.3f} +- {row['delta_Ea_err_eV']:.3f} ({row['delta_sigma']:+.1f} sigma)"
            rows.append(
                [
                    name + (" (reference)" if name == reference else ""),
                    row.get("kind", "-"),
                    "-" if row.get("train_frames") is None else row["train_frames"],
                    ea,
                    _number(row.get("chi2_dof"), ".2f"),
                    delta,
                    _number(row.get("eval_energy_rmse_meV_per_atom"), ".2f"),
                    _number(row.get("eval_force_rmse_meV_per_A"), ".1f"),
                ]
            )
        evaluation = comparison.get("evaluation_set")
        where = f", errors on the {evaluation['n_frames']}-frame evaluation set" if evaluation else ""
        click.echo(f"\n== activation energies ({comparison['primary_mode']} D{where})")
        headers = ["potential", "kind", "trained on", "Ea (eV)", "chi2/dof", "Ea - reference (eV)", "E RMSE", "F RMSE"]
        click.echo(tabulate(rows, headers=headers))
        click.echo("Ea errors are 1 sigma (Birge-scaled where chi2/dof > 1); E RMSE in meV/atom, F RMSE in meV/A.")
        _print_static_comparison(comparison)
        if output is not None:
            output.mkdir(parents=True, exist_ok=True)
            path = output / f"benchmark-{node.pk}.json"
            path.write_text(json.dumps(comparison, indent=2))
            click.echo(f"comparison: {path}")
            for figure in ("arrhenius_overlay", "parity_overlay", "barrier_overlay"):
                if figure in node.outputs:
                    target = output / f"benchmark-{node.pk}-{figure}.png"
                    with node.outputs[figure].open(mode="rb") as handle:
                        target.write_bytes(handle.read())
                    click.echo(f"{figure.replace('_', ' ')}: {target}")


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _print_static_comparison(comparison: dict) -> None:
    """a0 and the static barriers of each potential beside the reference's, when the study computed them."""
    from tabulate import tabulate

    from aiida_lifdiff.analysis.comparison import BARRIER_PATHS

    rows_in = comparison["rows"]
    if not any("a0_A" in row or any(f"barrier_{p}_eV" in row for p in BARRIER_PATHS) for row in rows_in.values()):
        return
    reference = comparison.get("reference")
    rows = []
    for name, row in rows_in.items():
        a0 = _number(row.get("a0_A"), ".4f")
        if row.get("a0_A") is not None and row.get("a0_relaxed") is False:
            a0 += " (fixed)"
        cells = [name + (" (reference)" if name == reference else ""), a0]
        for path in BARRIER_PATHS:
            value = row.get(f"barrier_{path}_eV")
            if value is None:
                cells.append("-")
                continue
            text = f"{value:.3f}"
            if not row.get(f"barrier_{path}_converged", False):
                text += " (not converged)"
            elif f"delta_barrier_{path}_eV" in row:
                text += f" ({row[f'delta_barrier_{path}_eV']:+.3f})"
            cells.append(text)
        rows.append(cells)
    click.echo("\n== lattice constant and static migration barriers (eV; difference to the reference in brackets)")
    click.echo(tabulate(rows, headers=["potential", "a0 (A)", *BARRIER_PATHS]))


@cli.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results"),
    show_default=True,
    help="Folder for the CSV table, the JSON fit and the Arrhenius plot.",
)
@click.option(
    "--cache/--no-cache",
    default=True,
    show_default=True,
    help="Reuse finished calculations with identical inputs (AiiDA caching of the deterministic steps).",
)
@click.pass_context
def run(ctx: click.Context, study_file: str, output: Path, cache: bool) -> None:
    """Run a study in this process (no daemon needed), printing progress as it goes."""
    _load_profile(ctx.obj["profile"])
    from aiida.engine import run_get_node

    from aiida_lifdiff.caching import enable_study_caching

    study, builder = _study_builder(study_file)
    click.echo(f"running study '{study.name}' ({study.protocol} protocol) ...")
    if cache:
        # Finished MD runs, trainings and analyses with the same inputs are reused (docs/caching.md).
        with enable_study_caching():
            _, node = run_get_node(builder)
    else:
        _, node = run_get_node(builder)
    click.echo(
        f"{node.process_label}<{node.pk}> finished with exit status {node.exit_status}"
        + (f": {node.exit_message}" if node.exit_message else "")
    )
    if node.process_label == "BenchmarkWorkChain":
        _print_benchmark(node, output)
    else:
        _print_study(node, output)
    if not node.is_finished_ok:
        sys.exit(node.exit_status or 1)


@cli.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option(
    "--dry-run",
    is_flag=True,
    help="Validate the study, build its complete builder without storing anything, and print the plan: "
    "potentials, MD runs and steps, training jobs and estimated GPU-hours. Exit 0 if it is ready to submit.",
)
@click.option(
    "--throughput",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="With --dry-run: throughput figures (YAML laid out like aiida_lifdiff/protocols/throughput.yaml).",
)
@click.pass_context
def submit(ctx: click.Context, study_file: str, dry_run: bool, throughput: str | None) -> None:
    """Submit a study to the daemon (or, with --dry-run, show what it would run and cost)."""
    _load_profile(ctx.obj["profile"])
    if dry_run:
        _dry_run(study_file, throughput)
        return
    from aiida.engine import submit as submit_process
    from aiida.engine.daemon.client import get_daemon_client

    study, builder = _study_builder(study_file)
    node = submit_process(builder)
    click.echo(f"submitted study '{study.name}' as {node.process_label}<{node.pk}> (uuid {node.uuid})")
    if not get_daemon_client().is_daemon_running:
        click.echo("warning: the daemon is not running; start it with `verdi daemon start`", err=True)


def _dry_run(study_file: str, throughput: str | None) -> None:
    """Print the plan of a study and what must be fixed before it can be submitted; store nothing."""
    from aiida_lifdiff.plan import format_plan, load_throughput, study_plan
    from aiida_lifdiff.study import builder_problem

    problems: list[str] = []
    try:
        study = load_study(study_file, missing_files=problems)
        builder = build_builder(study, store=False, problems=problems)
    except StudyError as exception:
        raise click.ClickException(str(exception)) from exception
    frames = {name: node.n_frames for name, node in builder.get("datasets", {}).items()}
    if "evaluation" in builder and "dataset" in builder.evaluation:
        frames["evaluation"] = builder.evaluation.dataset.n_frames
    click.echo(format_plan(study_plan(study, load_throughput(throughput), frames)))
    if not problems:
        problem = builder_problem(builder)
        if problem:
            problems.append(f"the {builder._process_class.__name__} refuses the inputs: {problem}")
    click.echo("")
    problems = list(dict.fromkeys(problem.replace(f"{study.path}: ", "", 1) for problem in problems))
    if problems:
        click.echo(f"NOT READY: {len(problems)} problem(s) to fix before `aiida-lifdiff submit {study_file}`:")
        for problem in problems:
            click.echo(f"  - {problem}")
        raise SystemExit(1)
    click.echo(
        f"ready: the complete {builder._process_class.__name__} builder validated (nothing was stored); "
        f"submit with `aiida-lifdiff submit {study_file}`"
    )


@cli.command()
@click.option("--kind", "potential_kind", default=None, help="Only potentials of this kind (classical, mace, deepmd).")
@click.option("--label", default=None, help="Only studies whose label contains this text.")
@click.option("--potential", default=None, help="Only potentials whose label contains this text.")
@click.option("--foundation", default=None, help="Only models from this foundation (name or label contains it).")
@click.option("--train-source", default=None, help="Only models whose training set's source contains this text.")
@click.option("--min-train-frames", type=int, default=None, help="Only models trained on at least this many frames.")
@click.option("--max-train-frames", type=int, default=None, help="Only models trained on at most this many frames.")
@click.option("--atoms", type=int, default=None, help="Only studies whose MD cell has this many atoms.")
@click.option("--min-temperatures", type=int, default=None, help="Only studies run at at least this many temperatures.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "latex"]),
    default="table",
    show_default=True,
    help="latex: a booktabs table for a paper (needs \\usepackage{booktabs}).",
)
@click.pass_context
def results(
    ctx: click.Context,
    potential_kind: str | None,
    label: str | None,
    potential: str | None,
    foundation: str | None,
    train_source: str | None,
    min_train_frames: int | None,
    max_train_frames: int | None,
    atoms: int | None,
    min_temperatures: int | None,
    fmt: str,
) -> None:
    """Every stored Arrhenius result with its lineage (potential, training set, cell, MD) and node UUIDs.

    Text filters ignore case; all filters combine. csv/json carry every column and UUID (study, potential,
    fit, enclosing benchmark, training calculation, dataset); see docs/queries.md.
    """
    _load_profile(ctx.obj["profile"])
    from aiida_lifdiff import tables
    from aiida_lifdiff.queries import arrhenius_results

    rows = arrhenius_results(
        potential_kind=potential_kind,
        label=label,
        potential=potential,
        foundation=foundation,
        train_source=train_source,
        min_train_frames=min_train_frames,
        max_train_frames=max_train_frames,
        atoms=atoms,
        min_temperatures=min_temperatures,
    )
    if fmt == "json":
        click.echo(tables.to_json(rows))
    elif fmt == "csv":
        click.echo(tables.to_csv(rows), nl=False)
    elif fmt == "latex":
        click.echo(tables.to_latex(rows), nl=False)
    elif not rows:
        filtered = any(
            value is not None
            for value in (potential_kind, label, potential, foundation, train_source, min_train_frames)
            + (max_train_frames, atoms, min_temperatures)
        )
        click.echo("no Arrhenius results " + ("match these filters" if filtered else "in this profile"))
    else:
        click.echo(tables.to_text(rows, chi2_warning=CHI2_WARNING))


@cli.command()
@click.argument("identifier")
@click.option("--depth", type=int, default=40, show_default=True, help="How many links back to follow at most.")
@click.option(
    "--fan-out",
    type=int,
    default=1,
    show_default=True,
    help="Siblings of one kind shown in full (e.g. replica trajectories); the others are counted.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def lineage(ctx: click.Context, identifier: str, depth: int, fan_out: int, fmt: str) -> None:
    """The chain from a result back to raw data and code versions.

    IDENTIFIER: pk or UUID (prefix) of an Arrhenius result, a DiffusionWorkChain, a BenchmarkWorkChain, a
    potential or any node. Each line: the link, the node, and for calculations their state, code and the
    aiida-core/plugin versions recorded on them; nodes shown once, sibling replicas counted.
    """
    _load_profile(ctx.obj["profile"])
    from aiida_lifdiff.queries import NodeNotFound, provenance_tree, tree_lines

    try:
        tree = provenance_tree(identifier, max_depth=depth, fan_out=fan_out)
    except NodeNotFound as exception:
        raise click.ClickException(str(exception)) from exception
    if fmt == "json":
        click.echo(json.dumps(tree, indent=1, default=str))
    else:
        click.echo("\n".join(tree_lines(tree)))


@cli.command()
@click.argument("study")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace an existing archive in DIRECTORY.")
@click.pass_context
def export(ctx: click.Context, study: str, directory: Path, overwrite: bool) -> None:
    """Write a study's AiiDA archive, figures and tables into DIRECTORY.

    STUDY: pk, UUID or label (the newest with it) of a BenchmarkWorkChain or DiffusionWorkChain. Writes
    STUDY.aiida (import it with `verdi archive import`), figures/*.png, results.csv/.tex/.json and, when the
    study has a comparison output, comparison.csv/.tex.
    """
    _load_profile(ctx.obj["profile"])
    from aiida_lifdiff.export import ExportError, export_study

    try:
        done = export_study(study, directory, overwrite=overwrite)
    except ExportError as exception:
        raise click.ClickException(str(exception)) from exception
    node = done["study"]
    click.echo(f"{node.process_label}<{node.pk}> {node.label!r} -> {directory}")
    click.echo(f"  archive: {done['archive']}")
    click.echo(f"  figures: {len(done['figures'])} in {directory / 'figures'}")
    for text in done["missing_figures"]:
        click.echo(f"  warning: figure without content skipped: {text}", err=True)
    for path in done["tables"]:
        click.echo(f"  table: {path}" + (f" ({done['rows']} rows)" if path.name.startswith("results") else ""))


@cli.command()
@click.argument("pk", type=int)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results"),
    show_default=True,
    help="Folder for the CSV table, the JSON fit and the Arrhenius plot.",
)
@click.pass_context
def show(ctx: click.Context, pk: int, output: Path) -> None:
    """One study's D(T) table and Ea (every potential's, for a benchmark), writing plots and tables into OUTPUT."""
    _load_profile(ctx.obj["profile"])
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    from aiida_lifdiff.workflows.diffusion import DiffusionWorkChain

    try:
        node = orm.load_node(pk)
    except NotExistent as exception:
        raise click.ClickException(f"no node with pk {pk}") from exception
    from aiida_lifdiff.workflows.benchmark import BenchmarkWorkChain

    process_class = getattr(node, "process_class", None)
    if process_class is BenchmarkWorkChain:
        _print_benchmark(node, output)
    elif process_class is DiffusionWorkChain:
        _print_study(node, output)
    else:
        raise click.ClickException(
            f"node {pk} is a {node.__class__.__name__}, not a DiffusionWorkChain or BenchmarkWorkChain"
        )


def _barrier_potential(spec: str):
    """The PotentialData of a ``barriers --potential`` SPEC (unstored), or a ClickException saying why not."""
    from aiida_lifdiff.data.potential import PotentialData
    from aiida_lifdiff.potentials.universal import universal_names

    if spec == "tosi-fumi-lif":
        return PotentialData.tosi_fumi_lif()
    if spec in universal_names():
        return PotentialData.from_universal(spec)
    path = Path(spec)
    kinds = {".model": "mace", ".pb": "deepmd", ".pth": "deepmd"}
    if path.suffix in kinds:
        return PotentialData.from_model_file(kinds[path.suffix], path)
    raise click.ClickException(
        f"unknown potential {spec!r}: give tosi-fumi-lif, a universal model ({', '.join(universal_names())}) "
        "or a model file (.model: MACE; .pb/.pth: DeePMD)"
    )


@cli.command()
@click.option("--potential", "spec", required=True, help="tosi-fumi-lif, chgnet, sevennet-0, ... or a model file.")
@click.option("--repeat", type=int, default=None, help="Conventional cubes per axis of the NEB cell (default 2).")
@click.option(
    "--paths",
    default=None,
    help="Comma-separated paths (default knockoff_collinear,knockoff_noncollinear,direct).",
)
@click.option("--protocol", default=None, help="Protocol of protocols/barrier.yaml (quick | precise).")
@click.option(
    "--code", "code_label", default=None, help="lifdiff-barrier code (default: of the potential's environment)."
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def barriers(ctx, spec: str, repeat: int | None, paths: str | None, protocol, code_label, fmt: str) -> None:
    """Relaxed a0 and NEB migration barriers of interstitial Li with one potential, in-process on this profile."""
    _load_profile(ctx.obj["profile"])
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent
    from aiida.engine import run_get_node

    from aiida_lifdiff.calculations.barrier import validate_barrier_parameters
    from aiida_lifdiff.calculations.model_spec import potential_environment
    from aiida_lifdiff.codes import environment_code_label
    from aiida_lifdiff.data.potential import PotentialData
    from aiida_lifdiff.protocols import get_protocol_inputs
    from aiida_lifdiff.workflows.barrier import BarrierWorkChain

    overrides: dict = {}
    if repeat is not None:
        overrides["repeat"] = repeat
    if paths is not None:
        overrides["paths"] = [p.strip() for p in paths.split(",") if p.strip()]
    try:
        parameters = get_protocol_inputs("barrier", protocol, {"parameters": overrides})["parameters"]
    except ValueError as exception:
        raise click.ClickException(str(exception)) from exception
    message = validate_barrier_parameters(parameters)
    if message:
        raise click.ClickException(message)
    try:
        potential = _barrier_potential(spec)
    except (ValueError, FileNotFoundError) as exception:
        raise click.ClickException(str(exception)) from exception
    label = code_label or f"{environment_code_label('lifdiff-barrier', potential_environment(potential))}@localhost"
    try:
        code = orm.load_code(label)
    except (NotExistent, MultipleObjectsError) as exception:
        raise click.ClickException(
            f"code {label!r} not found ({exception}); create it with `aiida-lifdiff setup localhost`"
            + (
                ""
                if potential_environment(potential) == "main"
                else f" --environment {potential_environment(potential)}"
            )
        ) from exception
    builder = BarrierWorkChain.get_builder_from_protocol(
        code, PotentialData.get_or_create(potential), protocol, {"parameters": overrides}
    )
    builder.metadata.label = f"barriers/{potential.label or spec}"
    outputs, node = run_get_node(builder)
    results = outputs.get("results")
    if results is None:
        raise click.ClickException(f"BarrierWorkChain<{node.pk}> failed (exit {node.exit_status}): {node.exit_message}")
    data = results.get_dict()
    summary = {
        "pk": node.pk,
        "exit_status": node.exit_status,
        "exit_message": node.exit_message,
        "potential": potential.label or spec,
        "potential_uuid": node.inputs.barrier.potential.uuid,
        "a0_A": data.get("a0_A"),
        "B0_GPa": data.get("B0_GPa"),
        "barriers_eV": data.get("barriers_eV", {}),
        "converged": data.get("converged", {}),
        "max_force_eV_A": data.get("max_force_eV_A", {}),
        "endpoint_energies_eV": {
            name: {"initial": entry.get("initial_energy_eV"), "final": entry.get("final_energy_eV")}
            for name, entry in (data.get("paths") or {}).items()
        },
        "repeat": data.get("repeat"),
        "n_atoms": data.get("n_atoms"),
        "wall_s": data.get("wall_s"),
        "n_force_calls": data.get("n_force_calls"),
    }
    if fmt == "json":
        click.echo(json.dumps(summary, indent=1))
    else:
        from tabulate import tabulate

        rows = [
            [
                name,
                _number(value, ".3f"),
                "yes" if summary["converged"].get(name) else "NO",
                _number(summary["max_force_eV_A"].get(name), ".4f"),
            ]
            for name, value in summary["barriers_eV"].items()
        ]
        click.echo(
            f"BarrierWorkChain<{node.pk}> {summary['potential']}: a0 = {_number(summary['a0_A'], '.4f')} A, "
            f"B0 = {_number(summary['B0_GPa'], '.1f')} GPa, {summary['n_atoms']} atoms, "
            f"{_number(summary['wall_s'], '.0f')} s"
        )
        click.echo(tabulate(rows, headers=["path", "barrier (eV)", "converged", "max force (eV/A)"]))
    if not node.is_finished_ok:
        raise SystemExit(1)


@cli.command()
@click.argument("trajectories", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--timestep-ps", type=float, default=None, help="Time between stored frames (if frames lack time_ps).")
@click.option("--mobile", default="Li", show_default=True, help="Diffusing species.")
@click.option("--reference", default="F", show_default=True, help="Drift-reference species (defines the sites).")
@click.option("--blocks", "n_blocks", type=int, default=5, show_default=True, help="Time blocks per replica.")
@click.option("--r-in", type=float, default=None, help="Inner site radius in A (default 0.3 x shortest site distance).")
@click.option("--dwell", type=int, default=3, show_default=True, help="Frames within r_in needed to arrive at a site.")
@click.option("--window", type=int, default=2, show_default=True, help="Frames linking the moves of one event.")
@click.option("--lammps-types", default="Li,F", show_default=True, help="Elements of LAMMPS dump types 1, 2, ...")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def analyse(trajectories, timestep_ps, mobile, reference, n_blocks, r_in, dwell, window, lammps_types, fmt) -> None:
    """D (tracer, collective), Haven ratio and hop events of TRAJECTORIES (replicas), with no AiiDA profile.

    Any ASE-readable file: extxyz with time_ps in each frame's info, LAMMPS text dump (name ending in .dump), ...
    """
    from aiida_lifdiff.analysis.trajectory_files import analyse_trajectory_files, format_table

    try:
        result = analyse_trajectory_files(
            trajectories,
            timestep_ps=timestep_ps,
            mobile=mobile,
            reference=reference,
            n_blocks=n_blocks,
            r_in=r_in,
            dwell=dwell,
            window=window,
            lammps_types=[s.strip() for s in lammps_types.split(",") if s.strip()],
        )
    except (ValueError, OSError) as exception:
        raise click.ClickException(str(exception)) from exception
    click.echo(json.dumps(result, indent=1) if fmt == "json" else format_table(result))


@cli.group()
def dataset() -> None:
    """Labelled datasets (DatasetData): import, export, list."""


DATASET_FORMATS = ("extxyz", "deepmd/npy", "deepmd/raw")


@dataset.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(DATASET_FORMATS), default="extxyz", show_default=True)
@click.option("--source", default="", help="Where the frames come from (kept on the node; shown by `results`).")
@click.option("--label", default=None, help="Node label (default: the file or folder name).")
@click.pass_context
def dataset_import(ctx: click.Context, path: Path, fmt: str, source: str, label: str | None) -> None:
    """Store the labelled frames at PATH (an extxyz file, or a folder of DeePMD systems) as a DatasetData.

    The same file stored twice is reused (matched by sha256), so re-running an import adds nothing.
    """
    _load_profile(ctx.obj["profile"])
    from aiida import orm

    from aiida_lifdiff.data.dataset import DatasetData
    from aiida_lifdiff.datasets import DatasetError

    try:
        node = DatasetData.from_extxyz(path, source) if fmt == "extxyz" else DatasetData.from_deepmd(path, fmt, source)
    except (DatasetError, FileNotFoundError) as exception:
        raise click.ClickException(str(exception)) from exception
    existing = (
        orm.QueryBuilder().append(DatasetData, filters={"attributes.sha256": node.sha256}, project="*").first(flat=True)
    )
    if existing is not None:
        click.echo(f"already stored: DatasetData<{existing.pk}> ({existing.n_frames} frames, uuid {existing.uuid})")
        return
    if label:
        node.label = label
    node.store()
    summary = node.summary
    click.echo(
        f"stored DatasetData<{node.pk}>: {summary['n_frames']} frames, species {summary['species']}, labels "
        f"{summary['labels']}, uuid {node.uuid}"
    )


@dataset.command("export")
@click.argument("identifier")
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(DATASET_FORMATS), default="extxyz", show_default=True)
@click.pass_context
def dataset_export(ctx: click.Context, identifier: str, target: Path, fmt: str) -> None:
    """Write dataset IDENTIFIER (pk or uuid) to TARGET: an extxyz file, or a folder of DeePMD systems."""
    _load_profile(ctx.obj["profile"])
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    from aiida_lifdiff.data.dataset import DatasetData

    try:
        node = orm.load_node(identifier)
    except (NotExistent, MultipleObjectsError) as exception:
        raise click.ClickException(f"no unique node {identifier!r}: {exception}") from exception
    if not isinstance(node, DatasetData):
        raise click.ClickException(f"node {identifier} is a {node.__class__.__name__}, not a DatasetData")
    if fmt == "extxyz":
        node.write_extxyz(target)
        click.echo(f"wrote {node.n_frames} frames to {target}")
    else:
        systems = node.write_deepmd(target, fmt=fmt)
        click.echo(f"wrote {node.n_frames} frames as {len(systems)} {fmt} system(s) under {target}")


@dataset.command("list")
@click.pass_context
def dataset_list(ctx: click.Context) -> None:
    """Every stored dataset with its size, labels and source."""
    _load_profile(ctx.obj["profile"])
    from aiida import orm
    from tabulate import tabulate

    from aiida_lifdiff.data.dataset import DatasetData

    qb = orm.QueryBuilder().append(
        DatasetData,
        project=["id", "label", "attributes.n_frames", "attributes.labels", "attributes.source", "uuid"],
    )
    rows = [
        [pk, label, n, ",".join(labels or []), (source or "")[:60], uuid]
        for pk, label, n, labels, source, uuid in qb.all()
    ]
    click.echo(tabulate(rows, headers=["PK", "label", "frames", "labels", "source", "UUID"]) if rows else "no datasets")
