"""DiffusionWorkChain end to end in-process with real LAMMPS, and refusal of bad studies."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_lifdiff.study import build_builder, load_study
from aiida_lifdiff.workflows.diffusion import DiffusionWorkChain

pytestmark = pytest.mark.lammps

TINY_STUDY = Path(__file__).parent / "data" / "tiny_study.yaml"


def test_tiny_study_gives_a_finite_activation_energy_with_provenance(lammps_code):
    builder = build_builder(load_study(TINY_STUDY))
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message

    arrhenius = node.outputs.arrhenius.get_dict()
    primary = arrhenius[arrhenius["primary_mode"]]
    assert primary["fit_ok"]
    assert math.isfinite(primary["Ea_eV"]) and primary["Ea_err_eV"] > 0
    # The Tosi-Fumi interstitial moves easily: a few tenths of an eV at most, and clearly activated.
    assert 0.0 < primary["Ea_eV"] < 0.5
    assert [p["temperature_K"] for p in primary["points"]] == [500.0, 650.0, 800.0]
    assert node.outputs.arrhenius_plot.get_content(mode="rb")[:8] == b"\x89PNG\r\n\x1a\n"
    # The MD ran at the potential's own 0 K lattice constant, relaxed first; the structure links back to it.
    a0 = node.outputs.lattice["a0_A"]
    assert a0 == pytest.approx(4.01, abs=0.01)
    cell = node.outputs.structure.cell
    repeat = node.inputs.supercell.repeat.value
    assert cell[0][0] == pytest.approx(repeat * a0, rel=1e-9)
    builder_call = node.outputs.structure.creator
    assert builder_call.inputs.lattice_constant.creator.inputs.lattice.pk == node.outputs.lattice.pk
    # How the interstitial moved: hop events were found at every temperature, and they add up.
    mechanisms = arrhenius["mechanisms"]
    assert [p["temperature_K"] for p in mechanisms["per_temperature"]] == [500.0, 650.0, 800.0]
    assert sum(mechanisms["counts"].values()) > 0
    assert sum(mechanisms["fractions"].values()) == pytest.approx(1.0)
    # The Tosi-Fumi interstitial moves mostly by the collinear knock-off (its lowest static barrier too).
    assert mechanisms["dominant"] == "knockoff_collinear"

    for label, diffusivity in node.outputs.diffusivity.items():
        entry = diffusivity.get_dict()
        assert entry["n_replicas"] == 2
        assert entry["tracer"]["n_samples"] == 10
        assert entry["md"]["production_ps"] == pytest.approx(20.0)
        assert entry["drift_reference"] == "F"
        assert node.outputs.msd[label].get_array("tracer_msd_A2").ndim == 1

    # Provenance: from the fit back to the potential through every MD run and its LAMMPS script.
    potential = node.inputs.potential
    fit = node.outputs.arrhenius.creator
    assert fit.process_label == "fit_arrhenius"
    for diffusivity in fit.base.links.get_incoming(node_class=orm.Dict).all_nodes():
        if diffusivity.creator is None:
            continue  # the fit's own parameters
        computed = diffusivity.creator
        assert computed.process_label == "compute_diffusivity"
        trajectories = computed.base.links.get_incoming(node_class=orm.TrajectoryData).all_nodes()
        assert len(trajectories) == 2
        for trajectory in trajectories:
            calc = trajectory.creator
            assert calc.process_label == "LifdiffLammpsCalculation"
            script_maker = calc.inputs.script.creator
            assert script_maker.process_label == "prepare_lammps_md"
            assert script_maker.inputs.potential.uuid == potential.uuid


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"temperatures": [600.0, 700.0]}, "at least 3 distinct temperatures"),
        ({"temperatures": [600.0, 700.0, -1.0]}, "must be > 0 K"),
        ({"seeds": [1, 1]}, "seeds must be distinct"),
        (
            {
                "md_settings": {
                    "timestep_fs": 1.0,
                    "production_ps": 1.0,
                    "frame_interval_fs": 0.3,
                    "thermo_interval_fs": 10.0,
                }
            },
            "whole number of timesteps",
        ),
    ],
)
def test_bad_inputs_are_refused_before_anything_is_stored(lammps_code, change, message):
    builder = build_builder(load_study(TINY_STUDY))
    for key, value in change.items():
        setattr(builder, key, orm.List(value) if isinstance(value, list) else orm.Dict(value))
    n_before = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(ValueError, match=message):
        run_get_node(builder)
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == n_before


def test_unknown_interstitial_site_is_refused(lammps_code):
    builder = build_builder(load_study(TINY_STUDY))
    builder.supercell.interstitial_site = orm.Str("octahedral")
    with pytest.raises(ValueError, match="unknown interstitial_site 'octahedral'"):
        run_get_node(builder)
    assert DiffusionWorkChain.spec().inputs["temperatures"].help
