"""``lifdiff-barrier``: lattice constant and NEB barriers of interstitial Li (no AiiDA).

The Tosi-Fumi checks are physics measured with this program (repeat 2, 64 + 1 atoms, a0 fitted, default
NEB settings: 5 images, 0.01 eV/A): a0 = 4.0096 A (DESIGN: 4.01 A); barriers knockoff_collinear 0.105 eV
< knockoff_noncollinear (70.5 deg) 0.301 eV ~ direct 0.310 eV < knockoff_noncollinear (109.5 deg) 0.879 eV
(the middle two are 9 meV apart: their order is not asserted); the tetrahedral site is a minimum and the
face site a saddle that rolls back onto it; the direct barrier equals E(face) - E(tetrahedral) (0.310 eV).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest

from aiida_lifdiff import migration
from aiida_lifdiff.potentials.classical import tosi_fumi_lif
from aiida_lifdiff.runner import barrier

MODELS = Path(__file__).parent / "data" / "models"
TOSI_FUMI_A0 = 4.01  # DESIGN.md: LAMMPS, Ewald 1e-7, 8 A cutoff, 216 atoms


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("barrier")
    (folder / "parameters.json").write_text(json.dumps(tosi_fumi_lif()))
    return folder


def _classical(**overrides) -> dict:
    data = {"model": {"kind": "classical", "parameters": "parameters.json", "cutoff": 8.0, "kspace_accuracy": 1e-7}}
    data.update(overrides)
    return data


def _run(workdir: Path, out: Path, data: dict | str, name: str = "input.json") -> int:
    path = workdir / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return barrier.main([str(path), "--output-dir", str(out)])


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


# -- geometry ---------------------------------------------------------------------------------


def test_path_geometry_and_atom_identities():
    start = migration.start_structure(4.0, 2)
    assert migration.expand_paths(["knockoff_noncollinear", "direct"]) == [
        "knockoff_noncollinear_70",
        "knockoff_noncollinear_109",
        "direct",
    ]
    angles = {name: migration.PATHS[name].angle_deg for name in migration.PATHS}
    assert angles["direct"] is None
    assert angles["knockoff_collinear"] == pytest.approx(0.0, abs=1e-6)
    assert angles["knockoff_noncollinear_70"] == pytest.approx(70.53, abs=0.01)
    assert angles["knockoff_noncollinear_109"] == pytest.approx(109.47, abs=0.01)
    for name in migration.PATHS:
        initial, final, movers = migration.path_end_structures(start, name)
        assert final.get_chemical_symbols() == initial.get_chemical_symbols()
        moved = np.flatnonzero(np.linalg.norm(final.positions - initial.positions, axis=1) > 1e-9)
        assert sorted(moved) == sorted(movers.values())
        assert movers["interstitial"] == len(start) - 1
        expected = final.info["expected_positions"]
        assert migration.check_configuration(final, expected, name).ok
        # The unrelaxed initial structure is not the requested final configuration, and the check says so.
        wrong = migration.check_configuration(initial, expected, name)
        assert not wrong.ok and "tetrahedral site (0.25, 0.25, 0.25) a" in wrong.detail
    _, final, movers = migration.path_end_structures(start, "knockoff_collinear")
    assert movers["lattice"] == migration.lattice_index(start, (0, 0, 0))
    assert np.allclose(final.positions[movers["lattice"]], [-1.0, -1.0, -1.0])  # unwrapped: next to (0,0,0)
    assert np.allclose(final.positions[movers["interstitial"]], [0.0, 0.0, 0.0])


def test_lammpslib_matches_the_label_procedure(tmp_path):
    from aiida_lifdiff.engines.lammps_labels import lammps_single_points
    from aiida_lifdiff.runner.calculators import CountingCalculator, classical_calculator

    table = tosi_fumi_lif()
    model = {"table": table, "species_order": ["Li", "F"], "cutoff": 8.0, "kspace_accuracy": 1e-7}
    calculator = CountingCalculator(classical_calculator(model))
    frames = []
    for repeat, seed in ((2, 1), (2, 2), (1, 3)):
        atoms = migration.perturbed(migration.start_structure(4.03, repeat), 0.08, seed)
        frames.append(atoms)
    reference, _ = lammps_single_points(tmp_path, frames, table, ["Li", "F"], cutoff=8.0, kspace_accuracy=1e-7)
    for atoms, ref in zip(frames[:2], reference[:2]):
        atoms.calc = calculator
        assert atoms.get_potential_energy() == pytest.approx(ref["energy"], abs=1e-6)
        assert np.abs(atoms.get_forces() - ref["forces"]).max() < 1e-6
    # Another size needs its own calculator (one calculator per number of atoms).
    frames[2].calc = CountingCalculator(classical_calculator(model))
    assert frames[2].get_potential_energy() == pytest.approx(reference[2]["energy"], abs=1e-6)
    assert np.abs(frames[2].get_forces() - reference[2]["forces"]).max() < 1e-6
    assert calculator.n_calls == 2


# -- Tosi-Fumi physics --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tosi_fumi_run(workdir):
    out = workdir / "tosi-fumi"
    code = _run(workdir, out, _classical(repeat=2), name="tosi-fumi.json")
    return code, out


def test_tosi_fumi_lattice_and_barriers(tosi_fumi_run):
    code, out = tosi_fumi_run
    summary = _summary(out)
    assert code == 0, summary["message"]
    assert summary["exit_code"] == 0
    assert summary["a0_A"] == pytest.approx(TOSI_FUMI_A0, abs=0.01)
    assert 50 < summary["B0_GPa"] < 100
    assert summary["eos"]["n_atoms"] == 8 and len(summary["eos"]["energies_eV"]) == 7
    assert summary["n_atoms"] == 65 and summary["start"]["endpoint"]["ok"]
    expected = {"knockoff_collinear", "knockoff_noncollinear_70", "knockoff_noncollinear_109", "direct"}
    assert set(summary["paths"]) == expected | {"knockoff_noncollinear"}
    for name in expected:
        entry = summary["paths"][name]
        assert entry["converged"], (name, entry["max_force_eV_A"])
        assert entry["max_force_eV_A"] < 0.01
        assert entry["endpoint"]["ok"], entry["endpoint"]["detail"]
        energies = entry["energies_eV"]
        assert len(energies) == len(entry["reaction_coordinate_A"]) == 7
        assert energies[0] == 0.0
        # Symmetric paths: both end points are the same configuration (relabelled atoms).
        assert abs(energies[-1]) < 0.003
        assert entry["barrier_eV"] == pytest.approx(max(energies))
        assert entry["saddle_image"] == 3  # the middle image of a symmetric band
        assert np.all(np.diff(entry["reaction_coordinate_A"]) > 0)
        band = ase.io.read(out / f"path-{name}.extxyz", index=":")
        assert len(band) == 7
        assert band[3].get_potential_energy() - band[0].get_potential_energy() == pytest.approx(entry["barrier_eV"])
    barriers = summary["barriers_eV"]
    noncollinear = summary["paths"]["knockoff_noncollinear"]
    assert noncollinear["variant"] == "knockoff_noncollinear_70"
    assert barriers["knockoff_noncollinear"] == min(
        barriers["knockoff_noncollinear_70"], barriers["knockoff_noncollinear_109"]
    )
    # The physics found: the collinear interstitialcy is the easiest; all a few tenths of an eV at most.
    three = {key: barriers[key] for key in ("knockoff_collinear", "knockoff_noncollinear", "direct")}
    assert min(three, key=three.get) == "knockoff_collinear"
    assert 0.05 < barriers["knockoff_collinear"] < 0.2
    assert max(barriers["direct"], barriers["knockoff_noncollinear"]) < barriers["knockoff_noncollinear_109"]
    assert summary["n_force_calls"] > 0 and summary["versions"]["lammps"]
    assert summary["model"]["sha256"] and sorted(summary["model"]["species"]) == ["F", "Li"]
    assert ase.io.read(out / "start.extxyz").get_potential_energy() == pytest.approx(summary["initial_energy_eV"])


def test_direct_barrier_is_the_face_site_energy(tosi_fumi_run, workdir):
    """Independent of the NEB: the face site is the symmetric saddle of the direct hop."""
    from aiida_lifdiff.runner.calculators import CountingCalculator, make_calculator

    _, out = tosi_fumi_run
    summary = _summary(out)
    config = barrier.load_input(workdir / "tosi-fumi.json")
    calculator = CountingCalculator(make_calculator(config.model))
    energies = {}
    for site in ("tetrahedral", "face"):
        atoms = migration.start_structure(summary["a0_A"], 2, site)  # unperturbed: symmetry keeps it there
        energies[site] = barrier.relax(atoms, calculator, 0.005, 500)["energy_eV"]
    assert summary["barriers_eV"]["direct"] == pytest.approx(energies["face"] - energies["tetrahedral"], abs=0.005)


def test_face_start_relaxes_away_exit_5(workdir, tmp_path):
    """The face site is a saddle: perturbed, it rolls onto the tetrahedral site, and the check says so."""
    data = _classical(repeat=2, paths=[], start_site="face", lattice={"relax": False, "a0_A": 4.01})
    (workdir / "face.json").write_text(json.dumps(data))
    process = subprocess.run(
        [
            str(Path(sys.executable).parent / "lifdiff-barrier"),
            str(workdir / "face.json"),
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 5, process.stderr
    summary = _summary(tmp_path)
    assert summary["exit_code"] == 5
    assert "face site not kept" in summary["message"]
    assert "tetrahedral site (0.25, 0.25, 0.25) a" in summary["message"]
    assert not summary["start"]["endpoint"]["ok"]
    assert (tmp_path / "start.extxyz").is_file()


def test_unconverged_neb_exit_4_with_results(workdir, tmp_path):
    data = _classical(repeat=1, paths=["direct"], lattice={"relax": False, "a0_A": 4.01}, neb={"max_steps": 1})
    assert _run(workdir, tmp_path, data) == 4
    summary = _summary(tmp_path)
    assert "NEB direct not converged" in summary["message"]
    entry = summary["paths"]["direct"]
    assert entry["converged"] is False and entry["n_steps"] == 1
    assert entry["max_force_eV_A"] > 0.01 and entry["barrier_eV"] is not None
    assert len(ase.io.read(tmp_path / "path-direct.extxyz", index=":")) == 7
    assert summary["a0_A"] == 4.01 and summary["eos"] is None


def test_lattice_only(workdir, tmp_path):
    assert _run(workdir, tmp_path, _classical(paths=[], lattice={"n_points": 5, "strain": 0.02})) == 0
    summary = _summary(tmp_path)
    assert summary["a0_A"] == pytest.approx(TOSI_FUMI_A0, abs=0.01)
    assert summary["paths"] == {} and summary["start"] is None
    assert summary["n_force_calls"] == 5
    assert not (tmp_path / "start.extxyz").exists()


def test_lattice_window_follows_a_minimum_outside_the_first_guess(workdir, tmp_path):
    """Started 5 % below a0 with a +-2 % window, the E(V) scan moves up until it brackets the minimum."""
    lattice = {"n_points": 5, "strain": 0.02, "a0_A": 3.82}
    assert _run(workdir, tmp_path, _classical(paths=[], lattice=lattice)) == 0
    summary = _summary(tmp_path)
    assert summary["a0_A"] == pytest.approx(TOSI_FUMI_A0, abs=0.01)
    windows = summary["eos"]["windows"]
    assert len(windows) >= 2 and windows[0]["lattice_constants_A"][-1] < TOSI_FUMI_A0
    assert summary["eos"]["lattice_constants_A"][0] < summary["a0_A"] < summary["eos"]["lattice_constants_A"][-1]


def test_engine_failure_exit_6(workdir, tmp_path):
    # ASE's EMT has no parameters for Li and F: it raises on the first evaluation.
    data = {"model": {"kind": "ase", "factory": "ase.calculators.emt:EMT"}, "paths": ["direct"]}
    assert _run(workdir, tmp_path, data) == 6
    summary = _summary(tmp_path)
    assert summary["message"].startswith("engine failure: EMT failed")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": "blue"}, "unknown input keys ['colour']"),
        ({"paths": ["hop"]}, "unknown paths ['hop']"),
        ({"paths": ["direct", "direct"]}, "lists a path twice"),
        ({"start_site": "none"}, "'start_site' must be one of"),
        ({"start_site": "face"}, "the migration paths start from the tetrahedral site"),
        ({"neb": {"n_images": 0}}, "'n_images' must be >= 1"),
        ({"neb": {"fmax": 0.1}}, "unknown keys in 'neb': ['fmax']"),
        ({"lattice": {"n_points": 3}}, "'n_points' must be >= 5"),
        ({"lattice": {"relax": "yes"}}, "'relax' must be true or false"),
        ({"repeat": 0}, "'repeat' must be >= 1"),
        ({"model": {"kind": "classical", "parameters": "missing.json"}}, "cannot read the classical parameters"),
        ({"model": {"kind": "mace", "path": "no-such.model"}}, "not a file and not a foundation model name"),
        ({"model": {"kind": "classical", "parameters": "parameters.json", "species": ["Li"]}}, "not ['F']"),
        ({"dtype": "float16"}, "'dtype' must be"),
    ],
)
def test_bad_input_exit_2_nothing_evaluated(workdir, tmp_path, change, message, capsys):
    assert _run(workdir, tmp_path, _classical(**change)) == 2
    summary = _summary(tmp_path)
    assert summary["exit_code"] == 2
    assert message in summary["message"]
    assert message in capsys.readouterr().err
    assert "n_force_calls" not in summary and not (tmp_path / "start.extxyz").exists()


def test_bad_json_exit_2(workdir, tmp_path):
    assert _run(workdir, tmp_path, "{not json") == 2
    assert "is not valid JSON" in _summary(tmp_path)["message"]


def test_cuda_unavailable_exit_3(workdir, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    data = {"model": {"kind": "mace", "path": str(MODELS / "tiny-mace.model")}, "device": "cuda"}
    assert _run(workdir, tmp_path, data) == 3
    assert "CUDA requested" in _summary(tmp_path)["message"]


# -- machine-learned models -------------------------------------------------------------------


def test_tiny_mace_end_to_end(workdir, tmp_path):
    data = {
        "model": {"kind": "mace", "path": str(MODELS / "tiny-mace.model")},
        "repeat": 1,
        "paths": ["knockoff_collinear"],
        "lattice": {"n_points": 5},
        "neb": {"n_images": 3},
    }
    code = _run(workdir, tmp_path, data)
    summary = _summary(tmp_path)
    assert code == 0, summary["message"]
    assert summary["n_atoms"] == 9 and 3.9 < summary["a0_A"] < 4.1
    entry = summary["paths"]["knockoff_collinear"]
    assert entry["converged"] and len(entry["energies_eV"]) == 5
    assert 0 < entry["barrier_eV"] < 1.0
    assert summary["model"]["kind"] == "mace" and len(summary["model"]["sha256"]) == 64
    assert summary["versions"]["mace"] and summary["dtype"] == "float64"


def test_lammpslib_loads_when_lammps_was_imported_first():
    """Regression (CI of stop 16): a process that had imported `lammps` before the runner skipped the libmpi
    preload, and every classical LAMMPSlib evaluation then failed with `libmpi.so.12: cannot open`."""
    script = """
import lammps  # imported first, as another module of a test process may do
from aiida_lifdiff import migration
from aiida_lifdiff.potentials.classical import tosi_fumi_lif
from aiida_lifdiff.runner.calculators import CountingCalculator, classical_calculator
model = {"table": tosi_fumi_lif(), "species_order": ["Li", "F"], "cutoff": 8.0, "kspace_accuracy": 1e-5}
atoms = migration.start_structure(4.03, 1)
atoms.calc = CountingCalculator(classical_calculator(model))  # it sets the charges LAMMPSlib needs
print(atoms.get_potential_energy() / len(atoms))
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "LD_LIBRARY_PATH"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    # Tosi-Fumi LiF cohesive energy is about -5.3 eV/atom (DESIGN.md); a loaded LAMMPS gives a number near it.
    assert -6.5 < float(result.stdout.strip().splitlines()[-1]) < -4.0
