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
    (calc,) = [child for child in orm.load_node(data["pk"]).called if isinstance(child, orm.CalcJobNode)]
    (first,) = [child for child in tosi_fumi_barriers.called if isinstance(child, orm.CalcJobNode)]
    assert calc.base.caching.get_cache_source() == first.uuid  # lifdiff.barrier is in caching.CACHED_PROCESSES


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


def test_an_neb_out_of_steps_is_rerun_once_with_twice_the_steps_then_reported(barrier_code):
    """340 -> one rerun with max_steps doubled -> 440, with the unconverged band still attached and flagged."""
    potential = PotentialData.get_or_create(PotentialData.tosi_fumi_lif())
    overrides = {"parameters": {"paths": ["direct"], "neb": {"max_steps": 2}}}
    builder = BarrierWorkChain.get_builder_from_protocol(barrier_code, potential, overrides=overrides)
    _, node = run_get_node(builder)
    assert node.exit_status == BarrierWorkChain.exit_codes.ERROR_NEB_NOT_CONVERGED.status, node.exit_message
    calcs = [child for child in node.called if isinstance(child, orm.CalcJobNode)]
    assert [calc.exit_status for calc in calcs] == [
        LifdiffBarrierCalculation.exit_codes.ERROR_NEB_NOT_CONVERGED.status
    ] * 2
    assert [calc.inputs.parameters["neb"]["max_steps"] for calc in calcs] == [2, 4]
    results = node.outputs.results.get_dict()
    assert results["converged"] == {"direct": False} and results["barriers_eV"]["direct"] > 0
    assert "direct_energies_eV" in node.outputs.profiles.get_arraynames()
    assert node.outputs.profile_plot.get_content(mode="rb")[:4] == b"\x89PNG"


def _parse(computer, files: dict[str, str]):
    """Run the barrier parser on a hand-made calculation whose retrieved folder holds ``files``."""
    from aiida.common.links import LinkType

    from aiida_lifdiff.parsers.barrier import LifdiffBarrierParser

    node = orm.CalcJobNode(computer=computer, process_type="aiida.calculations:lifdiff.barrier")
    node.set_option("resources", {"num_machines": 1, "num_mpiprocs_per_machine": 1})
    node.set_option("output_filename", "barrier.out")
    node.set_option("scheduler_stderr", "_scheduler-stderr.txt")
    node.store()
    retrieved = orm.FolderData()
    for name, text in files.items():
        retrieved.base.repository.put_object_from_bytes(text.encode(), name)
    retrieved.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label="retrieved")
    retrieved.store()
    outputs, calcfunction = LifdiffBarrierParser.parse_from_node(node, store_provenance=False)
    return outputs, calcfunction.exit_status, calcfunction.exit_message


def test_parser_on_hand_made_folders(barrier_code, tosi_fumi_barriers):
    """Exit 4 keeps every output (340); no summary: SLURM's time limit (120) or the output's tail (300)."""
    calc = next(child for child in tosi_fumi_barriers.called if isinstance(child, orm.CalcJobNode))
    summary = json.loads(calc.outputs.retrieved.base.repository.get_object_content("summary.json"))
    summary["exit_code"], summary["message"] = 4, "direct: not converged in 400 steps"
    summary["paths"]["direct"]["converged"] = False
    computer = barrier_code.computer
    outputs, status, message = _parse(computer, {"summary.json": json.dumps(summary)})
    assert status == LifdiffBarrierCalculation.exit_codes.ERROR_NEB_NOT_CONVERGED.status
    assert "direct: not converged" in message
    assert set(outputs) == {"results", "profiles", "eos"}  # no start.extxyz in this folder
    results = outputs["results"].get_dict()
    assert results["converged"]["direct"] is False and results["converged"]["knockoff_collinear"] is True
    assert "energies_eV" not in results["paths"]["direct"]  # the lists live in `profiles`
    assert len(outputs["profiles"].get_array("direct_energies_eV")) == len(summary["paths"]["direct"]["energies_eV"])

    killed = "slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 2026-12-02T10:00:00 DUE TO TIME LIMIT ***\n"
    _, status, _ = _parse(computer, {"_scheduler-stderr.txt": killed, "barrier.out": "step 99\n"})
    assert status == LifdiffBarrierCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status
    _, status, message = _parse(computer, {"barrier.out": "Traceback: something broke\n"})
    assert status == LifdiffBarrierCalculation.exit_codes.ERROR_MISSING_OUTPUT.status
    assert "something broke" in message


def test_prepare_for_submission_writes_the_program_input(barrier_code, tmp_path):
    """The input document: the parameters as given plus the model entry; the classical settings go into it."""
    from aiida.common.folders import Folder
    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager

    potential = PotentialData.get_or_create(PotentialData.tosi_fumi_lif())
    parameters = {"repeat": 3, "paths": ["direct"], "neb": {"n_images": 3}, "kspace_accuracy": 1e-6}
    inputs = {"potential": potential, "code": barrier_code, "parameters": orm.Dict(parameters)}
    process = instantiate_process(get_manager().get_runner(), LifdiffBarrierCalculation, **inputs)
    calcinfo = process.prepare_for_submission(Folder(str(tmp_path)))
    document = json.loads((tmp_path / "input.json").read_text())
    assert document["repeat"] == 3 and document["paths"] == ["direct"] and document["neb"] == {"n_images": 3}
    assert document["model"]["kind"] == "classical" and "kspace_accuracy" not in document
    assert document["model"]["kspace_accuracy"] == 1e-6 and document["model"]["cutoff"] == 8.0
    assert (tmp_path / document["model"]["parameters"]).is_file()  # the Tosi-Fumi table, staged beside the input
    assert calcinfo.codes_info[0].cmdline_params == ["input.json"]
    assert "summary.json" in calcinfo.retrieve_list and "path-*.extxyz" in calcinfo.retrieve_list
