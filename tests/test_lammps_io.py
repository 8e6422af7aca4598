"""LAMMPS input writing and output parsing, checked against the real ``lmp`` binary.

The runs are 65-atom cells (2x2x2 + interstitial) and a few thousand steps at most
(~4000 steps/s on one core), so the whole module takes seconds.
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aiida_lifdiff.engines.lammps_input import (
    FINAL_RESTART_FILE,
    INPUT_FILE,
    LOG_FILE,
    RESTART_FILES,
    THERMO_COLUMNS,
    THERMO_FILE,
    TRAJECTORY_FILE,
    lammps_command,
    md_input_script,
    write_data_file,
)
from aiida_lifdiff.engines.lammps_output import (
    join_segments,
    newest_restart,
    read_dump,
    read_restart_timestep,
    read_thermo,
    scan_log,
)
from aiida_lifdiff.potentials.classical import TOSI_FUMI_LIF, lammps_potential_lines, tosi_fumi_lif
from aiida_lifdiff.structures import build_lif_supercell

SPECIES = ["Li", "F"]


# --------------------------------------------------------------------------- helpers


def _lammps_or_fail() -> tuple[list[str], dict[str, str]]:
    try:
        return lammps_command()
    except FileNotFoundError as error:
        # `make test` installs LAMMPS: a missing binary is a broken install, never a reason to skip.
        pytest.fail(str(error))


def run_lammps(workdir: Path, script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Write ``script`` as the input in ``workdir`` and run LAMMPS there; fail the test on error."""
    command, env = _lammps_or_fail()
    (workdir / INPUT_FILE).write_text(script)
    process = subprocess.run(
        [*command, "-in", INPUT_FILE],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    return process


def md_kwargs(**overrides) -> dict:
    kwargs = dict(
        potential_lines=lammps_potential_lines(TOSI_FUMI_LIF, SPECIES),
        species_order=SPECIES,
        temperature_K=1000.0,
        timestep_fs=1.0,
        n_steps=600,
        equilibration_steps=200,
        seed=12345,
        dump_stride=10,
        thermo_stride=10,
    )
    kwargs.update(overrides)
    return kwargs


def prepare(workdir: Path, repeat: int = 2, site: str = "tetrahedral") -> None:
    atoms = build_lif_supercell(repeat, 4.03, site)
    (workdir / "structure.data").write_text(write_data_file(atoms, SPECIES, TOSI_FUMI_LIF["charges"]))


def simple_dump_parse(path: Path) -> dict[int, dict[str, np.ndarray]]:
    """Deliberately naive line-by-line reader, independent of ``read_dump``."""
    frames: dict[int, dict[str, np.ndarray]] = {}
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        assert lines[i] == "ITEM: TIMESTEP"
        step = int(lines[i + 1])
        n = int(lines[i + 3])
        lo_hi = [tuple(float(v) for v in lines[i + 5 + k].split()[:2]) for k in range(3)]
        names = lines[i + 8].split()[2:]
        rows = [lines[i + 9 + k].split() for k in range(n)]
        table = {name: np.array([float(row[j]) for row in rows]) for j, name in enumerate(names)}
        table["box"] = np.array(lo_hi)
        frames[step] = table
        i += 9 + n
    return frames


# --------------------------------------------------------------------------- potential lines


def test_potential_lines_follow_type_order():
    lines = lammps_potential_lines(TOSI_FUMI_LIF, ["F", "Li"], cutoff=7.5, kspace="pppm", kspace_accuracy=1e-5)
    assert lines[0] == "pair_style born/coul/long 7.5"
    assert lines[-1] == "kspace_style pppm 1e-05"
    coeffs = {tuple(line.split()[1:3]): [float(v) for v in line.split()[3:8]] for line in lines[1:-1]}
    assert set(coeffs) == {("1", "1"), ("1", "2"), ("2", "2")}
    assert coeffs[("1", "1")] == [0.1582, 0.299, 2.358, 9.05, -10.61]  # F-F
    assert coeffs[("2", "2")] == [0.4220, 0.299, 1.632, 0.0456, -0.0187]  # Li-Li
    assert coeffs[("1", "2")][3:] == [0.4993, -0.3745]


def test_tosi_fumi_table_is_json_and_has_negative_d():
    import json

    table = json.loads(json.dumps(TOSI_FUMI_LIF))
    assert table == TOSI_FUMI_LIF
    assert all(pair["D"] < 0 for pair in table["pairs"].values())
    assert table["charges"] == {"Li": 1.0, "F": -1.0}
    assert "Fumi" in table["reference"] and "25, 31 (1964)" in table["reference"]
    assert table["masses"]["F"] == pytest.approx(18.998, abs=1e-3)


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        ("drop Li-F", {}, "no parameters for the pair Li-F"),
        (None, {"species_order": ["Li", "Na"]}, "no parameters for the pair Li-Na"),
        (None, {"species_order": []}, "species_order is empty"),
        (None, {"species_order": ["Li", "Li"]}, "duplicates"),
        (None, {"cutoff": -1.0}, "cutoff must be a positive"),
        (None, {"kspace": "pme"}, "kspace must be one of"),
        (None, {"kspace_accuracy": 2.0}, "kspace_accuracy"),
        ("drop rho", {}, r"lacks \['rho'\]"),
    ],
)
def test_potential_lines_refuse_bad_input(change, kwargs, message):
    parameters = tosi_fumi_lif()
    if change == "drop Li-F":
        del parameters["pairs"]["Li-F"]
    if change == "drop rho":
        del parameters["pairs"]["F-F"]["rho"]
    arguments = {"species_order": SPECIES, **kwargs}
    with pytest.raises(ValueError, match=message):
        lammps_potential_lines(parameters, **arguments)


