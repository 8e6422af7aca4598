"""The ``lifdiff-md`` runner: batching, thermostat statistics, restarts, failures, exit codes.

Most runs call ``main()`` in this process (a fresh interpreter costs ~5 s of imports);
the exit-code tests that must see the real console behaviour use a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_mace import build_random_mace, one_torch_thread  # noqa: F401 (autouse fixture)

from aiida_lifdiff.engines.lammps_output import join_segments, read_thermo
from aiida_lifdiff.runner import md as runner_md
from aiida_lifdiff.runner.io import read_checkpoint, read_trajectory
from aiida_lifdiff.structures import build_lif_supercell

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    """A folder with the tiny model and the structures every test uses."""
    root = tmp_path_factory.mktemp("lifdiff_md")
    build_random_mace(root / "tiny.model", "tiny", seed=0)
    build_lif_supercell(2).write(root / "lif65.extxyz")
    build_lif_supercell(2, interstitial_site="none").write(root / "lif64.extxyz")
    rattled = build_lif_supercell(2)
    rattled.rattle(0.1, seed=7)
    rattled.write(root / "lif65r.extxyz")
    # Interstitial pushed to 0.2 A from a lattice Li: the ZBL repulsion must explode.
    crushed = build_lif_supercell(2)
    crushed.positions[-1] = crushed.positions[0] + [0.2, 0.0, 0.0]
    crushed.write(root / "crushed.extxyz")
    sodium = build_lif_supercell(2)
    sodium[-1].symbol = "Na"
    sodium.write(root / "sodium.extxyz")
    return root


def _input(**overrides) -> dict:
    data = {
        "model": {"kind": "mace", "path": "tiny.model"},
        "device": "cpu",
        "dtype": "float64",
        "timestep_fs": 1.0,
        "n_steps": 20,
        "equilibration_steps": 0,
        "dump_stride": 5,
        "thermo_stride": 5,
        "thermostat": {"kind": "csvr", "tau_fs": 50.0},
        "members": [
            {"name": "T600_s1", "structure": "lif65.extxyz", "temperature_K": 600.0, "seed": 1},
            {"name": "T900_s2", "structure": "lif64.extxyz", "temperature_K": 900.0, "seed": 2},
        ],
    }
    data.update(overrides)
    return data


def _run(workdir: Path, out: Path, data: dict | str, name: str = "input.json") -> int:
    path = workdir / f"{out.name}_{name}"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return runner_md.main([str(path), "--output-dir", str(out)])


def _subprocess(workdir: Path, out: Path, data: dict | str) -> subprocess.CompletedProcess:
    path = workdir / f"{out.name}_input.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{TESTS_DIR}")
    return subprocess.run(
        [sys.executable, "-m", "aiida_lifdiff.runner.md", str(path), "--output-dir", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_outputs_contract_and_batched_equals_one_at_a_time(workdir, tmp_path):
    batched, alone = tmp_path / "batched", tmp_path / "alone"
    assert _run(workdir, batched, _input()) == 0
    assert _run(workdir, alone, _input(batch_size=1)) == 0

    summary = json.loads((batched / "summary.json").read_text())
    assert summary["exit_code"] == 0
    assert summary["throughput_atom_steps_per_s"] > 0
    assert summary["model"]["sha256"] and summary["versions"]["mace"] and summary["versions"]["torch"]
    assert [m["status"] for m in summary["members"]] == ["ok", "ok"]
    checkpoint, _ = read_checkpoint(batched / "checkpoint.npz")
    assert [m["step"] for m in checkpoint["members"]] == [20, 20]

    for name, n_atoms, temperature in (("T600_s1", 65, 600.0), ("T900_s2", 64, 900.0)):
        traj = read_trajectory(batched / name / "trajectory.npz")
        assert traj["positions"].shape == (5, n_atoms, 3)
        assert traj["steps"].tolist() == [0, 5, 10, 15, 20]
        np.testing.assert_allclose(traj["times_ps"], traj["steps"] * 1e-3)
        assert traj["cell"].shape == (3, 3) and len(traj["symbols"]) == n_atoms
        assert traj["engine"] == "lifdiff-md/mace"
        assert traj["temperature_K"] == temperature and traj["stride"] == 5 and traj["equilibration_ps"] == 0.0
        assert traj["seed"] in (1, 2) and traj["timestep_fs"] == 1.0
        status = json.loads((batched / name / "status.json").read_text())
        assert status["status"] == "ok" and status["last_step"] == 20 and status["reason"] is None
        thermo = read_thermo(batched / name / "thermo.dat")
        assert thermo["step"].tolist() == [0, 5, 10, 15, 20]
        assert np.all(np.isfinite(thermo["press_bar"]))
        # Velocity Verlet + CSVR: the conserved quantity stays put over 20 fs.
        assert np.ptp(thermo["econserve_eV"]) < 1e-3
        # The first frame is the initial structure (no equilibration): identical in both runs,
        # and the member follows the same dynamics alone as in the batch.
        other = read_trajectory(alone / name / "trajectory.npz")
        np.testing.assert_allclose(traj["positions"], other["positions"], atol=1e-8)
        np.testing.assert_allclose(thermo["temp_K"], read_thermo(alone / name / "thermo.dat")["temp_K"], rtol=1e-8)


def _block_mean(values: np.ndarray, n_blocks: int = 5) -> tuple[float, float]:
    blocks = np.array([block.mean() for block in np.array_split(values, n_blocks)])
    return float(values.mean()), float(blocks.std(ddof=1) / np.sqrt(n_blocks))


def test_temperature_statistics_batched_and_alone(workdir, tmp_path):
    members = [
        {"name": f"s{seed}", "structure": "lif65r.extxyz", "temperature_K": 600.0, "seed": seed} for seed in range(4)
    ]
    settings = {
        "dtype": "float32",
        "n_steps": 400,
        "equilibration_steps": 100,
        "dump_stride": 100,
        "thermo_stride": 2,
        "thermostat": {"kind": "csvr", "tau_fs": 20.0},
        "members": members,
    }
    results = {}
    for label, extra in (("batched", {}), ("alone", {"batch_size": 1})):
        out = tmp_path / label
        assert _run(workdir, out, _input(**settings, **extra)) == 0
        results[label] = [read_thermo(out / m["name"] / "thermo.dat")["temp_K"] for m in members]

    pooled = []
    for label, series in results.items():
        for temps in series:
            mean, error = _block_mean(temps)
            assert abs(mean - 600.0) < 5 * error + 5.0, (label, mean, error)
        mean, error = _block_mean(np.concatenate(series), n_blocks=20)
        assert abs(mean - 600.0) < 4 * error + 2.0, (label, mean, error)
        pooled.append((mean, error))
    (mean_b, err_b), (mean_a, err_a) = pooled
    assert abs(mean_b - mean_a) < 4 * np.hypot(err_b, err_a) + 2.0
    # Canonical kinetic-energy fluctuations: std(T)/T = sqrt(2 / N_dof), N_dof = 3*65 - 3.
    relative_std = np.concatenate(results["batched"]).std() / 600.0
    assert relative_std == pytest.approx(np.sqrt(2 / 192), rel=0.35)


def _stop_after(monkeypatch, n_calls: int) -> None:
    """Make the runner's wall-time check fire on its n-th call (once per batch start and per step)."""
    calls = {"n": 0}

    def out_of_time(self):
        calls["n"] += 1
        if calls["n"] >= n_calls:
            self.stop_reason = "timeout_s=test reached"
        return self.stop_reason is not None

    monkeypatch.setattr(runner_md.Runner, "_out_of_time", out_of_time)


