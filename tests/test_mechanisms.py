"""Hop-mechanism analysis: planted events are recovered exactly, vibration and failed excursions are not events."""

from __future__ import annotations

import json
import math

import ase.io
import numpy as np
import pytest
from click.testing import CliRunner

from aiida_lifdiff.analysis.diffusion import estimate_diffusivity
from aiida_lifdiff.analysis.mechanisms import (
    EVENT_TYPES,
    analyse_mechanisms,
    assign_sites,
    event_rates,
    fit_rate_arrhenius,
    geometric_factor,
    haven_ratio,
    hop_diffusivities,
    lif_sites,
)
from aiida_lifdiff.analysis.synthetic_hops import planted_hops_trajectory
from aiida_lifdiff.analysis.trajectory_files import analyse_trajectory_files
from aiida_lifdiff.structures import build_lif_supercell

ALL_KINDS = ["direct", "knockoff_collinear", "knockoff_noncollinear", "ring", "failed", "pause"]


def _analyse(traj, **kwargs):
    return analyse_mechanisms(traj.positions, traj.cell, traj.times_ps, traj.li_indices, traj.f_indices, **kwargs)


def _mixed_schedule(seed: int, n: int = 48) -> list[str]:
    return list(np.random.default_rng(seed).choice(ALL_KINDS, n))


# ------------------------------------------------------------------------------------------------- sites


@pytest.mark.parametrize("repeat", [2, 3])
def test_sites_are_inferred_from_the_cell_and_the_f_atoms(repeat):
    atoms = build_lif_supercell(repeat)
    shift = np.array([0.37, -1.2, 2.9])  # an arbitrary origin: the F sublattice fixes it
    pos = atoms.get_positions() + shift
    symbols = atoms.get_chemical_symbols()
    f = [i for i, s in enumerate(symbols) if s == "F"]
    sites = lif_sites(np.array(atoms.get_cell()), pos[f])
    assert sites.repeat == (repeat,) * 3
    assert np.allclose(sites.lattice_constant, 4.03)
    kinds = np.array(sites.kinds)
    assert (kinds == "lattice").sum() == 4 * repeat**3
    assert (kinds == "interstitial").sum() == 8 * repeat**3
    assert math.isclose(sites.min_distance(), math.sqrt(3) / 4 * 4.03, rel_tol=1e-9)
    box = sites.box
    for index, expected in [(0, "lattice"), (len(atoms) - 1, "interstitial")]:
        d = sites.positions - pos[index]
        d -= box * np.round(d / box)
        nearest = int(np.argmin(np.linalg.norm(d, axis=1)))
        assert np.linalg.norm(d[nearest]) < 1e-9
        assert sites.kinds[nearest] == expected


def test_arrival_needs_dwell_frames_within_r_in():
    """One atom: a visit of dwell-1 frames to another site is no arrival, a visit of dwell frames is one."""
    traj = planted_hops_trajectory(["pause"], noise_A=0.0)
    sites = lif_sites(traj.cell, traj.positions[0, traj.f_indices])
    atom = len(traj.symbols) - 1
    start = traj.positions[0, atom]
    target = start + np.array([4.03 / 2, 0.0, 0.0])  # the neighbouring tetrahedral site
    path = [start] * 10 + [target] * 2 + [start] * 10 + [target] * 3 + [start] * 10
    positions = np.repeat(traj.positions[:1], len(path), axis=0)
    positions[:, atom] = path
    assignment, transitions = assign_sites(positions, [atom], sites, dwell=3)
    assert [(t.leave_frame, t.arrive_frame) for t in transitions] == [(21, 22), (24, 25)]
    assert np.allclose(transitions[0].displacement, [2.015, 0.0, 0.0])
    assert len(set(assignment[:22, 0])) == 1 and assignment[22, 0] != assignment[0, 0]


# ------------------------------------------------------------------------------------------------ events