# --------------------------------------------------------------------------- input script


def test_md_script_contents():
    script = md_input_script(**md_kwargs(restart_stride=100, timeout_s=3600))
    assert "fix nvt all nvt temp 1000.0 1000.0 0.1 tchain 3" in script
    assert "velocity all create 1000.0 12345 mom yes rot yes dist gaussian" in script
    assert "timer timeout 3600 every 100" in script
    assert f"restart 100 {RESTART_FILES[0]} {RESTART_FILES[1]}" in script
    dump_line = f"dump traj all custom 10 {TRAJECTORY_FILE}"
    assert script.index("run 200") < script.index("reset_timestep 0") < script.index(dump_line)
    assert "id type xu yu zu" in script and "sort id" in script
    assert script.rstrip().endswith(f"write_restart {FINAL_RESTART_FILE}")
    continued = md_input_script(**md_kwargs(restart_from="old.restart"))
    assert "read_restart old.restart" in continued
    assert "read_data" not in continued and "velocity" not in continued and "reset_timestep" not in continued
    assert "delay $(step+1)" in continued and "run 600 upto" in continued


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"temperature_K": -5}, "temperature_K must be a positive number, got -5"),
        ({"timestep_fs": 0}, "timestep_fs"),
        ({"n_steps": 0}, "n_steps must be an integer >= 1, got 0"),
        ({"n_steps": 10.5}, "n_steps"),
        ({"equilibration_steps": -1}, "equilibration_steps must be an integer >= 0"),
        ({"dump_stride": 0}, "dump_stride"),
        ({"seed": 0}, "seed must be an integer in 1..900000000"),
        ({"seed": 10**10}, "seed"),
        ({"restart_stride": 0}, "restart_stride"),
        ({"timeout_s": -1.0}, "timeout_s"),
        ({"restart_from": ""}, "restart_from"),
        ({"potential_lines": []}, "potential_lines is empty"),
        ({"species_order": ["Li", "Li"]}, "species_order"),
    ],
)
def test_md_script_refuses_bad_input(overrides, message):
    with pytest.raises(ValueError, match=message):
        md_input_script(**md_kwargs(**overrides))


