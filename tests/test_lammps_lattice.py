"""Physics checks of the Tosi-Fumi potential in the real LAMMPS (seconds each)."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from aiida_lifdiff.engines.lammps_input import (
    INPUT_FILE,
    LOG_FILE,
    THERMO_FILE,
    TRAJECTORY_FILE,
    lammps_command,
    lattice_relax_script,
    md_input_script,
    write_data_file,
)
from aiida_lifdiff.engines.lammps_output import parse_relax, read_dump, read_thermo, scan_log
from aiida_lifdiff.potentials.classical import TOSI_FUMI_LIF, lammps_potential_lines
from aiida_lifdiff.structures import build_lif_supercell, species_indices

SPECIES = ["Li", "F"]
pytestmark = pytest.mark.lammps


def run_lammps(workdir: Path, script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    try:
        command, env = lammps_command()
    except FileNotFoundError as error:
        # `make test` installs LAMMPS: a missing binary is a broken install, never a reason to skip.
        pytest.fail(str(error))
    (workdir / INPUT_FILE).write_text(script)
    process = subprocess.run(
        [*command, "-in", INPUT_FILE], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    return process


def test_tosi_fumi_zero_pressure_lattice(tmp_path):
    """DESIGN.md: a0 = 4.01 A and -5.404 eV/atom (216 atoms, Ewald 1e-7, 8 A cutoff)."""
    repeat = 3
    atoms = build_lif_supercell(repeat, 4.03, "none")
    (tmp_path / "structure.data").write_text(write_data_file(atoms, SPECIES, TOSI_FUMI_LIF["charges"]))
    lines = lammps_potential_lines(TOSI_FUMI_LIF, SPECIES, cutoff=8.0, kspace="ewald", kspace_accuracy=1e-7)
    process = run_lammps(tmp_path, lattice_relax_script(lines, SPECIES))
    result = parse_relax(process.stdout)
    a0 = result["lx"] / repeat
    print(f"Tosi-Fumi LiF: a0 = {a0:.4f} A, E = {result['pe_per_atom']:.4f} eV/atom, p = {result['press']:.2f} bar")
    assert result["natoms"] == 216
    assert result["lx"] == pytest.approx(result["ly"]) == pytest.approx(result["lz"])
    assert abs(a0 - 4.03) / 4.03 < 0.02
    assert a0 == pytest.approx(4.01, abs=0.005)
    assert result["pe_per_atom"] == pytest.approx(-5.404, abs=0.002)
    assert abs(result["press"]) < 50.0
    assert scan_log((tmp_path / LOG_FILE).read_text())["error"] is None


def test_interstitial_md_at_1000K(tmp_path):
    """Short NVT MD with the interstitial: T averages to the target, the Nose-Hoover
    conserved energy does not drift, and the F sublattice stays a crystal."""
    atoms = build_lif_supercell(2, 4.03, "tetrahedral")
    (tmp_path / "structure.data").write_text(write_data_file(atoms, SPECIES, TOSI_FUMI_LIF["charges"]))
    script = md_input_script(
        potential_lines=lammps_potential_lines(TOSI_FUMI_LIF, SPECIES),
        species_order=SPECIES,
        temperature_K=1000.0,
        timestep_fs=1.0,
        n_steps=4000,
        equilibration_steps=1000,
        seed=2024,
        dump_stride=100,
        thermo_stride=20,
    )
    run_lammps(tmp_path, script)
    report = scan_log((tmp_path / LOG_FILE).read_text())
    assert report["completed"] and not report["lost_atoms"]

    thermo = read_thermo(tmp_path / THERMO_FILE)
    mean_t = thermo["temp_K"].mean()
    drift = thermo["econserve_eV"][-1] - thermo["econserve_eV"][0]
    print(f"<T> = {mean_t:.1f} K, std {thermo['temp_K'].std():.1f} K, conserved-energy drift {drift:.2e} eV / 4 ps")
    # 65 atoms: T fluctuates by ~10 % per sample; over 4 ps the mean is within a few %.
    assert mean_t == pytest.approx(1000.0, rel=0.07)
    assert abs(drift) / len(atoms) < 1e-4
    assert np.ptp(thermo["econserve_eV"]) / len(atoms) < 2e-4

    _, positions, _, _ = read_dump(tmp_path / TRAJECTORY_FILE)
    fluorine = species_indices(atoms, "F")
    displacement = positions[:, fluorine] - positions[0, fluorine]
    displacement -= displacement.mean(axis=1, keepdims=True)  # the F sublattice as reference frame
    msd_f = (displacement**2).sum(axis=2).mean(axis=1)
    print(f"F mean-square displacement at the end: {msd_f[-1]:.3f} A^2")
    assert msd_f.max() < 0.5  # vibrations only: a melted lattice gives several A^2
