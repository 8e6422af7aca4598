"""Parser of ``lifdiff.mace_train``: the trained model as a PotentialData with its lineage, curves and errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_lifdiff.calculations.mace_train import STDERR_FILE
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.serialization import json_safe
from aiida_lifdiff.training.mace import (
    RUN_NAME,
    diverged,
    final_model_file,
    output_files,
    parse_error_tables,
    parse_learning_curves,
    parse_log,
    training_flags,
)

#: Units of the learning-curve arrays (mace's own: eV based; relative metrics in percent).
CURVE_UNITS = {
    "loss": "dimensionless (mace's weighted loss)",
    "rmse_e": "eV",
    "mae_e": "eV",
    "rmse_e_per_atom": "eV/atom",
    "mae_e_per_atom": "eV/atom",
    "rmse_f": "eV/A",
    "mae_f": "eV/A",
    "rmse_stress": "eV/A^3",
    "mae_stress": "eV/A^3",
    "rel_rmse_f": "%",
    "rel_mae_f": "%",
    "time": "s",
}
#: Fraction of max_wallclock_seconds after which a run that stopped without a model counts as out of walltime
#: (the log starts only after the imports, so it covers a little less than the job).
WALLTIME_FRACTION = 0.8


class LifdiffMaceTrainParser(Parser):
    """Attach the model (the last one mace saved), the learning curves and the final error tables."""

    def _read(self, name: str) -> str | None:
        repository = self.retrieved.base.repository
        if name not in repository.list_object_names():
            return None
        return repository.get_object_content(name, mode="r")

    def parse(self, **kwargs) -> ExitCode | None:
        mode = self.node.inputs.mode.value
        parameters = self.node.inputs.parameters.get_dict() if "parameters" in self.node.inputs else {}
        flags = training_flags(parameters, mode)
        files = output_files(flags, name=RUN_NAME)
        # Retrieval keeps only the base names of the listed paths.
        log_text = self._read(os.path.basename(files["log"])) or ""
        results_text = self._read(os.path.basename(files["results"])) or ""
        stderr = self._read(STDERR_FILE) or ""

        argparse_error = [line for line in stderr.splitlines() if "mace_run_train: error:" in line]
        if argparse_error:
            return self.exit_codes.ERROR_INVALID_INPUT.format(detail=argparse_error[-1].strip())

        log = parse_log(log_text)
        curves = parse_learning_curves(results_text)
        if curves:
            self.out("learning_curves", _curves_node(curves))

        if diverged(curves, log):
            return self.exit_codes.ERROR_TRAINING_DIVERGED.format(
                detail=f"last evaluated epoch {log['last_epoch']}; see the learning_curves output"
            )

        temporary = kwargs.get("retrieved_temporary_folder")
        available = os.listdir(temporary) if temporary and os.path.isdir(temporary) else []
        model_name = final_model_file(available, name=RUN_NAME)
        if model_name is None:
            wallclock = self.node.get_option("max_wallclock_seconds")
            if (
                wallclock
                and not log["training_completed"]
                and log["wall_time_s"] is not None
                and log["wall_time_s"] >= WALLTIME_FRACTION * float(wallclock)
            ):
                return self.exit_codes.ERROR_OUT_OF_WALLTIME.format(epoch=log["last_epoch"])
            return self.exit_codes.ERROR_MISSING_MODEL.format(detail=_failure_detail(stderr, log))

        try:
            model = PotentialData.from_model_file(
                "mace", Path(temporary) / model_name, label=self._model_label(mode), lineage=self._lineage(flags, log)
            )
        except (OSError, ValueError) as exception:
            return self.exit_codes.ERROR_INVALID_MODEL.format(detail=str(exception))
        model.description = f"mace_run_train ({mode}), {model_name} of calculation {self.node.uuid}"
        self.out("model", model)

        errors = self._errors(log_text)
        errors.update(
            {
                "model_file": model_name,
                "mace_version": log["mace_version"],
                "wall_time_s": log["wall_time_s"],
                "training_time_s": log["training_time_s"],
                "last_epoch": log["last_epoch"],
                "multihead": log["multihead"],
                "units": {"energy": "meV/atom", "forces": "meV/A", "stress": "meV/A^3", "time": "s"},
            }
        )
        self.out("errors", orm.Dict(json_safe(errors)))
        if not errors.get("train") and not errors.get("valid"):
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(detail="no final error table in the mace log")
        return None

    # ------------------------------------------------------------------------------------------ helpers

    def _model_label(self, mode: str) -> str:
        train = self.node.inputs.train
        data = train.label or train.uuid[:8]
        if mode == "scratch":
            return f"MACE scratch on {data}"
        return f"MACE {mode} of {self.node.inputs.foundation.label or 'foundation'} on {data}"

    def _lineage(self, flags: dict, log: dict) -> dict[str, Any]:
        inputs = self.node.inputs
        foundation = None
        if "foundation" in inputs:
            node = inputs.foundation
            foundation = {
                "uuid": node.uuid,
                "label": node.label,
                "sha256": node.sha256,
                "name": node.lineage.get("foundation"),
            }
        datasets = {}
        for port in ("train", "valid", "test", "replay"):
            if port in inputs:
                node = inputs[port]
                datasets[port] = {
                    "uuid": node.uuid,
                    "label": node.label,
                    "n_frames": node.n_frames,
                    "source": node.source,
                    "sha256": node.sha256,
                }
        return json_safe(
            {
                "program": "mace_run_train",
                "mace_version": log.get("mace_version"),
                "mode": inputs.mode.value,
                "foundation": foundation,
                "datasets": datasets,
                "flags": flags,
                "calculation": self.node.uuid,
            }
        )

    def _errors(self, log_text: str) -> dict[str, Any]:
        errors = parse_error_tables(log_text, head="Default")
        by_type = errors.get("test_by_config_type", {})
        if len(by_type) > 1 and "test" in self.node.inputs:
            # Forces combine over atoms: count them per config_type the way mace groups the test frames.
            atoms: dict[str, int] = {}
            for frame in self.node.inputs.test.get_frames():
                group = str(frame.info.get("config_type", "Default"))
                atoms[group] = atoms.get(group, 0) + len(frame)
            if set(by_type) <= set(atoms):
                errors = parse_error_tables(log_text, head="Default", atoms_per_config_type=atoms)
        return errors


def _curves_node(curves: dict[str, dict[str, np.ndarray]]) -> orm.ArrayData:
    """The curves as one ArrayData.

    Validation metrics of the Default head by their mace names (``epoch``, ``loss``, ``rmse_f``, ...), those of
    other heads as ``<head>__<metric>``, the mean training loss per epoch as ``train_epoch``/``train_loss``.
    """
    node = orm.ArrayData()
    for head, metrics in curves.items():
        prefix = {"Default": "", "train": "train_"}.get(head, f"{head}__")
        for name, values in metrics.items():
            node.set_array(f"{prefix}{name}", np.asarray(values))
    node.base.attributes.set("heads", sorted(h for h in curves if h != "train"))
    node.base.attributes.set("units", CURVE_UNITS)
    node.base.attributes.set("epoch_of_initial_evaluation", -1)
    return node


def _failure_detail(stderr: str, log: dict) -> str:
    """The most telling line: the exception that ended mace_run_train, else an error from its log."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line or "Exception" in line:
            return line[-1000:]
    if log.get("errors"):
        return log["errors"][-1][-1000:]
    if lines:
        return lines[-1][-1000:]
    return "no output (did the code start?)"
