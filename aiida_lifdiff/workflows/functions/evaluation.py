"""Calcfunction: errors of predicted labels against reference labels, with a parity plot (thin layer over analysis)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from aiida import orm
from aiida.engine import calcfunction

from aiida_lifdiff.analysis.errors import label_errors, parity_plot
from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.serialization import json_safe

PARITY_PLOT_FILE = "parity.png"


@calcfunction
def compare_labels(reference: DatasetData, predicted: DatasetData) -> dict:
    """Energy, force and stress errors of ``predicted`` against ``reference`` (same frames), and their parity plot.

    ``errors`` holds :func:`aiida_lifdiff.analysis.errors.label_errors` (meV/atom, meV/A, meV/A^3) plus both
    datasets' ``source``; frames that do not correspond (elements, cell, positions) raise ValueError, so the
    calcfunction fails instead of reporting errors of unrelated structures.
    """
    reference_frames = reference.get_frames()
    predicted_frames = predicted.get_frames()
    errors = label_errors(reference_frames, predicted_frames)
    errors["reference_source"] = reference.source
    errors["predicted_source"] = predicted.source
    title = predicted.label or "predicted"
    with tempfile.TemporaryDirectory() as tmp:
        path = parity_plot(
            reference_frames, predicted_frames, Path(tmp) / PARITY_PLOT_FILE, title=f"{title} vs reference"
        )
        plot = orm.SinglefileData(io.BytesIO(path.read_bytes()), filename=PARITY_PLOT_FILE)
    return {"errors": orm.Dict(json_safe(errors)), "parity_plot": plot}
