"""BarrierWorkChain and `aiida-lifdiff barriers`: Tosi-Fumi a0 and NEB barriers through AiiDA on localhost.

The full NEB runs once (module fixture, ~30 s on 2 cores) and the tests read its nodes; the program itself is
tested in tests/test_runner_barrier.py.
"""

from __future__ import annotations

import json

import pytest
from aiida import orm
from aiida.engine import run_get_node
from click.testing import CliRunner

from aiida_lifdiff.calculations.barrier import LifdiffBarrierCalculation, validate_barrier_parameters
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.workflows.barrier import BarrierWorkChain, lattice_relaxation_inputs

PATHS = ("knockoff_collinear", "knockoff_noncollinear", "direct")


@pytest.fixture(scope="module")
def barrier_code(aiida_profile):
    from aiida_lifdiff.codes import ensure_barrier_code, ensure_localhost_computer

    return ensure_barrier_code(ensure_localhost_computer())


@pytest.fixture(scope="module")
def tosi_fumi_barriers(barrier_code):
    potential = PotentialData.get_or_create(PotentialData.tosi_fumi_lif())
    builder = BarrierWorkChain.get_builder_from_protocol(barrier_code, potential)
    _, node = run_get_node(builder)
    return node


def test_tosi_fumi_knockoff_is_the_lowest_barrier_and_every_neb_converged(tosi_fumi_barriers):
    node = tosi_fumi_barriers
    assert node.is_finished_ok, node.exit_message
    results = node.outputs.results.get_dict()
    assert results["a0_A"] == pytest.approx(4.01, abs=0.01)  # DESIGN.md: Tosi-Fumi 0 K a0 = 4.01 A
    barriers = results["barriers_eV"]
    assert all(results["converged"][path] for path in PATHS)
    assert all(results["max_force_eV_A"][path] < 0.01 for path in PATHS)
    assert barriers["knockoff_collinear"] < min(barriers["knockoff_noncollinear"], barriers["direct"])
    assert 0.02 < barriers["knockoff_collinear"] < 0.5  # "a few tenths of an eV" at most for the interstitial
    # The profiles are what the results say: the barrier is the highest point of each band.
    profiles = node.outputs.profiles
    for path in PATHS:
        energies = profiles.get_array(f"{path}_energies_eV")
        assert energies[0] == pytest.approx(0.0, abs=1e-9)
        assert energies.max() == pytest.approx(barriers[path], abs=1e-9)
        # Symmetric paths: both end points are the same state of the crystal.
        assert energies[-1] == pytest.approx(0.0, abs=5e-3)
    assert set(node.outputs.eos.get_arraynames()) >= {"lattice_constants_A", "energies_eV"}
    assert node.outputs.profile_plot.get_content(mode="rb")[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(node.outputs.start_structure.sites) == 65


def test_cli_barriers_json(barrier_code, tosi_fumi_barriers):
    """The CLI runs the same work chain; with caching the second run is the first one's copy."""
    from aiida_lifdiff.caching import enable_study_caching
    from aiida_lifdiff.cli.main import cli

    with enable_study_caching():
        result = CliRunner().invoke(cli, ["barriers", "--potential", "tosi-fumi-lif", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(PATHS) <= set(data["barriers_eV"]) and data["a0_A"] == pytest.approx(4.01, abs=0.01)
    expected = tosi_fumi_barriers.outputs.results["barriers_eV"]
    assert data["barriers_eV"]["knockoff_collinear"] == pytest.approx(expected["knockoff_collinear"], abs=1e-6)
    assert all(data["converged"][path] for path in PATHS)


def test_cli_refuses_an_unknown_potential_before_storing_anything(barrier_code):
    from aiida_lifdiff.cli.main import cli

    before = orm.QueryBuilder().append(orm.Node).count()
    result = CliRunner().invoke(cli, ["barriers", "--potential", "mace-mpa-0"])
    assert result.exit_code != 0 and "unknown potential" in result.output
    result = CliRunner().invoke(cli, ["barriers", "--potential", "tosi-fumi-lif", "--paths", "teleport"])
    assert result.exit_code != 0 and "unknown paths" in result.output
    assert orm.QueryBuilder().append(orm.Node).count() == before


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"nebb": {}}, "unknown barrier parameters"),
        ({"neb": {"fmax_eV_A": -1}}, "fmax_eV_A"),
        ({"paths": ["direct"], "start_site": "face"}, "tetrahedral"),
        ({"lattice": {"a0_A": 40.0}}, "lattice.a0_A"),
        ({"kspace_accuracy": 2.0}, "kspace_accuracy"),
    ],
)
def test_bad_parameters_are_refused_before_submission(barrier_code, parameters, message):
    assert message in (validate_barrier_parameters(parameters) or "")
    potential = PotentialData.get_or_create(PotentialData.tosi_fumi_lif())
    with pytest.raises(ValueError, match=message):
        run_get_node(LifdiffBarrierCalculation, potential=potential, code=barrier_code, parameters=orm.Dict(parameters))


def test_an_end_point_that_relaxes_away_is_reported_not_retried(barrier_code):
    """The face site is a saddle: started there, the interstitial rolls off, and the work chain says so (441)."""
    potential = PotentialData.get_or_create(PotentialData.tosi_fumi_lif())
    builder = BarrierWorkChain.get_builder_from_protocol(
        barrier_code, potential, overrides={"parameters": {"start_site": "face", "paths": []}}
    )
    _, node = run_get_node(builder)
    assert node.exit_status == BarrierWorkChain.exit_codes.ERROR_ENDPOINT_CHANGED.status
    assert "face" in node.exit_message
    assert len(node.called) == 1  # not retried
    assert "results" in node.outputs and node.outputs.results["exit_code"] == 5


def test_lattice_only_run_gives_a0_for_the_md(barrier_code):
    potential = PotentialData.get_or_create(PotentialData.tosi_fumi_lif())
    inputs = lattice_relaxation_inputs(potential, barrier_code, guess=4.1)
    _, node = run_get_node(BarrierWorkChain, **inputs)
    assert node.is_finished_ok, node.exit_message
    results = node.outputs.results.get_dict()
    assert results["a0_A"] == pytest.approx(4.01, abs=0.01) and results["barriers_eV"] == {}
    assert "profiles" not in node.outputs