@pytest.mark.parametrize(("seed", "noise"), [(0, 0.12), (1, 0.15), (2, 0.10)])
def test_planted_events_are_recovered_exactly(seed, noise):
    traj = planted_hops_trajectory(_mixed_schedule(seed), seed=seed, noise_A=noise)
    result = _analyse(traj)
    assert result.counts == traj.counts
    planted = [p for p in traj.planted if p["kind"] in EVENT_TYPES]
    assert len(result.events) == len(planted)
    for event, truth in zip(result.events, planted, strict=True):
        assert event.kind == truth["kind"]
        assert set(event.atoms) == set(truth["atoms"])
        assert truth["frame"] - 1 <= event.start_frame <= event.end_frame <= truth["frame"] + 6
        if event.kind == "knockoff_collinear":
            assert event.angle_deg < 5
        if event.kind == "knockoff_noncollinear":
            assert min(abs(event.angle_deg - 70.53), abs(event.angle_deg - 109.47)) < 5
            assert event.angle_deg == pytest.approx(truth["angle_deg"], abs=5)


def test_vibration_only_gives_no_events():
    result = _analyse(planted_hops_trajectory(["pause"] * 40, noise_A=0.15, seed=5))
    assert sum(result.counts.values()) == 0
    assert len(result.transitions) == 0


def test_failed_excursions_are_not_events():
    traj = planted_hops_trajectory(["failed"] * 60, noise_A=0.12, failed_fraction=(0.4, 0.6), seed=6)
    assert len([p for p in traj.planted if p["kind"] == "failed"]) == 60
    result = _analyse(traj)
    assert sum(result.counts.values()) == 0
    assert len(result.transitions) == 0


def test_drift_removal_creates_no_events():
    drift = (0.06, -0.04, 0.09)  # A per frame: several cell lengths over the run
    still = planted_hops_trajectory(["pause"] * 30, seed=7, drift_A_per_frame=drift)
    assert np.ptp(still.positions[:, 0, 0]) > 2 * still.cell[0, 0]
    assert sum(_analyse(still).counts.values()) == 0

    schedule = _mixed_schedule(8, 30)
    plain = _analyse(planted_hops_trajectory(schedule, seed=8))
    drifting = _analyse(planted_hops_trajectory(schedule, seed=8, drift_A_per_frame=drift))
    assert drifting.counts == plain.counts
    assert [e.to_dict() for e in drifting.events] == [e.to_dict() for e in plain.events]


def test_ring_and_knockoff_geometry_factors():
    traj = planted_hops_trajectory(["knockoff_collinear"] * 10, seed=9)
    assert geometric_factor(_analyse(traj).events) == pytest.approx(0.5, rel=1e-6)
    traj = planted_hops_trajectory(["direct"] * 10, seed=9)
    result = _analyse(traj)
    assert geometric_factor(result.events) == pytest.approx(1.0, rel=1e-6)
    hops = hop_diffusivities(result.events, result.duration_ps, 33)
    # 10 hops of a/2: sum |s|^2 = 10 a^2 / 4, the same for the defect and (times N) for the tracer.
    assert hops["D_defect_hops_A2_ps"] == pytest.approx(10 * 4.03**2 / 4 / (6 * result.duration_ps), rel=1e-6)
    assert 33 * hops["D_tracer_hops_A2_ps"] == pytest.approx(hops["D_defect_hops_A2_ps"], rel=1e-12)


# ------------------------------------------------------------------------------------ rates and Haven


def test_event_rates_poisson_errors_and_upper_limit():
    rates = event_rates({"direct": 16, "knockoff_collinear": 4}, duration_ps=8.0)
    assert rates["direct"]["rate_per_ps"] == 2.0
    assert rates["direct"]["rate_err_per_ps"] == 0.5
    assert rates["direct"]["fraction"] == pytest.approx(0.8)
    assert rates["direct"]["fraction_err"] == pytest.approx(math.sqrt(0.8 * 0.2 / 20))
    assert rates["ring"]["count"] == 0 and rates["ring"]["rate_err_per_ps"] == 0.0
    assert rates["ring"]["upper_limit_per_ps"] == pytest.approx(-math.log(0.05) / 8.0, rel=1e-9)


