"""Single points (energy, forces, stress) of many frames in ONE LAMMPS process (no AiiDA imports).

Used by ``lifdiff-label`` for classical potentials and by ``scripts/make_tiny_models.py`` to label
the test data, so the labels in ``tests/data/models`` and the ones the plugin computes come from the
same procedure:

- Ewald summation (``kspace_style ewald``) at :data:`DEFAULT_KSPACE_ACCURACY`, :data:`DEFAULT_CUTOFF` A;
- every frame is written as its own data file; the LAMMPS input loops over them with ``clear`` +
  ``read_data`` + ``run 0``, so each frame is an independent single point (k-space set up for its box)
  without paying the process start-up per frame;
- energies and the pressure tensor are printed with a marker line per frame, forces go to one
  ``write_dump`` per frame sorted by atom id (= frame order);
- LAMMPS' pressure of atoms at rest is the virial alone; the ASE stress is minus it (eV/A^3, Voigt
  ``xx yy zz yz xz xy``) plus, for a cell with net charge, the isotropic stress of the neutralising
  background that LAMMPS' Ewald energy contains but its virial omits (:func:`background_stress`);
- cells must already be in LAMMPS' restricted-triclinic form (lower-triangular in ASE's row-vector
  convention): LAMMPS then uses ASE's Cartesian axes and its forces and stress need no rotation back.
  Anything else is refused rather than silently labelled in a rotated frame (:func:`check_lammps_cell`).
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.lammps.coordinatetransform import Prism
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import bar

from aiida_lifdiff.engines.lammps_input import INPUT_FILE, lammps_command, write_data_file
from aiida_lifdiff.engines.lammps_output import read_dump
from aiida_lifdiff.potentials.classical import lammps_potential_lines

#: Label settings: tighter than the MD defaults so that the labels' own error (~1e-7 relative in the
#: reciprocal-space forces) stays far below any model error.
DEFAULT_CUTOFF = 8.0
DEFAULT_KSPACE_ACCURACY = 1e-7
#: LAMMPS' qqrd2e in metal units (eV A / e^2).
COULOMB_CONSTANT = 14.399645
#: Start of the line LAMMPS prints per frame: index, pe, pxx pyy pzz pyz pxz pxy.
LABEL_MARKER = "LIFDIFF_LABEL"
#: LAMMPS prints non-finite values in C style (``nan``, ``-nan``, ``inf``), which float() reads.
_NUMBER = r"[-+]?(?:nan|inf|[0-9.eE+-]+)"
_LABEL_RE = re.compile(rf"^{LABEL_MARKER} (\d+)((?: {_NUMBER}){{7}})\s*$")


class LabelInputError(ValueError):
    """A frame or setting LAMMPS cannot label faithfully (cell form, species, charges); nothing ran."""


class LammpsLabelError(RuntimeError):
    """LAMMPS itself failed or did not label every frame."""


def check_lammps_cell(atoms: Atoms, index: int) -> None:
    """Refuse a cell whose LAMMPS single point would not be in ASE's axes (``index`` names the frame)."""
    if not all(atoms.pbc):
        raise LabelInputError(f"frame {index}: only fully periodic cells can be labelled, got pbc={atoms.pbc}")
    cell = atoms.cell.array
    if abs(np.linalg.det(cell)) < 1e-9:
        raise LabelInputError(f"frame {index}: the cell is singular")
    prism = Prism(cell)
    if not np.allclose(prism.rot_mat, np.eye(3), atol=1e-12):
        raise LabelInputError(
            f"frame {index}: cell is not in LAMMPS' restricted-triclinic form (lower-triangular rows a, b, c "
            "with a along x and b in the xy plane); its forces would come back rotated"
        )
    tilted = np.any(np.abs(np.tril(cell, -1)) > 0)
    if tilted and not prism.is_skewed():
        # ASE writes a box whose tilt is below its tolerance as orthogonal, which would silently label a
        # different structure.
        raise LabelInputError(f"frame {index}: tilt too small for ASE's LAMMPS data writer")


