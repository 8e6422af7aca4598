"""Lab deployment, for real: PostgreSQL + RabbitMQ profile, the daemon, SLURM with a GPU gres.

The tests run in file order and share one profile (tests/lab/conftest.py): the walltime MD is submitted
first and checked last, so that its minute-long SLURM time limit overlaps the other tests.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

STUDY = Path(__file__).parent / "lab_study.yaml"
SMALL_STUDY = Path(__file__).parent / "lab_study_small.yaml"
REPORT = Path(__file__).resolve().parents[2] / "results" / "lab"
N_STUDIES = 20
#: The prepend line every job on the `gpu` computer runs: proof that SLURM gave it a GPU.
GPU_PROBE = 'echo "gres: CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset}"'
SETUP_SLURM = [
    "setup", "slurm", "--label", "gpu", "--transport", "core.local", "--partition", "gpu", "--gpus", "1",
    "--cpus", "1", "--device", "cpu", "--poll-interval", "1", "--prepend", GPU_PROBE, "--no-caching",
]  # fmt: skip

#: Submits ``count`` copies of each study file, all from one process, before any of them has started.
SUBMIT_STUDIES = """
from aiida.engine import submit
from aiida_lifdiff.study import build_builder, load_study
pks = []
for path, count in {batch!r}:
    study = load_study(path)
    for index in range(count):
        builder = build_builder(study)
        builder.metadata.label = f"{{study.name}}-{label}-{{index:02d}}"
        pks.append(submit(builder).pk)
print(json.dumps(pks))
"""

#: Node counts of the whole database and of everything one work chain made (every process it called,
#: directly or not, and every node those processes created), by node type.
COUNT_NODES = """
from collections import Counter
from aiida.common.links import LinkType
root = orm.load_node({pk})
processes = [root] + list(root.called_descendants)
created = {{link.node.pk: link.node.node_type for p in processes
           for link in p.base.links.get_outgoing(link_type=(LinkType.CREATE,)).all()}}
calcjobs = sorted([c.pk, c.exit_status, c.process_state.value if c.process_state else None, c.get_job_id()]
                  for c in processes if isinstance(c, orm.CalcJobNode))
print(json.dumps({{
    "total": orm.QueryBuilder().append(orm.Node).count(),
    "descendants": dict(Counter([p.node_type for p in processes] + list(created.values()))),
    "calcjobs": calcjobs,
    "state": root.process_state.value,
}}))
"""

SUBMIT_WALLTIME_MD = """
from aiida.engine import submit
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.workflows.functions.structures import create_lif_supercell
from aiida_lifdiff.workflows.md import MdWorkChain
builder = MdWorkChain.get_builder()
builder.structure = create_lif_supercell(orm.Int(3), orm.Float(4.03), orm.Str("tetrahedral"))
builder.potential = PotentialData.get_or_create(PotentialData.tosi_fumi_lif())
# timeout_s far beyond the walltime: LAMMPS will not stop itself, SLURM kills it at 1 minute.
builder.parameters = orm.Dict({{"timestep_fs": 1.0, "n_steps": {n_steps},
    "dump_stride": {stride}, "thermo_stride": {stride}, "timeout_s": 3600,
    "members": [{{"name": "member", "temperature_K": 1000.0, "seed": 3}}]}})
