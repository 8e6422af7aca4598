"""MdWorkChain with real LAMMPS: parser contract, walltime restarts and the lost-atoms handler."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_lifdiff.engines import lammps_input
from aiida_lifdiff.workflows.functions.structures import create_lif_supercell
from aiida_lifdiff.workflows.md import MdWorkChain

pytestmark = pytest.mark.lammps


@pytest.fixture
def supercell(aiida_profile):
    return create_lif_supercell(orm.Int(2), orm.Float(4.03), orm.Str("tetrahedral"))


def run_md(code, potential, structure, temperature_K, seed, max_iterations=None, **parameters):
    builder = MdWorkChain.get_builder()
    if max_iterations is not None:
        builder.max_iterations = orm.Int(max_iterations)
    builder.structure = structure
    builder.potential = potential
    parameters["members"] = [{"name": "member", "temperature_K": temperature_K, "seed": seed}]
    builder.parameters = orm.Dict(parameters)
    builder.lammps.code = code
    results, node = run_get_node(builder)
    return {"trajectory": results.get("trajectories", {}).get("member"), **results}, node


def independent_dump_positions(text: str) -> tuple[list[int], np.ndarray]:
    """Parse the dump line by line, independently of the project's vectorised reader."""
    steps, frames, lines = [], [], text.splitlines()
    i = 0
    while i < len(lines):
        assert lines[i] == "ITEM: TIMESTEP"
        steps.append(int(lines[i + 1]))
        n_atoms = int(lines[i + 3])
        columns = lines[i + 8].split()[2:]
        rows = {}
        for line in lines[i + 9 : i + 9 + n_atoms]:
            values = dict(zip(columns, line.split()))
            rows[int(values["id"])] = [float(values["xu"]), float(values["yu"]), float(values["zu"])]
        frames.append([rows[k] for k in sorted(rows)])
        i += 9 + n_atoms
    return steps, np.array(frames)


def test_trajectory_equals_what_lammps_wrote(lammps_code, tosi_fumi, supercell):
    results, node = run_md(
        lammps_code,
        tosi_fumi,
        supercell,
        temperature_K=1000.0,
        timestep_fs=1.0,
        n_steps=600,
        equilibration_steps=100,
        seed=7,
        dump_stride=20,
        thermo_stride=20,
    )
    assert node.is_finished_ok, node.exit_message
    trajectory = results["trajectory"]
    calc = node.called[-1]
    dump_text = calc.outputs.retrieved.base.repository.get_object_content(lammps_input.TRAJECTORY_FILE)
    steps, positions = independent_dump_positions(dump_text)

    assert list(trajectory.get_stepids()) == steps == list(range(0, 601, 20))
    np.testing.assert_array_equal(trajectory.get_positions(), positions)
    np.testing.assert_allclose(trajectory.get_times(), np.array(steps) * 1e-3)
    assert list(trajectory.symbols) == list(supercell.get_ase().get_chemical_symbols())
    np.testing.assert_allclose(trajectory.get_cells()[0], supercell.cell, atol=1e-6)
    attributes = trajectory.base.attributes.all
    assert attributes["temperature_K"] == 1000.0
    assert attributes["timestep_fs"] == 1.0
    assert attributes["stride"] == 20
    assert attributes["seed"] == 7
    assert attributes["engine"] == "lammps"
    assert attributes["equilibration_ps"] == pytest.approx(0.1)
    thermo = results["thermo"]["member"]
    assert thermo.get_array("temp_K").shape == (31,)
    # Unwrapped coordinates: no jump of the order of the box between frames 20 fs apart.
    assert np.abs(np.diff(trajectory.get_positions(), axis=0)).max() < 2.0


def test_walltime_stop_is_continued_from_the_restart_file(lammps_code, tosi_fumi, supercell):
    parameters = dict(temperature_K=1000.0, timestep_fs=1.0, n_steps=12000, seed=5, dump_stride=100, thermo_stride=100)
    reference, reference_node = run_md(lammps_code, tosi_fumi, supercell, **parameters)
    # How many 1 s segments 12,000 steps need depends on the machine's load: allow plenty, the point is continuity.
    results, node = run_md(lammps_code, tosi_fumi, supercell, timeout_s=1, max_iterations=40, **parameters)
    assert node.is_finished_ok, node.exit_message

    calcs = [c for c in node.called if c.process_label == "LifdiffLammpsCalculation"]
    assert len(calcs) >= 2, "the 1 s timer should have stopped LAMMPS at least once"
    assert all(c.exit_status == 400 for c in calcs[:-1]) and calcs[-1].exit_status == 0
    trajectory = results["trajectory"]
    assert trajectory.base.attributes.get("n_segments") == len(calcs)
    assert list(trajectory.get_stepids()) == list(range(0, 12001, 100)), "no frame missing or duplicated"

    # Up to the first stop the run is the uninterrupted one, frame for frame.
    first_stop = calcs[0].outputs.results["last_step"]
    n_first = first_stop // 100 + 1
    np.testing.assert_array_equal(
        trajectory.get_positions()[:n_first], reference["trajectory"].get_positions()[:n_first]
    )
    # Across every restart the unwrapped positions stay continuous.
    assert np.abs(np.diff(trajectory.get_positions(), axis=0)).max() < 3.0


def test_lost_atoms_halves_the_timestep(lammps_code, tosi_fumi, supercell):
    results, node = run_md(
        lammps_code,
        tosi_fumi,
        supercell,
        temperature_K=1000.0,
        timestep_fs=20.0,
        n_steps=200,
        seed=5,
        dump_stride=10,
        thermo_stride=10,
    )
    assert node.is_finished_ok, node.exit_message
    calcs = [c for c in node.called if c.process_label == "LifdiffLammpsCalculation"]
    assert calcs[0].exit_status == 310
    final_settings = calcs[-1].inputs.settings["md"]
    assert final_settings["timestep_fs"] < 20.0
    # The same physical length and frame interval in ps, at the smaller timestep.
    factor = 20.0 / final_settings["timestep_fs"]
    assert final_settings["n_steps"] == 200 * factor
    assert results["trajectory"].get_times()[-1] == pytest.approx(4.0)
    assert np.diff(results["trajectory"].get_times())[0] == pytest.approx(0.2)


def test_potential_without_species_is_refused_before_anything_runs(lammps_code, supercell):
    from aiida_lifdiff.data.potential import PotentialData
    from aiida_lifdiff.potentials.classical import tosi_fumi_lif

    parameters = tosi_fumi_lif()
    parameters["pairs"] = {"F-F": parameters["pairs"]["F-F"]}
    parameters["species"] = ["F"]
    parameters["charges"] = {"F": -1.0}
    fluorine_only = PotentialData.from_classical(parameters, label="F only").store()
    n_before = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(ValueError, match="not \\['Li'\\]"):
        run_md(
            lammps_code,
            fluorine_only,
            supercell,
            temperature_K=1000.0,
            timestep_fs=1.0,
            n_steps=100,
            seed=5,
            dump_stride=10,
            thermo_stride=10,
        )
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == n_before