def background_stress(atoms: Atoms, charges: Mapping[str, float], g_ewald: float | None) -> float:
    """The isotropic stress of the neutralising background that LAMMPS' Ewald virial leaves out.

    With net charge Q, LAMMPS' Ewald energy includes -pi Q^2 k_e / (2 g^2 V) (the uniform background)
    but its virial does not; that term's strain derivative is +pi Q^2 k_e / (2 g^2 V^2) on the diagonal.
    Adding it makes the stress the strain derivative of the energy label (checked by finite differences:
    then both agree to ~4e-5 eV/A^3, the level of LAMMPS' own consistency for a neutral cell; without it
    they differ by 3.5e-4).
    """
    charge = sum(float(charges[symbol]) for symbol in atoms.get_chemical_symbols())
    if abs(charge) < 1e-12:
        return 0.0
    if g_ewald is None:
        raise LammpsLabelError("no Ewald G vector found in the LAMMPS output for a charged frame")
    return float(np.pi * charge**2 * COULOMB_CONSTANT / (2.0 * g_ewald**2 * atoms.get_volume() ** 2))


def label_script(n_frames: int, potential_lines: Sequence[str]) -> str:
    """The LAMMPS input that labels ``frame_1.data`` ... ``frame_<n>.data`` one after the other."""
    # `clear` re-initialises everything (k-space set-up for the new box included) but keeps the loop
    # variable, so each frame is an independent single point.
    return "\n".join(
        [
            f"variable i loop {n_frames}",
            "label frame",
            "clear",
            "units metal",
            "atom_style charge",
            "boundary p p p",
            "read_data frame_${i}.data",
            *potential_lines,
            "thermo_style custom step pe pxx pyy pzz pyz pxz pxy",
            "run 0",
            f'print "{LABEL_MARKER} ${{i}} $(pe:%.12f) $(pxx:%.8f) $(pyy:%.8f) $(pzz:%.8f) '
            '$(pyz:%.8f) $(pxz:%.8f) $(pxy:%.8f)"',
            "write_dump all custom forces_${i}.dump id type fx fy fz modify sort id format float %.12e",
            "next i",
            "jump SELF frame",
            "",
        ]
    )


def parse_label_output(text: str) -> tuple[dict[int, list[float]], dict[int, float | None]]:
    """Per frame (1-based): ``[pe, pxx, pyy, pzz, pyz, pxz, pxy]`` and the Ewald G vector LAMMPS chose."""
    labels: dict[int, list[float]] = {}
    g_ewald: dict[int, float | None] = {}
    current_g = None
    for line in text.splitlines():
        if "G vector (1/distance)" in line:
            current_g = float(line.split("=")[1])
        else:
            match = _LABEL_RE.match(line)
            if match:
                index = int(match.group(1))
                labels[index] = [float(value) for value in match.group(2).split()]
                g_ewald[index] = current_g
                current_g = None
    return labels, g_ewald


def _read_forces(path: Path, n_atoms: int) -> np.ndarray:
    """Forces of a ``write_dump``; non-finite values (``nan``, ``-inf``) survive as such."""
    try:
        _, forces, _, _ = read_dump(path, columns=("fx", "fy", "fz"))
        return forces[0]
    except ValueError:
        # np.loadtxt reads nan/inf but not every C spelling (``-nan``); fall back to a plain parse.
        lines = path.read_text().splitlines()[9 : 9 + n_atoms]
        rows = sorted((int(parts[0]), [float(v) for v in parts[2:5]]) for parts in (line.split() for line in lines))
        if [row[0] for row in rows] != list(range(1, n_atoms + 1)):
            raise
        return np.array([row[1] for row in rows])