def _assert_continuous(positions: np.ndarray, limit: float = 0.5) -> None:
    jumps = np.linalg.norm(np.diff(positions, axis=0), axis=-1)
    assert jumps.max() < limit, jumps.max()


def test_restart_fresh_folder_and_in_place(workdir, tmp_path, monkeypatch):
    settings = {"n_steps": 60, "equilibration_steps": 10, "dump_stride": 4, "thermo_stride": 3, "checkpoint_stride": 20}
    reference = tmp_path / "reference"
    assert _run(workdir, reference, _input(**settings)) == 0

    # Stop after production step 37 (1 check at the batch start, then 1 per step: 10 + 37).
    first = tmp_path / "first"
    _stop_after(monkeypatch, 1 + 10 + 37)
    assert _run(workdir, first, _input(**settings)) == 5
    monkeypatch.undo()
    summary = json.loads((first / "summary.json").read_text())
    assert summary["exit_code"] == 5
    meta, arrays = read_checkpoint(first / "checkpoint.npz")
    assert [m["step"] for m in meta["members"]] == [37, 37]
    assert {m["status"] for m in meta["members"]} == {"timeout"}
    assert arrays["T600_s1.positions"].shape == (65, 3) and arrays["T600_s1.images"].dtype == np.int64
    status = json.loads((first / "T600_s1" / "status.json").read_text())
    assert status["status"] == "timeout" and status["last_step"] == 37
    partial = read_trajectory(first / "T600_s1" / "trajectory.npz")
    assert partial["steps"].tolist() == list(range(0, 37, 4))

    # Continue in a fresh folder (how the CalcJob does it): only steps after 37.
    second = tmp_path / "second"
    restart = _input(**settings, restart=str(first / "checkpoint.npz"))
    assert _run(workdir, second, restart) == 0
    for name in ("T600_s1", "T900_s2"):
        segments = [read_trajectory(folder / name / "trajectory.npz") for folder in (first, second)]
        assert segments[1]["steps"][0] == 40
        steps, positions = join_segments([(s["steps"], s["positions"]) for s in segments])
        full = read_trajectory(reference / name / "trajectory.npz")
        assert steps.tolist() == full["steps"].tolist() == list(range(0, 61, 4))
        np.testing.assert_allclose(positions, full["positions"], atol=1e-6)
        _assert_continuous(positions)
        rows = [read_thermo(folder / name / "thermo.dat")["step"] for folder in (first, second)]
        assert rows[1][0] == 39
        joined, _ = join_segments([(r, r) for r in rows])
        assert joined.tolist() == list(range(0, 61, 3))

    # Continue in place: the folder ends with one seamless trajectory and thermo file.
    assert _run(workdir, first, restart) == 0
    for name in ("T600_s1", "T900_s2"):
        traj = read_trajectory(first / name / "trajectory.npz")
        assert traj["steps"].tolist() == list(range(0, 61, 4))
        np.testing.assert_allclose(
            traj["positions"], read_trajectory(reference / name / "trajectory.npz")["positions"], atol=1e-6
        )
        assert read_thermo(first / name / "thermo.dat")["step"].tolist() == list(range(0, 61, 3))
        assert json.loads((first / name / "status.json").read_text())["status"] == "ok"


