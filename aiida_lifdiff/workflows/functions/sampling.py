"""Calcfunction: frames to label, chosen from MD trajectories (the first step of a training set)."""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.sampling import sample_configurations


@calcfunction
def sample_frames(parameters: orm.Dict, **trajectories: orm.TrajectoryData) -> DatasetData:
    """Unlabelled frames: snapshots of every trajectory plus rattled/strained copies (see ``sampling.py``).

    Each frame keeps the temperature and seed of the run it came from, and ``config_type``.
    """
    settings = parameters.get_dict()
    source = settings.pop("source", "")
    data = []
    for name in sorted(trajectories):
        trajectory = trajectories[name]
        attributes = trajectory.base.attributes
        data.append(
            {
                "symbols": list(trajectory.symbols),
                "positions": trajectory.get_positions(),
                "cells": trajectory.get_cells(),
                "info": {
                    "temperature_K": attributes.get("temperature_K", None),
                    "md_seed": attributes.get("seed", None),
                    "md_run": name,
                },
            }
        )
    frames = sample_configurations(data, settings)
    dataset = DatasetData(frames, source=source or "MD snapshots")
    dataset.label = "sampled frames"
    return dataset