def test_rate_arrhenius_recovers_the_barrier():
    temps = [700.0, 800.0, 900.0, 1000.0]
    k_b = 8.617333262e-5
    duration = 1.0e4
    counts = [{"direct": int(round(5.0 * math.exp(-0.3 / (k_b * t)) * duration))} for t in temps]
    fits = fit_rate_arrhenius(temps, counts, [duration] * 4)
    fit = fits["direct"]["fit"]
    assert abs(fit["Ea_eV"] - 0.3) < 3 * fit["Ea_err_eV"] + 1e-3
    assert fits["ring"]["fit"] is None and "0 temperature" in fits["ring"]["reason"]


def test_haven_ratio_formula_and_independent_error():
    h, err = haven_ratio(0.1, 0.01, 3.3, 0.33, 33)
    assert h == pytest.approx(1.0)
    assert err == pytest.approx(math.sqrt(2) * 0.1)
    # Perfectly correlated blocks: the ratio has no scatter.
    blocks = np.array([1.0, 2.0, 3.0])
    sem = blocks.std(ddof=1) / np.sqrt(blocks.size)
    h, err = haven_ratio(0.2, 0.1 * sem, 6.6, 3.3 * sem, 33, 0.1 * blocks, 3.3 * blocks)
    assert h == pytest.approx(1.0) and err == pytest.approx(0.0, abs=1e-6)
    assert all(math.isnan(v) for v in haven_ratio(0.1, 0.01, 0.0, 0.1, 33))


def _haven(kind: str) -> tuple[float, float]:
    replicas = [
        planted_hops_trajectory([kind] * 300, seed=40 + s, spacing=6, move_frames=3, noise_A=0.08) for s in range(4)
    ]
    li, f = replicas[0].li_indices, replicas[0].f_indices
    positions = [r.positions for r in replicas]
    tracer = estimate_diffusivity(positions, replicas[0].times_ps, li, f, "tracer", 4)
    collective = estimate_diffusivity(positions, replicas[0].times_ps, li, f, "collective", 4)
    return haven_ratio(
        tracer.D_A2_ps,
        tracer.D_err_A2_ps,
        collective.D_A2_ps,
        collective.D_err_A2_ps,
        len(li),
        tracer.block_D_A2_ps,
        collective.block_D_A2_ps,
    )


def test_haven_ratio_direct_hops_vs_collinear_knockoffs():
    """Direct hops of one carrier: N D_tracer = D_collective exactly (H = 1); collinear interstitialcy: 1/3."""
    h_direct, err_direct = _haven("direct")
    h_knock, err_knock = _haven("knockoff_collinear")
    assert abs(h_direct - 1.0) < max(3 * err_direct, 0.02)
    assert abs(h_knock - 1.0 / 3.0) < 3 * err_knock
    assert h_knock + 3 * err_knock < h_direct - 3 * err_direct


# ------------------------------------------------------------------------------------------- files, CLI