def test_timeout_before_start_then_restart(workdir, tmp_path):
    out = tmp_path / "run"
    assert _run(workdir, out, _input(timeout_s=1e-6, batch_size=1)) == 5
    meta, arrays = read_checkpoint(out / "checkpoint.npz")
    assert {m["status"] for m in meta["members"]} == {"timeout"} and not arrays
    assert json.loads((out / "T900_s2" / "status.json").read_text())["status"] == "timeout"
    assert _run(workdir, out, _input(batch_size=1, restart=str(out / "checkpoint.npz"))) == 0
    assert read_trajectory(out / "T900_s2" / "trajectory.npz")["steps"].tolist() == [0, 5, 10, 15, 20]


def test_exploding_member_fails_alone(workdir, tmp_path):
    members = _input()["members"] + [
        {"name": "crushed", "structure": "crushed.extxyz", "temperature_K": 600.0, "seed": 3}
    ]
    out = tmp_path / "run"
    assert _run(workdir, out, _input(members=members)) == 4
    status = json.loads((out / "crushed" / "status.json").read_text())
    assert status["status"] == "failed"
    assert "exploding forces" in status["reason"] and status["last_step"] == 0
    for name in ("T600_s1", "T900_s2"):
        assert json.loads((out / name / "status.json").read_text())["status"] == "ok"
        assert read_trajectory(out / name / "trajectory.npz")["steps"][-1] == 20
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 4 and "crushed" in summary["message"]


