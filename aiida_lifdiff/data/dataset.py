"""``DatasetData``: labelled configurations as a node, so every trained model can name its data."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiida import orm
from ase import Atoms

from aiida_lifdiff import datasets
from aiida_lifdiff.potentials import stream_sha256

FILENAME = "dataset.extxyz"


class DatasetData(orm.SinglefileData):
    """Configurations with energies, forces and (optionally) stress, stored as one extxyz file.

    Attributes (queryable): ``n_frames``, ``n_atoms_total``, ``atoms_per_frame``, ``species``, ``labels``
    (which of energy/forces/stress every frame carries), ``labelled``, ``config_types`` (frame count per
    ``config_type``), ``source`` (free text: where the frames came from, e.g. ``"classical MD 500-900 K,
    labelled by Tosi-Fumi"`` or ``"imported from deepmd/npy"``), ``label_units`` and ``sha256`` of the file.
    Labels are in eV, eV/A and eV/A^3 (ASE's stress sign) under the keys energy, forces, stress.
    """

    def __init__(self, frames: Sequence[Atoms], *, source: str = "", **kwargs):
        frames = list(frames)
        summary = datasets.summarize(frames)
        text = datasets.extxyz_text(frames)
        super().__init__(io.BytesIO(text.encode()), filename=FILENAME, **kwargs)
        with self.open(mode="rb") as handle:
            sha256 = stream_sha256(handle)
        for key, value in summary.items():
            self.base.attributes.set(key, value)
        self.base.attributes.set("source", source)
        self.base.attributes.set("label_units", {"energy": "eV", "forces": "eV/A", "stress": "eV/A^3 (-pressure)"})
        self.base.attributes.set("sha256", sha256)

    # ------------------------------------------------------------------ construction from files

    @classmethod
    def from_extxyz(cls, path: str | Path, source: str = "") -> DatasetData:
        """A dataset from an extxyz file with ``energy``/``forces``(/``stress``) labels (unstored)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"dataset file {path} does not exist")
        node = cls(datasets.read_extxyz(path), source=source or f"imported from extxyz {path.name}")
        node.label = path.stem
        return node

    @classmethod
    def from_deepmd(cls, path: str | Path, fmt: str = "deepmd/npy", source: str = "") -> DatasetData:
        """A dataset from DeePMD system folder(s) in ``deepmd/npy`` or ``deepmd/raw`` format (via dpdata)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"DeePMD data {path} does not exist")
        node = cls(datasets.from_deepmd(path, fmt=fmt), source=source or f"imported from {fmt} {path.name}")
        node.label = path.name
        return node

    # ------------------------------------------------------------------ access and export

    def get_frames(self) -> list[Atoms]:
        """The frames, labels attached as SinglePointCalculators."""
        with self.open(mode="r") as handle:
            return datasets.read_extxyz(io.StringIO(handle.read()))

    def write_extxyz(self, path: str | Path) -> Path:
        path = Path(path)
        with self.open(mode="rb") as handle:
            path.write_bytes(handle.read())
        return path

    def write_deepmd(self, directory: str | Path, fmt: str = "deepmd/npy", type_map: Sequence[str] | None = None):
        """Export as DeePMD systems under ``directory``; returns the system folders."""
        return datasets.to_deepmd(self.get_frames(), directory, fmt=fmt, type_map=type_map)

    def subset(self, indices: Sequence[int], source: str | None = None) -> DatasetData:
        """A new (unstored) dataset of the frames at ``indices``; use the calcfunctions to keep provenance."""
        frames = self.get_frames()
        return DatasetData([frames[i] for i in indices], source=source if source is not None else self.source)

    @property
    def n_frames(self) -> int:
        return int(self.base.attributes.get("n_frames"))

    @property
    def species(self) -> list[str]:
        return list(self.base.attributes.get("species"))

    @property
    def labels(self) -> list[str]:
        return list(self.base.attributes.get("labels"))

    @property
    def labelled(self) -> bool:
        return bool(self.base.attributes.get("labelled"))

    @property
    def source(self) -> str:
        return self.base.attributes.get("source", "")

    @property
    def sha256(self) -> str:
        return self.base.attributes.get("sha256")

    @property
    def summary(self) -> dict[str, Any]:
        keys = ("n_frames", "n_atoms_total", "atoms_per_frame", "species", "labels", "labelled", "config_types")
        return {key: self.base.attributes.get(key) for key in keys} | {"source": self.source}


def unlabelled_problem(dataset: DatasetData | None, purpose: str) -> str | None:
    """The message for a port validator when ``dataset`` lacks energy or force labels, else None.

    ``purpose`` says what needs the labels (e.g. "dp trains only on labelled frames").
    """
    if dataset is None or dataset.labelled:
        return None
    name = dataset.label or dataset.uuid
    return f"the dataset {name!r} has no energy/force labels (it has {dataset.labels}): {purpose}"
