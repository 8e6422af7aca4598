"""Labelled configurations: reading, writing, converting and splitting (no AiiDA imports).

One in-memory form everywhere: a list of ``ase.Atoms``, each with a ``SinglePointCalculator`` holding
the labels (``energy`` in eV, ``forces`` in eV/A, optionally ``stress`` in eV/A^3 with ASE's sign,
i.e. minus the pressure tensor). Frames without labels are allowed (sampled structures waiting to be
labelled). On disk the canonical form is extxyz with the keys ``energy``, ``forces`` and ``stress``,
which ASE, dpdata and ``mace_run_train --energy_key=energy --forces_key=forces --stress_key=stress``
all read. DeePMD formats go through dpdata.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

#: The label keys of the canonical extxyz (what every trainer is told to read).
ENERGY_KEY = "energy"
FORCES_KEY = "forces"
STRESS_KEY = "stress"
DEEPMD_FORMATS = ("deepmd/npy", "deepmd/raw")


class DatasetError(ValueError):
    """A dataset that cannot be read, is inconsistent, or cannot be split as asked."""


def frame_labels(atoms: Atoms) -> dict[str, np.ndarray | float]:
    """The labels attached to ``atoms`` (any of energy, forces, stress), without computing anything."""
    calc = atoms.calc
    results = getattr(calc, "results", {}) if calc is not None else {}
    labels: dict[str, np.ndarray | float] = {}
    if "energy" in results:
        labels["energy"] = float(results["energy"])
    if "forces" in results:
        labels["forces"] = np.asarray(results["forces"], dtype=float)
    if "stress" in results:
        stress = np.asarray(results["stress"], dtype=float)
        if stress.shape == (3, 3):
            stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        labels["stress"] = stress
    return labels


def labelled_frame(atoms: Atoms, energy: float, forces: np.ndarray, stress: np.ndarray | None = None, **info) -> Atoms:
    """A copy of ``atoms`` carrying the given labels (and extra ``info`` entries)."""
    frame = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    frame.info.update({k: v for k, v in atoms.info.items() if k not in (ENERGY_KEY, STRESS_KEY)})
    frame.info.update(info)
    results = {"energy": float(energy), "forces": np.asarray(forces, dtype=float)}
    if stress is not None:
        results["stress"] = np.asarray(stress, dtype=float)
    frame.calc = SinglePointCalculator(frame, **results)
    return frame


def read_extxyz(source: str | Path | io.TextIOBase) -> list[Atoms]:
    """Every frame of an extxyz file, its labels as a SinglePointCalculator.

    ASE maps the keys ``energy``/``forces``/``stress`` onto the calculator; other per-frame keys stay in
    ``atoms.info``. Raises :class:`DatasetError` for a file ASE cannot read.
    """
    try:
        frames = read(source, index=":", format="extxyz")
    except Exception as exception:  # ASE raises many types for malformed files
        raise DatasetError(f"cannot read extxyz {source!r}: {exception}") from exception
    if not frames:
        raise DatasetError(f"{source!r} holds no frames")
    return list(frames)


def write_extxyz(frames: Sequence[Atoms], target: str | Path | io.TextIOBase) -> None:
    """Write ``frames`` as canonical extxyz (labels under ``energy``, ``forces``, ``stress``)."""
    write(target, list(frames), format="extxyz")


def extxyz_text(frames: Sequence[Atoms]) -> str:
    buffer = io.StringIO()
    write_extxyz(frames, buffer)
    return buffer.getvalue()


def summarize(frames: Sequence[Atoms]) -> dict:
    """Counts, species and which labels every frame has: the attributes of a dataset node."""
    if not frames:
        raise DatasetError("a dataset needs at least one frame")
    keys = None
    species: set[str] = set()
    atoms_per_frame: list[int] = []
    for index, atoms in enumerate(frames):
        labels = frame_labels(atoms)
        present = sorted(labels)
        if keys is None:
            keys = present
        elif present != keys:
            raise DatasetError(f"frame {index} has labels {present}, frame 0 has {keys}: mixed labelling")
        forces = labels.get("forces")
        if forces is not None and np.shape(forces) != (len(atoms), 3):
            raise DatasetError(f"frame {index}: forces of shape {np.shape(forces)} for {len(atoms)} atoms")
        for key, value in labels.items():
            if not np.all(np.isfinite(value)):
                raise DatasetError(f"frame {index}: non-finite {key}")
        species.update(atoms.get_chemical_symbols())
        atoms_per_frame.append(len(atoms))
    config_types: dict[str, int] = {}
    for atoms in frames:
        name = str(atoms.info.get("config_type", "unknown"))
        config_types[name] = config_types.get(name, 0) + 1
    return {
        "n_frames": len(frames),
        "n_atoms_total": int(sum(atoms_per_frame)),
        "atoms_per_frame": sorted(set(atoms_per_frame)),
        "species": sorted(species),
        "labels": keys or [],
        "labelled": bool(keys and "energy" in keys and "forces" in keys),
        "config_types": config_types,
    }


def split_indices(n_frames: int, fractions: Sequence[float], seed: int) -> list[list[int]]:
    """Deterministic disjoint index sets covering ``range(n_frames)`` in the given fractions.

    The permutation comes from ``numpy.random.default_rng(seed)``, so the same ``(n_frames, fractions,
    seed)`` always gives the same split on every machine. Sizes are rounded down and the remainder goes
    to the first set; every set with a positive fraction gets at least one frame (else an error).
    """
    fractions = [float(f) for f in fractions]
    if any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise DatasetError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    sizes = [int(np.floor(f * n_frames)) for f in fractions]
    sizes[0] += n_frames - sum(sizes)
    for fraction, size in zip(fractions, sizes):
        if fraction > 0 and size == 0:
            raise DatasetError(f"{n_frames} frames are too few for the split {fractions}: a part would be empty")
    order = np.random.default_rng(int(seed)).permutation(n_frames)
    parts, start = [], 0
    for size in sizes:
        parts.append(sorted(int(i) for i in order[start : start + size]))
        start += size
    return parts


def _check_deepmd_format(fmt: str) -> None:
    if fmt not in DEEPMD_FORMATS:
        raise DatasetError(f"unknown DeePMD format {fmt!r}; expected one of {', '.join(DEEPMD_FORMATS)}")


def to_deepmd(frames: Sequence[Atoms], directory: str | Path, fmt: str = "deepmd/npy", type_map=None) -> list[Path]:
    """Write labelled ``frames`` as DeePMD systems (one per distinct formula) under ``directory``.

    Returns the system folders. ``type_map`` fixes the element order of ``type.raw`` (default: sorted
    species), which must match the ``type_map`` of the DeePMD input.
    """
    import dpdata

    _check_deepmd_format(fmt)
    summary = summarize(frames)
    if not summary["labelled"]:
        raise DatasetError("only labelled frames (energy and forces) can be written in a DeePMD format")
    type_map = list(type_map or summary["species"])
    multi = dpdata.MultiSystems(type_map=type_map)
    for atoms in frames:
        multi.append(dpdata.LabeledSystem(atoms, fmt="ase/structure", type_map=type_map))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if fmt == "deepmd/npy":
        multi.to_deepmd_npy(str(directory))
    else:
        multi.to_deepmd_raw(str(directory))
    return sorted(p.parent for p in directory.glob("*/type.raw"))


def from_deepmd(paths: str | Path | Iterable[str | Path], fmt: str = "deepmd/npy") -> list[Atoms]:
    """Labelled frames from DeePMD system folders (a folder with ``type.raw``, or a folder of such folders)."""
    import dpdata

    _check_deepmd_format(fmt)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    systems: list[Path] = []
    for path in map(Path, paths):
        if (path / "type.raw").is_file():
            systems.append(path)
        else:
            systems.extend(sorted(p.parent for p in path.glob("**/type.raw")))
    if not systems:
        raise DatasetError(f"no DeePMD system (a folder with type.raw) under {', '.join(map(str, paths))}")
    frames: list[Atoms] = []
    for system in systems:
        try:
            labelled = dpdata.LabeledSystem(str(system), fmt=fmt)
        except Exception as exception:
            raise DatasetError(f"cannot read {system} as {fmt}: {exception}") from exception
        for atoms in labelled.to("ase/structure"):
            labels = frame_labels(atoms)
            frames.append(
                labelled_frame(
                    atoms, labels["energy"], labels["forces"], labels.get("stress"), source_system=system.name
                )
            )
    return frames
