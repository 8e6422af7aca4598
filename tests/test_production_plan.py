"""The paper-scale study file: its plan (counts and cost estimate) and `submit --dry-run` on a fresh profile.

The dry run runs in a subprocess with its own AIIDA_PATH and a new profile, as a user would run it, with the
files the study names put in place: a DeePMD reference (the shipped tiny model), DFT-like frames in DeePMD
format, and an MPA-0-sized MACE file with random weights in a private mace-torch cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aiida_lifdiff.plan import format_plan, load_throughput, study_plan
from aiida_lifdiff.study import load_study

REPO = Path(__file__).resolve().parents[1]
PRODUCTION = REPO / "workchains" / "production.yaml"
BIN = Path(sys.executable).parent


def test_production_study_is_paper_scale_and_its_plan_adds_up():
    missing: list[str] = []
    study = load_study(PRODUCTION, missing_files=missing)
    # The reference model and the DFT frames are the user's files; the study says exactly which are missing.
    assert len(missing) == 2 and any("lif-dft-deepmd.pb" in m for m in missing)
    assert len(study.inputs["temperatures_K"]) >= 5 and len(study.inputs["seeds"]) >= 3
    assert study.inputs["supercell"]["repeat"] == 3 and study.inputs["md_settings"]["device"] == "cuda"
    trained = {name: spec["train"] for name, spec in study.potentials.items() if "train" in spec}
    assert sorted((t["data"], t["frames"]) for t in trained.values()) == sorted(
        (data, n) for data in ("dft", "generated") for n in (100, 300, 1000)
    )
    assert all(t["finetune_from"] == "mpa0" for t in trained.values())
    assert study.potentials["mpa0"]["foundation"] == "medium-mpa-0"
    assert study.potentials[study.reference]["kind"] == "deepmd"

    throughput = load_throughput()
    plan = study_plan(study, throughput, dataset_frames={"dft": 20000})
    runs, steps, atoms = 5 * 3, 510_000, 217
    assert plan["cell_atoms"] == atoms and plan["steps_per_run"] == steps
    assert plan["totals"]["md_runs"] == 8 * runs
    # DeePMD in LAMMPS: one calculation per run; each MACE potential: all 15 members in one batched job.
    assert plan["totals"]["md_calculations"] == runs + 7
    assert plan["totals"]["training_jobs"] == 6 + 2  # six fine-tunings + two between the sampling rounds
    mace_rate = throughput["md"]["cuda"]["mace-medium"]["atom_steps_per_s"]
    md_mace = [item for item in plan["md"] if item["potential"] != "deepmd_dft"]
    assert all(item["hours"] == pytest.approx(runs * steps * atoms / mace_rate / 3600) for item in md_mace)
    assert plan["totals"]["gpu_hours"] > sum(item["hours"] for item in plan["md"])  # + training and sampling
    assert plan["estimate_is_assumed"]  # no GPU figure has been measured yet, and the plan says so
    text = format_plan(plan)
    assert "120 MD runs" in text and "GPU-hours" in text and "[assumed]" in text


def _write_dft_like_frames(directory: Path, count: int) -> None:
    """``count`` labelled 65-atom frames in DeePMD npy format (copies of the shipped frames, slightly moved)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from aiida_lifdiff.datasets import read_extxyz, to_deepmd

    frames = [a for a in read_extxyz(REPO / "tests/data/models/lif-classical-train.extxyz") if len(a) == 65]
    rng = np.random.default_rng(0)
    out = []
    for index in range(count):
        source = frames[index % len(frames)]
        atoms = source.copy()
        atoms.positions = atoms.positions + rng.normal(0.0, 1e-3, atoms.positions.shape)
        atoms.calc = SinglePointCalculator(
            atoms, energy=source.get_potential_energy(), forces=source.get_forces(), stress=source.get_stress()
        )
        out.append(atoms)
    to_deepmd(out, directory, "deepmd/npy")


def _run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


def test_dry_run_on_a_fresh_profile(tmp_path):
    pytest.importorskip("mace")
    from helpers_mace import build_random_mace

    study_dir = tmp_path / "study"
    study_dir.mkdir()
    study_file = study_dir / "production.yaml"
    shutil.copy(PRODUCTION, study_file)
    env = {**os.environ, "AIIDA_PATH": str(tmp_path / "aiida"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    created = _run([str(BIN / "verdi"), "presto", "--profile-name", "fresh", "--use-zeromq"], env)
    assert created.returncode == 0, created.stderr
    dry_run = [str(BIN / "aiida-lifdiff"), "-p", "fresh", "submit", "--dry-run", str(study_file)]

    # Nothing in place yet: the plan is printed, then every missing piece, and the exit status says not ready.
    first = _run(dry_run, env)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "120 MD runs" in first.stdout and "NOT READY" in first.stdout
    for text in ("lif-dft-deepmd.pb", "data/lif-dft-deepmd", "macempa0mediummodel", "lifdiff-md@gpu", "lammps@gpu"):
        assert text in first.stdout, text
    # The codes of a cluster computer are made by `setup slurm`, not `setup localhost`: the hint says so.
    assert "setup slurm --label gpu" in first.stdout and "setup localhost" not in first.stdout

    # The user's files and the GPU computer's codes.
    (study_dir / "models").mkdir()
    shutil.copy(REPO / "tests/data/models/tiny-deepmd.pb", study_dir / "models" / "lif-dft-deepmd.pb")
    build_random_mace(tmp_path / "cache" / "mace" / "macempa0mediummodel", architecture="mpa0")
    _write_dft_like_frames(study_dir / "data" / "lif-dft-deepmd", 1200)
    setup = (
        "from aiida import load_profile; load_profile('fresh'); from aiida_lifdiff import codes; "
        "c = codes.ensure_localhost_computer('gpu'); "
        "[f(c) for f in (codes.ensure_lammps_code, codes.ensure_runner_code, codes.ensure_label_code, "
        "codes.ensure_mace_train_code, codes.ensure_dp_code, codes.ensure_barrier_code)]; "
        "from aiida import orm; print(orm.QueryBuilder().append(orm.Node).count())"
    )
    made = _run([sys.executable, "-c", setup], env)
    assert made.returncode == 0, made.stderr
    nodes_before = int(made.stdout.split()[-1])

    # 1200 frames less the 500 held out cannot give the 1000-frame model its frames: refused, with the reason.
    short = _run(dry_run, env)
    assert short.returncode == 1 and "has only 700 frames to train on" in short.stdout, short.stdout

    shutil.rmtree(study_dir / "data")
    _write_dft_like_frames(study_dir / "data" / "lif-dft-deepmd", 1600)
    ready = _run(dry_run, env)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert "ready: the complete BenchmarkWorkChain builder validated" in ready.stdout
    assert "training jobs:" in ready.stdout and "mpa0_dft_1000" in ready.stdout
    # A dry run stores nothing: the profile holds exactly the codes and computer made above.
    count = _run(
        [
            sys.executable,
            "-c",
            "from aiida import load_profile, orm; load_profile('fresh'); "
            "print(orm.QueryBuilder().append(orm.Node).count())",
        ],
        env,
    )
    assert int(count.stdout.split()[-1]) == nodes_before