def lammps_single_points(
    workdir: str | Path,
    frames: Sequence[Atoms],
    parameters: Mapping,
    species_order: Sequence[str] | None = None,
    cutoff: float = DEFAULT_CUTOFF,
    kspace_accuracy: float = DEFAULT_KSPACE_ACCURACY,
) -> tuple[list[dict[str, np.ndarray | float]], str]:
    """Energy (eV), forces (eV/A) and ASE stress (eV/A^3, Voigt) of every frame, and LAMMPS' output.

    :param workdir: scratch folder for the data files, input, dumps and ``log.lammps`` (created).
    :param parameters: a classical parameter table shaped like
        :data:`aiida_lifdiff.potentials.classical.TOSI_FUMI_LIF` (``pairs`` and ``charges``).
    :param species_order: LAMMPS type order (default the table's ``species``).
    :param cutoff: real-space cutoff (A) of the short-range and Coulomb terms.
    :param kspace_accuracy: relative force accuracy of the Ewald sum (always Ewald: the background-stress
        correction was checked against finite differences for it, and at these cell sizes it is exact and
        cheap).
    :raises LabelInputError: a frame with species outside the table, or a cell LAMMPS would rotate.
    :raises LammpsLabelError: LAMMPS failed or labelled fewer frames than given.

    Non-finite results (e.g. two atoms on top of each other) are returned as they are: the caller decides.
    """
    workdir = Path(workdir)
    frames = list(frames)
    if not frames:
        raise LabelInputError("no frames to label")
    species = list(species_order or parameters.get("species") or [])
    charges = dict(parameters.get("charges") or {})
    if not species:
        raise LabelInputError("the classical parameters name no species")
    missing_charges = sorted(set(species) - set(charges))
    if missing_charges:
        raise LabelInputError(f"the classical parameters give no charge for {missing_charges}")
    try:
        potential = lammps_potential_lines(
            parameters, species, cutoff=cutoff, kspace="ewald", kspace_accuracy=kspace_accuracy
        )
    except ValueError as exception:
        raise LabelInputError(str(exception)) from exception
    for index, frame in enumerate(frames):
        extra = sorted(set(frame.get_chemical_symbols()) - set(species))
        if extra:
            raise LabelInputError(f"frame {index} contains {extra}, which the potential (species {species}) lacks")
        check_lammps_cell(frame, index)

    workdir.mkdir(parents=True, exist_ok=True)
    for number, frame in enumerate(frames, start=1):
        (workdir / f"frame_{number}.data").write_text(write_data_file(frame, species, charges))
    (workdir / INPUT_FILE).write_text(label_script(len(frames), potential))
    command, env = lammps_command()
    process = subprocess.run(
        [*command, "-in", INPUT_FILE], cwd=workdir, env=env, capture_output=True, text=True, check=False
    )
    if process.returncode != 0:
        raise LammpsLabelError(
            f"LAMMPS failed (exit status {process.returncode}) in {workdir}:\n"
            f"{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
        )
    labels, g_ewald = parse_label_output(process.stdout)
    if sorted(labels) != list(range(1, len(frames) + 1)):
        raise LammpsLabelError(f"LAMMPS labelled {len(labels)} of {len(frames)} frames:\n{process.stdout[-3000:]}")

    results = []
    for number, frame in enumerate(frames, start=1):
        energy, *pressure = labels[number]
        forces = _read_forces(workdir / f"forces_{number}.dump", len(frame))
        # Atoms have zero velocity in the data file, so LAMMPS' pressure is the virial alone; ASE's stress
        # is minus the pressure tensor, in eV/A^3, Voigt order xx yy zz yz xz xy.
        stress = -np.asarray(pressure) * bar
        if all(math.isfinite(v) for v in pressure):
            stress[:3] += background_stress(frame, charges, g_ewald[number])
        results.append({"energy": float(energy), "forces": forces, "stress": stress})
    return results, process.stdout


def label_frames(
    workdir: str | Path,
    frames: Sequence[Atoms],
    parameters: Mapping,
    species_order: Sequence[str] | None = None,
    cutoff: float = DEFAULT_CUTOFF,
    kspace_accuracy: float = DEFAULT_KSPACE_ACCURACY,
) -> list[Atoms]:
    """Copies of ``frames`` (info and arrays kept) carrying :func:`lammps_single_points` labels."""
    results, _ = lammps_single_points(workdir, frames, parameters, species_order, cutoff, kspace_accuracy)
    labelled = []
    for frame, result in zip(frames, results):
        copy = frame.copy()
        copy.calc = SinglePointCalculator(
            copy, energy=result["energy"], forces=result["forces"], stress=result["stress"]
        )
        labelled.append(copy)
    return labelled