def test_write_data_file_round_trip(tmp_path):
    from ase.io.lammpsdata import read_lammps_data

    atoms = build_lif_supercell(2)
    text = write_data_file(atoms, SPECIES, {"Li": 1.0, "F": -1.0})
    assert "Atoms # charge" in text and "Masses" in text
    (tmp_path / "s.data").write_text(text)
    back = read_lammps_data(tmp_path / "s.data", atom_style="charge", Z_of_type={1: 3, 2: 9}, units="metal")
    assert back.get_chemical_symbols() == atoms.get_chemical_symbols()
    np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-10)
    np.testing.assert_allclose(back.get_initial_charges(), [1.0 if s == "Li" else -1.0 for s in atoms.symbols])
    with pytest.raises(ValueError, match="charges lack"):
        write_data_file(atoms, SPECIES, {"Li": 1.0})
    with pytest.raises(ValueError, match=r"not in species_order \['Li'\]"):
        write_data_file(atoms, ["Li"], {"Li": 1.0})


# --------------------------------------------------------------------------- real MD run


@pytest.fixture(scope="module")
def md_run(tmp_path_factory) -> Path:
    """600 production steps with a second, independent dump of wrapped x + image flags."""
    workdir = tmp_path_factory.mktemp("md")
    prepare(workdir)
    script = md_input_script(**md_kwargs())
    check = "dump check all custom 10 check.dump id type x y z ix iy iz\ndump_modify check sort id format float %.10f\n"
    script = script.replace("run 600 upto", check + "run 600 upto")
    run_lammps(workdir, script)
    return workdir


@pytest.mark.lammps
def test_dump_equals_wrapped_positions_plus_images(md_run):
    steps, positions, types, cells = read_dump(md_run / TRAJECTORY_FILE)
    np.testing.assert_array_equal(steps, np.arange(0, 601, 10))
    assert positions.shape == (61, 65, 3)
    np.testing.assert_array_equal(types, [1, 2] * 32 + [1])
    np.testing.assert_allclose(cells, np.broadcast_to(np.eye(3) * 8.06, (61, 3, 3)), atol=1e-12)

    reference = simple_dump_parse(md_run / "check.dump")
    assert sorted(reference) == steps.tolist()
    crossed = False
    for k, step in enumerate(steps):
        frame = reference[step]
        np.testing.assert_array_equal(frame["id"], np.arange(1, 66))
        length = frame["box"][:, 1] - frame["box"][:, 0]
        images = np.column_stack([frame["ix"], frame["iy"], frame["iz"]])
        wrapped = np.column_stack([frame["x"], frame["y"], frame["z"]])
        rebuilt = wrapped + images * length
        np.testing.assert_allclose(positions[k], rebuilt, atol=1e-6, rtol=0)
        crossed = crossed or bool(np.any(images != 0))
    # Atom 1 starts at the box corner: something crosses a boundary in 600 steps.
    assert crossed


@pytest.mark.lammps
def test_unwrapped_positions_are_continuous(md_run):
    _, positions, _, _ = read_dump(md_run / TRAJECTORY_FILE)
    reference = simple_dump_parse(md_run / "check.dump")
    wrapped = np.array([np.column_stack([f["x"], f["y"], f["z"]]) for _, f in sorted(reference.items())])
    step_unwrapped = np.abs(np.diff(positions, axis=0)).max()
    step_wrapped = np.abs(np.diff(wrapped, axis=0)).max()
    assert step_unwrapped < 1.0  # 10 fs at 1000 K: tenths of an Angstrom
    assert step_wrapped > 4.0  # the wrapped copy jumps by about a box length


@pytest.mark.lammps
def test_thermo_file(md_run):
    thermo = read_thermo(md_run / THERMO_FILE)
    assert tuple(thermo) == THERMO_COLUMNS
    np.testing.assert_array_equal(thermo["step"], np.arange(0, 601, 10))
    np.testing.assert_allclose(thermo["time_ps"], thermo["step"] * 0.001, atol=1e-9)
    assert thermo["temp_K"].min() > 300 and thermo["temp_K"].max() < 2000
    # 65 atoms: E_kin = (3N - 3) / 2 k T, with the momentum removed by `velocity mom yes`.
    kinetic = thermo["etotal_eV"] - thermo["pe_eV"]
    np.testing.assert_allclose(kinetic, 1.5 * 64 * 8.617333e-5 * thermo["temp_K"], rtol=1e-4)
    assert np.ptp(thermo["econserve_eV"]) < 0.02
    assert (thermo["pe_eV"] < -330).all()


