"""Parser of ``lifdiff.label``: the labelled extxyz -> ``DatasetData``, the summary -> ``Dict``."""

from __future__ import annotations

import io
import json

from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_lifdiff import datasets
from aiida_lifdiff.calculations.label import OUTPUT_FILE, SUMMARY_FILE
from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.serialization import json_safe

#: Exit codes of ``lifdiff-label`` (see :mod:`aiida_lifdiff.runner.label`).
RUNNER_BAD_INPUT, RUNNER_NO_CUDA, RUNNER_NON_FINITE, RUNNER_ENGINE_FAILED = 2, 3, 4, 5


def labelled_source(frames: DatasetData, potential) -> str:
    """Where the labelled frames come from: the frames' own source, then which potential labelled them."""
    name = potential.label or potential.kind
    labelled = f"labelled by {name} ({potential.kind}, sha256 {potential.sha256[:12]})"
    return f"{frames.source}; {labelled}" if frames.source else labelled


class LifdiffLabelParser(Parser):
    """Attach the labelled frames as a dataset and the program's summary as results."""

    def _read(self, path: str, mode: str = "r"):
        return self.retrieved.base.repository.get_object_content(path, mode=mode)

    def parse(self, **kwargs) -> ExitCode | None:
        names = set(self.retrieved.base.repository.list_object_names())
        if SUMMARY_FILE not in names:
            stdout = self.node.base.attributes.get("output_filename")
            tail = self._read(stdout)[-2000:] if stdout in names else "(no output)"
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(detail=tail.strip() or "(empty output)")
        summary = json.loads(self._read(SUMMARY_FILE))
        exit_code = int(summary.get("exit_code", 0))
        message = summary.get("message", "")
        self.out("results", orm.Dict(json_safe(summary)))
        if exit_code == RUNNER_BAD_INPUT:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        if exit_code == RUNNER_NO_CUDA:
            return self.exit_codes.ERROR_CUDA_UNAVAILABLE.format(message=message)
        if exit_code == RUNNER_NON_FINITE:
            return self.exit_codes.ERROR_NON_FINITE_LABELS.format(message=message)
        if exit_code == RUNNER_ENGINE_FAILED:
            return self.exit_codes.ERROR_ENGINE_FAILED.format(message=message[-2000:])
        if exit_code != 0:
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(detail=f"unknown exit code {exit_code}: {message}")
        if OUTPUT_FILE not in names:
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(detail=f"{OUTPUT_FILE} was not retrieved")

        frames_in = self.node.inputs.frames
        try:
            frames = datasets.read_extxyz(io.StringIO(self._read(OUTPUT_FILE)))
            if len(frames) != frames_in.n_frames:
                raise datasets.DatasetError(f"{len(frames)} labelled frames for {frames_in.n_frames} input frames")
            dataset = DatasetData(frames, source=labelled_source(frames_in, self.node.inputs.potential))
        except datasets.DatasetError as exception:
            if "non-finite" in str(exception):
                return self.exit_codes.ERROR_NON_FINITE_LABELS.format(message=str(exception))
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(detail=f"{OUTPUT_FILE} is unusable: {exception}")
        potential = self.node.inputs.potential
        dataset.label = f"{frames_in.label or 'frames'} [{potential.label or potential.kind}]"
        self.out("dataset", dataset)
        return None
