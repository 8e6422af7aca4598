"""Calcfunctions over datasets: seeded splits and merges, so the graph shows which frames trained which model."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_lifdiff import datasets
from aiida_lifdiff.data.dataset import DatasetData

SPLIT_NAMES = ("train", "valid", "test")


def validate_split(fractions: dict, n_frames: int | None = None) -> str | None:
    """A message if ``fractions`` ({train, valid, test}) cannot split ``n_frames`` frames, else None."""
    unknown = set(fractions) - set(SPLIT_NAMES)
    if unknown:
        return f"unknown split parts {sorted(unknown)}; allowed: {', '.join(SPLIT_NAMES)}"
    if fractions.get("train", 0) <= 0:
        return "the split needs a train fraction > 0"
    try:
        datasets.split_indices(n_frames or 1000, [fractions.get(name, 0.0) for name in SPLIT_NAMES], 0)
    except datasets.DatasetError as exception:
        return str(exception)
    return None


@calcfunction
def split_dataset(dataset: DatasetData, fractions: orm.Dict, seed: orm.Int) -> dict:
    """Disjoint train/valid/test subsets of ``dataset`` (seeded permutation; parts with fraction 0 are omitted).

    Each part records the indices it took from the parent in its ``parent_indices`` attribute.
    """
    fractions = fractions.get_dict()
    frames = dataset.get_frames()
    parts = datasets.split_indices(len(frames), [fractions.get(name, 0.0) for name in SPLIT_NAMES], seed.value)
    outputs = {}
    for name, indices in zip(SPLIT_NAMES, parts):
        if not indices:
            continue
        part = DatasetData([frames[i] for i in indices], source=dataset.source)
        part.base.attributes.set("split", name)
        part.base.attributes.set("parent_indices", indices)
        part.label = f"{dataset.label or 'dataset'} [{name}]"
        outputs[name] = part
    return outputs


@calcfunction
def merge_datasets(**parts: DatasetData) -> DatasetData:
    """One dataset with the frames of every input, in the (sorted) order of the input link labels."""
    frames = []
    sources = []
    for name in sorted(parts):
        frames.extend(parts[name].get_frames())
        if parts[name].source and parts[name].source not in sources:
            sources.append(parts[name].source)
    merged = DatasetData(frames, source="; ".join(sources))
    merged.label = "merged dataset"
    return merged


@calcfunction
def select_frames(dataset: DatasetData, n_frames: orm.Int, seed: orm.Int) -> dict:
    """``selected``: ``n_frames`` frames drawn from ``dataset`` (seeded); ``rest``: the others, if any.

    Used to hold out a benchmark's shared evaluation set and to give each model its own number of training
    frames; both parts record the indices they took from the parent in ``parent_indices``.
    """
    frames = dataset.get_frames()
    if not 0 < n_frames.value <= len(frames):
        raise ValueError(f"cannot select {n_frames.value} frames from a dataset of {len(frames)}")
    # The same permutation as split_indices, cut at an exact count (fractions could round it by one).
    order = np.random.default_rng(seed.value).permutation(len(frames))
    selected = sorted(int(i) for i in order[: n_frames.value])
    rest = sorted(int(i) for i in order[n_frames.value :])
    outputs = {}
    for name, indices in (("selected", selected), ("rest", rest)):
        if not indices:
            continue
        part = DatasetData([frames[i] for i in indices], source=dataset.source)
        part.base.attributes.set("parent_indices", indices)
        part.label = f"{dataset.label or 'dataset'} [{len(indices)} {name}]"
        outputs[name] = part
    return outputs
