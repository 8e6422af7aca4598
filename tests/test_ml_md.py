"""MdWorkChain on the batched lifdiff-md engine with a MACE model: outputs, restarts and failures."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.workflows.functions.structures import create_lif_supercell
from aiida_lifdiff.workflows.md import MdWorkChain

pytest.importorskip("mace", reason="MACE tests need the `mace` extra (mace-torch)")

from helpers_mace import build_random_mace  # noqa: E402


@pytest.fixture(scope="module")
def random_mace(tmp_path_factory, aiida_profile):
    path = build_random_mace(tmp_path_factory.mktemp("mace") / "random-tiny.model", architecture="tiny")
    return PotentialData.get_or_create(PotentialData.from_model_file("mace", path, label="random tiny MACE"))


@pytest.fixture(scope="module")
def runner_code(aiida_profile):
    from aiida_lifdiff.codes import ensure_localhost_computer, ensure_runner_code

    return ensure_runner_code(ensure_localhost_computer())


@pytest.fixture(scope="module")
def small_cell(aiida_profile):
    return create_lif_supercell(orm.Int(1), orm.Float(4.03), orm.Str("tetrahedral"))


def run_runner(code, potential, structure, members, max_iterations=5, **parameters):
    builder = MdWorkChain.get_builder()
    builder.max_iterations = orm.Int(max_iterations)
    builder.structure = structure
    builder.potential = potential
    settings = {"timestep_fs": 1.0, "dump_stride": 10, "thermo_stride": 10, "members": members, "dtype": "float64"}
    settings.update(parameters)
    builder.parameters = orm.Dict(settings)
    builder.lifdiff_md.code = code
    return run_get_node(builder)


def members(*temperatures):
    return [{"name": f"m{i}", "temperature_K": t, "seed": 100 + i} for i, t in enumerate(temperatures)]


def test_batched_members_each_get_a_trajectory(runner_code, random_mace, small_cell):
    results, node = run_runner(runner_code, random_mace, small_cell, members(300.0, 600.0, 900.0), n_steps=100)
    assert node.is_finished_ok, node.exit_message
    calcs = [c for c in node.called if c.process_label == "LifdiffMdCalculation"]
    assert len(calcs) == 1, "all members in one batched calculation"
    assert set(results["trajectories"]) == {"m0", "m1", "m2"}
    for name, temperature in (("m0", 300.0), ("m1", 600.0), ("m2", 900.0)):
        trajectory = results["trajectories"][name]
        assert list(trajectory.get_stepids()) == list(range(0, 101, 10))
        assert trajectory.base.attributes.get("temperature_K") == temperature
        assert trajectory.base.attributes.get("engine").startswith("lifdiff-md")
        assert trajectory.get_positions().shape == (11, 9, 3)
        assert results["thermo"][name].get_array("temp_K").size == 11


def test_runner_timer_stop_is_continued_from_the_checkpoint(runner_code, random_mace, small_cell):
    results, node = run_runner(
        runner_code,
        random_mace,
        small_cell,
        members(500.0, 700.0),
        # ~50 steps/s here (2 members of 9 atoms, per-step overhead dominates): 400 steps are 4-8 segments of 2 s.
        n_steps=400,
        timeout_s=2.0,
        checkpoint_stride=50,
        max_iterations=40,
    )
    assert node.is_finished_ok, node.exit_message
    calcs = [c for c in node.called if c.process_label == "LifdiffMdCalculation"]
    assert len(calcs) >= 2 and calcs[0].exit_status == 400
    for name in ("m0", "m1"):
        trajectory = results["trajectories"][name]
        assert list(trajectory.get_stepids()) == list(range(0, 401, 10)), "no frame missing or duplicated"
        assert np.abs(np.diff(trajectory.get_positions(), axis=0)).max() < 1.0


def test_an_exploding_member_is_stopped_and_the_others_kept(runner_code, random_mace, small_cell):
    results, node = run_runner(
        runner_code,
        random_mace,
        small_cell,
        members(500.0, 5.0e6),
        n_steps=200,
    )
    assert node.exit_status == MdWorkChain.exit_codes.ERROR_SOME_MEMBERS_FAILED.status, node.exit_message
    assert "m1" in node.exit_message
    assert set(results["trajectories"]) == {"m0"}
    assert list(results["trajectories"]["m0"].get_stepids())[-1] == 200


def test_cuda_on_a_machine_without_gpu_fails_with_a_clear_message(runner_code, random_mace, small_cell):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _, node = run_runner(runner_code, random_mace, small_cell, members(500.0), n_steps=10, device="cuda")
    assert not node.is_finished_ok
    calc = [c for c in node.called if c.process_label == "LifdiffMdCalculation"][0]
    assert calc.exit_status == 303
    assert "CUDA" in calc.exit_message


def test_potential_missing_a_species_is_refused(runner_code, small_cell, tmp_path):
    from aiida_lifdiff.potentials.classical import tosi_fumi_lif

    parameters = tosi_fumi_lif()
    parameters["pairs"] = {"Li-Li": parameters["pairs"]["Li-Li"]}
    parameters["species"] = ["Li"]
    lithium_only = PotentialData.from_classical(parameters, label="Li only").store()
    with pytest.raises(ValueError, match="not \\['F'\\]"):
        run_runner(runner_code, lithium_only, small_cell, members(500.0), n_steps=10)


def test_corrupt_model_file_is_refused_before_storing(tmp_path):
    bad = tmp_path / "broken.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable mace model"):
        PotentialData.from_model_file("mace", bad)