builder.lammps.code = orm.load_code("lammps@gpu")
builder.lammps.metadata.options.max_wallclock_seconds = 60
builder.max_iterations = orm.Int(12)
builder.metadata.label = "walltime-test"
print(json.dumps(submit(builder).pk))
"""
WALLTIME_STEPS, WALLTIME_STRIDE = 60000, 2000


def _daemon_processes(profile: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if profile in cmdline and "daemon" in cmdline:
            found.append(process)
    return found


def _tracer_fits(lab, pks: list[int]) -> dict[int, dict]:
    code = (
        f"pks = {pks!r}\n"
        "out = {}\n"
        "for pk in pks:\n"
        "    fit = orm.load_node(pk).outputs.arrhenius.get_dict()['tracer']\n"
        "    out[pk] = {k: fit.get(k) for k in ('Ea_eV', 'Ea_err_eV', 'D0_cm2_s', 'fit_ok')}\n"
        "print(json.dumps(out))"
    )
    return {int(k): v for k, v in lab.python(code).items()}


@pytest.fixture(scope="module")
def slurm_computer(lab):
    first = lab.lifdiff(*SETUP_SLURM)
    return first


@pytest.fixture(scope="module")
def daemon(lab, slurm_computer):
    lab.verdi("daemon", "start", "2", timeout=120)
    yield lab
    lab.verdi("daemon", "stop", check=False, timeout=120)


@pytest.fixture(scope="module")
def walltime_md(daemon):
    return daemon.python(SUBMIT_WALLTIME_MD.format(n_steps=WALLTIME_STEPS, stride=WALLTIME_STRIDE))


@pytest.fixture(scope="module")
def twenty_studies(daemon, walltime_md):
    """19 one-seed studies and, last, the uninterrupted twin of the daemon-kill test's study."""
    start = time.monotonic()
    batch = [(str(SMALL_STUDY), N_STUDIES - 1), (str(STUDY), 1)]
    pks = daemon.python(SUBMIT_STUDIES.format(batch=batch, label="batch"))
    states = daemon.wait_terminated(pks, timeout=1500)
    return pks, states, time.monotonic() - start


def test_the_profile_runs_on_postgresql_and_rabbitmq(lab):
    info = lab.python(
        "from aiida.manage import get_manager\n"
        "profile = get_manager().get_profile()\n"
        "print(json.dumps([profile.storage_backend, profile.process_control_backend]))"
    )
    assert info == ["core.psql_dos", "core.rabbitmq"]
    status = lab.verdi("status", check=False)
    assert "postgresql" in status.stdout.lower() or "psql" in status.stdout.lower(), status.stdout
    assert "broker" in status.stdout.lower() and "unable" not in status.stdout.lower(), status.stdout


def test_setup_slurm_is_idempotent_and_the_computer_works(lab, slurm_computer):
    assert "created" in slurm_computer.stdout, slurm_computer.stdout
    count = (
        "print(json.dumps([orm.QueryBuilder().append(orm.Computer).count(), "
        "orm.QueryBuilder().append(orm.Code).count()]))"
    )
    before = lab.python(count)
    again = lab.lifdiff(*SETUP_SLURM)
    assert "already there" in again.stdout
    assert lab.python(count) == before
    assert before[1] >= 3
    # AiiDA's own check: transport, scheduler (squeue), work directory.
    tested = lab.verdi("computer", "test", "gpu", timeout=120)
    assert "Success" in tested.stdout or "success" in tested.stdout.lower(), tested.stdout


