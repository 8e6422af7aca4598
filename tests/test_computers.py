"""`setup slurm`: a SLURM GPU computer and its codes, idempotent; its settings reach every job launched on it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

SLURM_ARGS = [
    "setup",
    "slurm",
    "--label",
    "cluster",
    "--hostname",
    "login.example.org",
    "--username",
    "alice",
    "--partition",
    "gpu-a100",
    "--account",
    "lif-2026",
    "--gpus",
    "2",
    "--cpus",
    "8",
    "--prepend",
    "module load cuda/12.4",
    "--prepend",
    "module load gcc",
    "--venv",
    "/opt/lifdiff/venv",
    "--no-caching",
]


def _invoke(args: list[str]):
    from aiida_lifdiff.cli.main import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_setup_slurm_creates_the_computer_and_codes_once(aiida_profile):
    from aiida import orm

    first = _invoke(SLURM_ARGS)
    assert first.exit_code == 0, first.output
    assert "created" in first.output
    computer = orm.load_computer("cluster")
    assert computer.scheduler_type == "core.slurm" and computer.transport_type == "core.ssh"
    assert computer.hostname == "login.example.org"
    assert computer.get_prepend_text() == "module load cuda/12.4\nmodule load gcc"
    codes = {
        code.label: code
        for code in orm.QueryBuilder().append(orm.InstalledCode).all(flat=True)
        if code.computer.pk == computer.pk
    }
    assert set(codes) >= {"lammps", "lifdiff-md", "lifdiff-label", "mace_run_train", "dp"}
    # The codes point into the cluster's environment, the same layout as this one.
    for label, code in codes.items():
        assert str(code.filepath_executable).startswith("/opt/lifdiff/venv/"), (label, code.filepath_executable)
    assert str(codes["lifdiff-md"].filepath_executable) == "/opt/lifdiff/venv/bin/lifdiff-md"
    assert sys.prefix not in codes["lammps"].prepend_text
    assert "SLURM_CPUS_PER_TASK" in codes["lifdiff-md"].prepend_text

    count = orm.QueryBuilder().append(orm.Code).count()
    again = _invoke(SLURM_ARGS)
    assert again.exit_code == 0, again.output
    assert "already there" in again.output
    assert orm.QueryBuilder().append(orm.Code).count() == count

    changed = [a if a != "gpu-a100" else "gpu-h100" for a in SLURM_ARGS]
    refused = _invoke(changed)
    assert refused.exit_code != 0
    assert "gpu-a100" in refused.output and "gpu-h100" in refused.output
    assert orm.load_computer("cluster").get_property("lifdiff")["scheduler_options"]["queue_name"] == "gpu-a100"


def test_computer_options_reach_the_job_and_explicit_ones_win(aiida_profile):

    from aiida_lifdiff.codes import (
        ensure_label_code,
        ensure_localhost_computer,
        ensure_slurm_computer,
        with_computer_options,
    )

    computer, created = ensure_slurm_computer("options-test", partition="gpu", account="acc", gpus=1, cpus=4)
    assert created
    code = ensure_label_code(computer)
    merged = with_computer_options({"code": code, "metadata": {"options": {"max_wallclock_seconds": 600}}})
    options = merged["metadata"]["options"]
    assert options["queue_name"] == "gpu" and options["account"] == "acc"
    assert options["custom_scheduler_commands"] == "#SBATCH --gres=gpu:1\n#SBATCH --cpus-per-task=4"
    assert options["max_wallclock_seconds"] == 600

    own = with_computer_options(
        {
            "code": code,
            "metadata": {"options": {"queue_name": "debug", "custom_scheduler_commands": "#SBATCH --mem=8G"}},
        }
    )["metadata"]["options"]
    assert own["queue_name"] == "debug"
    assert own["custom_scheduler_commands"] == "#SBATCH --gres=gpu:1\n#SBATCH --cpus-per-task=4\n#SBATCH --mem=8G"

    # A computer not made by `setup slurm` adds nothing.
    plain = with_computer_options({"code": ensure_label_code(ensure_localhost_computer()), "metadata": {"options": {}}})
    assert plain["metadata"]["options"] == {}


def test_the_md_runner_uses_the_computers_device(aiida_profile, tmp_path):
    """The device lands in the runner's input file (part of the calculation's provenance)."""
    import json

    from aiida import orm
    from aiida.common.folders import Folder
    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager

    from aiida_lifdiff.calculations.md import INPUT_FILE, LifdiffMdCalculation
    from aiida_lifdiff.codes import ensure_runner_code, ensure_slurm_computer
    from aiida_lifdiff.data.potential import PotentialData
    from aiida_lifdiff.workflows.functions.structures import create_lif_supercell

    computer, _ = ensure_slurm_computer("device-test", device="cuda")
    code = ensure_runner_code(computer)
    potential = PotentialData.get_or_create(
        PotentialData.from_model_file("mace", Path(__file__).parent / "data" / "models" / "tiny-mace.model")
    )
    members = [{"name": "T500_s1", "temperature_K": 500.0, "seed": 1}]
    parameters = {"timestep_fs": 1.0, "n_steps": 10, "dump_stride": 5, "thermo_stride": 5, "members": members}
    for given, expected in (({}, "cuda"), ({"device": "cpu"}, "cpu")):
        inputs = {
            "code": code,
            "structure": create_lif_supercell(orm.Int(1), orm.Float(4.03), orm.Str("tetrahedral")),
            "potential": potential,
            "parameters": orm.Dict({**parameters, **given}),
            "metadata": {"options": {"max_wallclock_seconds": 60}},
        }
        process = instantiate_process(get_manager().get_runner(), LifdiffMdCalculation, **inputs)
        (tmp_path / expected).mkdir()
        folder = Folder(str(tmp_path / expected))
        process.prepare_for_submission(folder)
        document = json.loads(Path(folder.abspath, INPUT_FILE).read_text())
        assert document["device"] == expected


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", {"lammps": "lammps@localhost", "mace_train": "mace_run_train@localhost"}),
        ("computers: lab\n", {"lammps": "lammps@gpu", "runner": "lifdiff-md@gpu", "dp": "dp@gpu"}),
        (
            "computers: {md: h100, labelling: localhost}\n",
            {"lammps": "lammps@h100", "label": "lifdiff-label@localhost", "dp": "dp@localhost"},
        ),
        ("computers: lab\ncodes: {lammps: lmp-kokkos@gpu}\n", {"lammps": "lmp-kokkos@gpu", "runner": "lifdiff-md@gpu"}),
    ],
)
def test_a_study_picks_computers_per_step(tmp_path, extra, expected):
    from aiida_lifdiff.study import load_study

    path = tmp_path / "study.yaml"
    path.write_text((Path(__file__).parent / "data" / "tiny_study.yaml").read_text() + extra)
    codes = load_study(path).codes
    assert {role: codes[role] for role in expected} == expected


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("computers: cluster\n", "computers"),
        ("computers: {mdd: gpu}\n", "mdd"),
    ],
)
def test_unknown_computers_are_refused(tmp_path, extra, message):
    from aiida_lifdiff.study import StudyError, load_study

    path = tmp_path / "study.yaml"
    path.write_text((Path(__file__).parent / "data" / "tiny_study.yaml").read_text() + extra)
    with pytest.raises(StudyError, match=message):
        load_study(path)