def test_nan_from_ase_calculator_fails_one_member(workdir, tmp_path):
    model = {
        "kind": "ase",
        "factory": "helpers_mace:flaky_lennard_jones",
        "kwargs": {"sigma": 2.0, "epsilon": 0.01, "rc": 5.0, "nan_after": 8, "nan_if_natoms": 64},
    }
    out = tmp_path / "run"
    assert _run(workdir, out, _input(model=model)) == 4
    bad = json.loads((out / "T900_s2" / "status.json").read_text())
    assert bad["status"] == "failed" and "non-finite" in bad["reason"] and bad["last_step"] == 8
    assert read_trajectory(out / "T900_s2" / "trajectory.npz")["steps"].tolist() == [0, 5]
    good = read_trajectory(out / "T600_s1" / "trajectory.npz")
    assert good["engine"] == "lifdiff-md/ase" and good["steps"][-1] == 20
    assert json.loads((out / "T600_s1" / "status.json").read_text())["status"] == "ok"


def test_unwrapped_positions_cross_the_cell_continuously(workdir, tmp_path):
    # Free particles (epsilon = 0) at high temperature cross the cell walls within 0.2 ps.
    model = {"kind": "ase", "factory": "ase.calculators.lj:LennardJones", "kwargs": {"epsilon": 0.0, "rc": 3.0}}
    data = _input(model=model, n_steps=300, dump_stride=2, thermo_stride=50, members=[_input()["members"][0]])
    data["members"][0]["temperature_K"] = 3000.0
    out = tmp_path / "run"
    assert _run(workdir, out, data) == 0
    traj = read_trajectory(out / "T600_s1" / "trajectory.npz")
    fractional = traj["positions"] @ np.linalg.inv(traj["cell"])
    assert (fractional[-1] < 0).any() or (fractional[-1] >= 1).any()
    _assert_continuous(traj["positions"], limit=1.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"members": [{"name": "x", "structure": "missing.extxyz", "temperature_K": 600.0, "seed": 1}]}, "does not"),
        ({"members": [{"name": "na", "structure": "sodium.extxyz", "temperature_K": 600.0, "seed": 1}]}, "Na"),
        ({"dtype": "float16"}, "dtype"),
        ({"n_stepz": 5}, "unknown input keys"),
        ({"model": {"kind": "mace", "path": "no-such.model"}}, "no-such.model"),
        ({"thermostat": {"kind": "langevin", "tau_fs": 100.0}}, "csvr"),
    ],
)
def test_bad_input_exit_2_before_md(workdir, tmp_path, change, message, capsys):
    out = tmp_path / "run"
    assert _run(workdir, out, _input(**change)) == 2
    assert message in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 2 and message in summary["message"]
    assert not (out / "checkpoint.npz").exists()


def test_uncached_foundation_model_exit_2_with_the_cache_path(workdir, tmp_path, monkeypatch, capsys):
    from mace.calculators import foundations_models

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(foundations_models, "local_model_path", str(tmp_path / "not-packaged.model"))
    out = tmp_path / "run"
    assert _run(workdir, out, _input(model={"kind": "mace", "path": "medium-mpa-0"})) == 2
    assert str(tmp_path / "xdg" / "mace" / "macempa0mediummodel") in capsys.readouterr().err


def test_restart_checkpoint_of_another_input_is_refused(workdir, tmp_path):
    out = tmp_path / "run"
    assert _run(workdir, out, _input()) == 0
    other = _input(restart=str(out / "checkpoint.npz"))
    other["members"][0]["seed"] = 99
    assert _run(workdir, tmp_path / "other", other) == 2


def test_cli_bad_json_and_cuda(workdir, tmp_path):
    result = _subprocess(workdir, tmp_path / "json", "{not json")
    assert result.returncode == 2, result.stderr
    assert "not valid JSON" in result.stderr
    if not torch.cuda.is_available():
        result = _subprocess(workdir, tmp_path / "cuda", _input(device="cuda"))
        assert result.returncode == 3, result.stderr
        assert "CUDA requested but torch.cuda.is_available() is False" in result.stderr
        assert json.loads((tmp_path / "cuda" / "summary.json").read_text())["exit_code"] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_matches_cpu(workdir, tmp_path):
    assert _run(workdir, tmp_path / "cpu", _input()) == 0
    assert _run(workdir, tmp_path / "gpu", _input(device="cuda")) == 0
    for name in ("T600_s1", "T900_s2"):
        cpu = read_trajectory(tmp_path / "cpu" / name / "trajectory.npz")["positions"]
        gpu = read_trajectory(tmp_path / "gpu" / name / "trajectory.npz")["positions"]
        np.testing.assert_allclose(cpu[:2], gpu[:2], atol=1e-6)