def test_twenty_studies_submitted_at_once_all_finish(lab, twenty_studies):
    pks, states, seconds = twenty_studies
    assert len(pks) == N_STUDIES
    failed = {pk: s for pk, s in states.items() if s != ["finished", 0]}
    assert not failed, failed
    fits = _tracer_fits(lab, pks)
    assert all(fit["fit_ok"] for fit in fits.values()), fits
    # The same inputs through the same binary: the 19 copies get the same answer, to the last digit.
    values = {(fits[pk]["Ea_eV"], fits[pk]["Ea_err_eV"]) for pk in pks[:-1]}
    assert len(values) == 1, values
    ((ea, error),) = values
    assert error > 0
    # Every MD calculation went through SLURM on the gpu computer and got a GPU from its gres.
    jobs = lab.python(
        f"pks = {pks!r}\n"
        "calcs = [c for pk in pks for c in orm.load_node(pk).called_descendants if isinstance(c, orm.CalcJobNode)]\n"
        "rows = []\n"
        "for calc in calcs:\n"
        "    script = calc.base.repository.get_object_content('_aiidasubmit.sh')\n"
        "    stdout = calc.outputs.retrieved.base.repository.get_object_content('_scheduler-stdout.txt')\n"
        "    rows.append([calc.computer.label, calc.computer.scheduler_type, calc.get_job_id(),\n"
        "                 '#SBATCH --gres=gpu:1' in script, '#SBATCH --partition=gpu' in script, stdout.strip()])\n"
        "print(json.dumps(rows))"
    )
    assert len(jobs) == (N_STUDIES - 1) * 3 + 6
    assert {(row[0], row[1]) for row in jobs} == {("gpu", "core.slurm")}
    assert len({row[2] for row in jobs}) == len(jobs), "every calculation is its own SLURM job"
    assert all(row[3] and row[4] for row in jobs)
    probes = {row[5] for row in jobs}
    assert all(p.startswith("gres: CUDA_VISIBLE_DEVICES=") and not p.endswith("unset") for p in probes), probes
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "twenty-studies.json").write_text(
        json.dumps({"studies": N_STUDIES, "slurm_jobs": len(jobs), "seconds": round(seconds, 1), "Ea_eV": ea,
                    "Ea_err_eV": error, "gpu_probes": sorted(probes)}, indent=1)
    )  # fmt: skip


def test_a_hard_killed_daemon_loses_and_duplicates_nothing(lab, twenty_studies):
    reference_pk = twenty_studies[0][-1]
    (pk,) = lab.python(SUBMIT_STUDIES.format(batch=[(str(STUDY), 1)], label="fault"))
    # Wait, in one process, for the moment some MD calculations are done and others still with SLURM.
    watch = (
        "import time\n"
        f"pk = {pk}\n"
        "deadline = time.monotonic() + 600\n"
        "while time.monotonic() < deadline:\n"
        # Projected by the QueryBuilder, so that every round reads the database, not this session's objects.
        "    ids = [c.pk for c in orm.load_node(pk).called_descendants if isinstance(c, orm.CalcJobNode)]\n"
        "    qb = orm.QueryBuilder().append(orm.CalcJobNode, filters={'id': {'in': ids or [-1]}},\n"
        "                                   project=['attributes.process_state'])\n"
        "    states = [s for (s,) in qb.all()]\n"
        "    if states.count('finished') >= 1 and any(s != 'finished' for s in states):\n"
        "        break\n"
        "    time.sleep(0.2)\n"
        "print(json.dumps(states))"
    )
    states_at_kill = lab.python(watch, timeout=700)
    processes = _daemon_processes(lab.profile)
    assert processes, "no daemon process found"
    for process in processes:
        os.kill(process.pid, signal.SIGKILL)
    psutil.wait_procs(processes, timeout=30)
    assert not _daemon_processes(lab.profile)
    before = lab.python(COUNT_NODES.format(pk=pk))
    assert before["state"] not in ("finished", "excepted", "killed"), "the study ended before the kill"
    time.sleep(15)  # SLURM goes on without the daemon; nothing may change in the database meanwhile
    while_down = lab.python(COUNT_NODES.format(pk=pk))
    assert while_down == before

    lab.verdi("daemon", "start", "2", timeout=120)
    states = lab.wait_terminated([pk], timeout=900)
    assert states[pk] == ["finished", 0], lab.verdi("process", "report", str(pk)).stdout
    after = lab.python(COUNT_NODES.format(pk=pk))
    reference = lab.python(COUNT_NODES.format(pk=reference_pk))

    # No node lost, none duplicated: the same nodes, type by type, as an uninterrupted twin.
    assert after["descendants"] == reference["descendants"]
    assert len(after["calcjobs"]) == 6 and all(c[1] == 0 for c in after["calcjobs"])
    assert len({c[3] for c in after["calcjobs"]}) == 6, "each MD segment was submitted to SLURM once"
    # And the same answer.
    assert _tracer_fits(lab, [pk])[pk] == _tracer_fits(lab, [reference_pk])[reference_pk]

    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "daemon-kill.json").write_text(
        json.dumps({"calcjob_states_at_kill": states_at_kill, "at_kill": before, "while_down": while_down,
                    "after": after, "uninterrupted_twin": reference}, indent=1)
    )  # fmt: skip