@pytest.mark.lammps
def test_scan_log_of_a_finished_run(md_run):
    report = scan_log((md_run / LOG_FILE).read_text())
    assert report["completed"] and report["finished"]
    assert report["last_step"] == 600 and report["target_step"] == 600
    assert report["error"] is None and not report["lost_atoms"] and not report["timeout"]
    assert "2025" in report["version"]
    assert [run["n_steps"] for run in report["runs"]] == [200, 600]  # equilibration, production
    assert report["steps_per_s"] > 10
    assert report["walltime_s"] >= 0


# --------------------------------------------------------------------------- restart


@pytest.mark.lammps
def test_timeout_and_restart_continuation(tmp_path):
    """A run stopped by `timer timeout`, continued twice: from its final restart and
    from the older periodic restart (standing in for a hard kill after that restart)."""
    n_steps, stride = 20000, 50
    kwargs = md_kwargs(
        n_steps=n_steps, equilibration_steps=0, dump_stride=stride, thermo_stride=stride, restart_stride=200
    )
    first = tmp_path / "first"
    first.mkdir()
    prepare(first)
    run_lammps(first, md_input_script(**kwargs, timeout_s=1))
    report = scan_log((first / LOG_FILE).read_text())
    assert report["timeout"] and not report["completed"], report
    stop = report["last_step"]
    assert 400 <= stop < n_steps, f"expected the 1 s timeout to stop the run early, it stopped at {stop}"
    assert read_restart_timestep(first / FINAL_RESTART_FILE) == stop
    steps_a, pos_a, _, _ = read_dump(first / TRAJECTORY_FILE)
    thermo_a = read_thermo(first / THERMO_FILE)
    assert steps_a[0] == 0 and steps_a[-1] == stop - stop % stride

    periodic = sorted(read_restart_timestep(first / name) for name in RESTART_FILES)
    assert newest_restart([first / name for name in RESTART_FILES])[1] == periodic[-1]
    older = [name for name in RESTART_FILES if read_restart_timestep(first / name) == periodic[0]][0]
    assert periodic[0] < stop and periodic[0] % 200 == 0

    segments = {}
    for label, restart in (("final", FINAL_RESTART_FILE), ("older", older)):
        workdir = tmp_path / label
        workdir.mkdir()
        # Staged under another name: the continuation writes its own final.restart.
        shutil.copy(first / restart, workdir / "previous.restart")
        start = read_restart_timestep(workdir / "previous.restart")
        run_lammps(workdir, md_input_script(**kwargs, restart_from="previous.restart"))
        cont_report = scan_log((workdir / LOG_FILE).read_text())
        assert cont_report["completed"] and cont_report["last_step"] == n_steps, cont_report
        steps_b, pos_b, _, _ = read_dump(workdir / TRAJECTORY_FILE)
        assert steps_b[0] > start and steps_b[0] - start <= stride  # restart frame not repeated
        assert steps_b[-1] == n_steps
        thermo_b = read_thermo(workdir / THERMO_FILE)
        assert thermo_b["step"][0] > start

        steps, positions = join_segments([(steps_a, pos_a), (steps_b, pos_b)])
        np.testing.assert_array_equal(steps, np.arange(0, n_steps + 1, stride))  # no duplicate, none missing
        t_steps, _ = join_segments([(thermo_a["step"], thermo_a["temp_K"]), (thermo_b["step"], thermo_b["temp_K"])])
        np.testing.assert_array_equal(t_steps, np.arange(0, n_steps + 1, stride))
        # Unwrapped coordinates stay continuous across the joint (image flags are restored):
        # a lost image flag would show as a jump of a box length (8.06 A); a 50 fs step
        # moves atoms by up to ~2 A (an interstitialcy hop).
        assert np.abs(np.diff(positions, axis=0)).max() < 4.0
        segments[label] = (steps_b, pos_b)

    # The continuation from the older restart re-runs steps the first segment had already
    # written; restoring positions, velocities and thermostat makes them agree closely.
    steps_o, pos_o = segments["older"]
    overlap = [s for s in steps_o if s <= steps_a[-1]]
    assert overlap, "the older restart should precede the last frame of the first segment"
    first_overlap = overlap[0]
    np.testing.assert_allclose(
        pos_o[list(steps_o).index(first_overlap)], pos_a[list(steps_a).index(first_overlap)], atol=1e-5
    )