def test_cli_analyse_on_extxyz_matches_the_function(tmp_path, monkeypatch):
    from aiida_lifdiff.cli import main as cli_main

    def no_profile(*args, **kwargs):
        raise AssertionError("analyse must not load an AiiDA profile")

    monkeypatch.setattr(cli_main, "_load_profile", no_profile)
    traj = planted_hops_trajectory(_mixed_schedule(11, 30), seed=11, drift_A_per_frame=(0.03, 0.0, -0.02))
    path = tmp_path / "replica.extxyz"
    ase.io.write(path, traj.to_atoms_list(wrap=True), format="extxyz")  # wrapped: the reader must unwrap

    direct = analyse_trajectory_files([path])
    assert direct["events"] == traj.counts

    result = CliRunner().invoke(cli_main.cli, ["analyse", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for key in (
        "D_tracer_A2_ps",
        "D_tracer_err_A2_ps",
        "D_collective_A2_ps",
        "D_collective_err_A2_ps",
        "haven_ratio",
        "haven_ratio_err",
        "events",
        "rates",
        "D_defect_hops_A2_ps",
        "tracer_correlation_factor",
    ):
        assert key in data
    assert data["events"] == traj.counts
    assert set(data["rates"]) == set(EVENT_TYPES)
    assert data["D_tracer_A2_ps"] == pytest.approx(direct["D_tracer_A2_ps"])
    # The GLS estimate of the same trajectory agrees with the block estimate within their combined errors.
    gls = data["gls"]["tracer"]
    combined = math.hypot(gls["D_err_A2_ps"], data["D_tracer_err_A2_ps"])
    assert 0 < gls["D_err_A2_ps"] and abs(gls["D_A2_ps"] - data["D_tracer_A2_ps"]) < 3 * combined

    table = CliRunner().invoke(cli_main.cli, ["analyse", str(path), str(path)])
    assert table.exit_code == 0, table.output
    assert "Haven ratio" in table.output and "GLS tracer" in table.output and "knockoff_collinear" in table.output


def test_lammps_dump_with_types_and_timestep(tmp_path):
    traj = planted_hops_trajectory(["knockoff_collinear", "direct", "pause"] * 4, seed=12)
    types = [1 if s == "Li" else 2 for s in traj.symbols]
    lines = []
    length = traj.cell[0, 0]
    for step, pos in enumerate(traj.positions):
        lines += ["ITEM: TIMESTEP", str(10 * step), "ITEM: NUMBER OF ATOMS", str(len(types))]
        lines += ["ITEM: BOX BOUNDS pp pp pp"] + [f"0.0 {length}"] * 3 + ["ITEM: ATOMS id type xu yu zu"]
        lines += [
            f"{i + 1} {t} {x:.6f} {y:.6f} {z:.6f}" for i, (t, (x, y, z)) in enumerate(zip(types, pos, strict=True))
        ]
    path = tmp_path / "trajectory.dump"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="timestep_ps"):
        analyse_trajectory_files([path])
    result = analyse_trajectory_files([path], timestep_ps=0.01)
    assert result["events"] == traj.counts
    assert result["frame_spacing_ps"] == pytest.approx(0.01)


def test_diffusion_calcfunctions_carry_the_mechanisms(aiida_profile):
    """compute_diffusivity counts the planted events of each temperature, fit_arrhenius sums them over T."""
    from aiida import orm

    from aiida_lifdiff.workflows.functions.arrhenius import fit_arrhenius
    from aiida_lifdiff.workflows.functions.diffusivity import compute_diffusivity

    schedules = {
        600.0: ["knockoff_collinear", "failed", "direct", "pause"],
        700.0: ["knockoff_collinear", "knockoff_collinear", "failed", "knockoff_noncollinear"],
        800.0: ["knockoff_collinear", "direct", "knockoff_collinear", "ring", "knockoff_collinear"],
    }
    diffusivities, planted = {}, {}
    for index, (temperature, schedule) in enumerate(schedules.items()):
        traj = planted_hops_trajectory(schedule, seed=index, noise_A=0.1)
        node = orm.TrajectoryData()
        frames = len(traj.times_ps)
        node.set_trajectory(
            traj.symbols, traj.positions, cells=np.repeat(traj.cell[None], frames, 0), times=traj.times_ps
        )
        node.base.attributes.set_many(
            {
                "temperature_K": temperature,
                "seed": index,
                "timestep_fs": 2.0,
                "equilibration_ps": 0.0,
                "engine": "synthetic",
            }
        )
        parameters = orm.Dict({"n_blocks": 2})
        result = compute_diffusivity(parameters, replica_0=node)["diffusivity"]
        mechanisms = result["mechanisms"]
        assert mechanisms["events"] == traj.counts
        assert "haven_ratio" in mechanisms and mechanisms["r_in_A"] > 0
        diffusivities[f"T_{index}"] = result
        planted[temperature] = traj.counts
    # The fit may or may not succeed on these toy D(T); the event summary does not depend on it.
    summary = fit_arrhenius(orm.Dict({"primary_mode": "collective"}), **diffusivities)["arrhenius"]["mechanisms"]
    expected = {kind: sum(c[kind] for c in planted.values()) for kind in summary["counts"]}
    assert summary["counts"] == expected and summary["dominant"] == "knockoff_collinear"
    assert summary["fractions"]["knockoff_collinear"] == 6 / sum(expected.values())
    assert [p["temperature_K"] for p in summary["per_temperature"]] == list(schedules)
    assert summary["rate_fits"]["knockoff_collinear"]["fit"] is not None