def test_a_job_killed_by_slurm_at_its_walltime_is_rerun_and_completed(lab, walltime_md, twenty_studies):
    pk = walltime_md
    states = lab.wait_terminated([pk], timeout=900)
    report = lab.verdi("process", "report", str(pk)).stdout
    assert states[pk] == ["finished", 0], report
    calcs = lab.python(
        f"node = orm.load_node({pk})\n"
        "calcs = [c for c in node.called if c.process_label == 'LifdiffLammpsCalculation']\n"
        "calcs.sort(key=lambda c: c.ctime)\n"
        "rows = []\n"
        "for c in calcs:\n"
        "    stderr = c.outputs.retrieved.base.repository.get_object_content('_scheduler-stderr.txt')\n"
        "    rows.append([c.exit_status, 'DUE TO TIME LIMIT' in stderr])\n"
        "trajectory = node.outputs.trajectories.member\n"
        "print(json.dumps({'calcs': rows, 'steps': [int(s) for s in trajectory.get_stepids()]}))"
    )
    statuses = [row[0] for row in calcs["calcs"]]
    assert statuses[0] == 120 and calcs["calcs"][0][1], f"the first job should have been killed by SLURM: {calcs}"
    assert "killed by the scheduler at its walltime" in report
    assert 400 in statuses[1:], "after the kill LAMMPS should stop on its own (halved) timer and continue"
    assert statuses[-1] == 0
    assert calcs["steps"] == list(range(0, WALLTIME_STEPS + 1, WALLTIME_STRIDE)), "no frame missing or duplicated"
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "walltime.json").write_text(json.dumps({"exit_statuses": statuses, "report": report}, indent=1))


#: AiiDA 2.9's `verdi storage integrity` is an empty command group, so the checks are made here: no node
#: refers to a file the repository lacks, every object in the repository matches its hash, no process is left
#: unfinished, and the database password appears nowhere in the graph or the computers' settings.
CHECK_STORAGE = """
from aiida.manage import get_manager
storage = get_manager().get_profile_storage()
unreferenced = storage.get_unreferenced_keyset(check_consistency=True)  # raises if a referenced file is lost
issues = storage.get_repository()._container.validate()
unfinished = orm.QueryBuilder().append(orm.ProcessNode, project=["id", "attributes.process_label"],
    filters={{"attributes.process_state": {{"in": ["created", "waiting", "running"]}}}}).all()
graph = json.dumps([orm.QueryBuilder().append(orm.Node, project=["attributes", "extras"]).all(),
                    [c.metadata for c in orm.Computer.collection.all()]], default=str)
print(json.dumps({{"unreferenced_objects": len(unreferenced), "container_valid": issues.is_valid(),
                  "container_issues": {{k: len(v) for k, v in vars(issues).items() if v}},
                  "unfinished_processes": unfinished, "nodes": orm.QueryBuilder().append(orm.Node).count(),
                  "graph_characters": len(graph), "password_in_graph": {password!r} in graph}}))
"""


def test_the_storage_is_intact_and_holds_no_secret(lab, twenty_studies, walltime_md):
    lab.wait_terminated([walltime_md], timeout=900)
    checks = lab.python(CHECK_STORAGE.format(password=lab.secrets["LAB_PG_PASSWORD"]), timeout=600)
    assert checks["container_valid"], checks
    assert checks["unfinished_processes"] == [], checks
    assert checks["graph_characters"] > 10000 and not checks["password_in_graph"]
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "storage.json").write_text(json.dumps(checks, indent=1))