# --------------------------------------------------------------------------- parsers on synthetic input


def _synthetic_dump(steps, positions, order=None) -> str:
    out = []
    n = positions.shape[1]
    for step, frame in zip(steps, positions):
        out += ["ITEM: TIMESTEP", str(step), "ITEM: NUMBER OF ATOMS", str(n), "ITEM: BOX BOUNDS pp pp pp"]
        out += ["0.0 10.0"] * 3
        out.append("ITEM: ATOMS id type xu yu zu")
        for i in order if order is not None else range(n):
            out.append(f"{i + 1} {1 + i % 2} {frame[i, 0]:.6f} {frame[i, 1]:.6f} {frame[i, 2]:.6f}")
    return "\n".join(out) + "\n"


def test_read_dump_drops_truncated_frame_and_refuses_unsorted():
    rng = np.random.default_rng(1)
    positions = rng.normal(size=(4, 5, 3))
    text = _synthetic_dump([0, 10, 20, 30], positions)
    truncated = "\n".join(text.splitlines()[:-2])
    steps, read, types, cells = read_dump(truncated)
    np.testing.assert_array_equal(steps, [0, 10, 20])
    np.testing.assert_allclose(read, positions[:3], atol=5e-7)
    np.testing.assert_array_equal(types, [1, 2, 1, 2, 1])
    assert cells.shape == (3, 3, 3)
    with pytest.raises(ValueError, match="not sorted by id"):
        read_dump(_synthetic_dump([0], positions[:1], order=[1, 0, 2, 3, 4]))
    with pytest.raises(ValueError, match="lacks columns"):
        read_dump(text.replace("xu yu zu", "x y z"))
    with pytest.raises(ValueError, match="not a LAMMPS text dump"):
        read_dump("hello\nworld\n")
    with pytest.raises(ValueError, match="neither an existing file"):
        read_dump("no/such/trajectory.dump")


def test_join_segments_rules():
    a = (np.array([0, 10, 20, 30, 40]), np.arange(5.0))
    b = (np.array([30, 40, 50]), np.array([30.0, 40.0, 50.0]))
    steps, values = join_segments([a, b])
    np.testing.assert_array_equal(steps, [0, 10, 20, 30, 40, 50])
    np.testing.assert_array_equal(values, [0, 1, 2, 30, 40, 50])
    with pytest.raises(ValueError, match="out of order"):
        join_segments([b, a])
    with pytest.raises(ValueError, match="not strictly increasing"):
        join_segments([(np.array([0, 20, 10]), np.zeros(3))])


def test_scan_log_errors_and_killed_runs():
    lost = "\n".join(
        [
            "LAMMPS (22 Jul 2025 - Update 2)",
            "run 1000 upto",
            "   Step          Temp",
            "         0   1000",
            "       100   5000",
            "ERROR: Lost atoms: original 65 current 64 (src/thermo.cpp:494)",
            "Last command: run 1000 upto",
        ]
    )
    report = scan_log(lost)
    assert report["lost_atoms"] and report["error"].startswith("ERROR: Lost atoms")
    assert report["last_step"] == 100 and report["target_step"] == 1000
    assert not report["completed"] and not report["finished"]

    killed = "\n".join(
        ["LAMMPS (22 Jul 2025 - Update 2)", "run 50", "   Step   Temp", "   2000   1000", "   2010   999"]
    )
    report = scan_log(killed)
    assert report["last_step"] == 2010 and report["target_step"] == 2050 and not report["completed"]
    assert report["error"] is None and not report["lost_atoms"] and report["version"] == "22 Jul 2025 - Update 2"
