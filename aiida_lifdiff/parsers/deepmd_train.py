"""Parser of ``lifdiff.deepmd_train``: the frozen model with its lineage, the learning curve and the test errors."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_lifdiff.calculations.deepmd_train import (
    FREEZE_LOG,
    INPUT_FILE,
    MODEL_FILE,
    TEST_LOG,
    TRAIN_LOG,
)
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.serialization import json_safe
from aiida_lifdiff.training.deepmd import (
    LCURVE_FILE,
    is_input_error,
    lcurve_divergence,
    lcurve_final,
    parse_dp_test,
    parse_lcurve,
    parse_train_log,
    with_defaults,
)

#: Test errors copied to the top level of ``errors`` (the full ``dp test`` result is under ``test``).
HEADLINE_TEST_KEYS = (
    "energy_rmse_meV_per_atom",
    "energy_mae_meV_per_atom",
    "force_rmse_meV_per_A",
    "force_mae_meV_per_A",
    "virial_rmse_meV_per_atom",
    "stress_rmse_meV_per_A3",
)


def dataset_record(dataset) -> dict:
    """What a model's lineage says about one of its datasets."""
    return {
        "uuid": dataset.uuid,
        "n_frames": dataset.n_frames,
        "source": dataset.source,
        "sha256": dataset.sha256,
        "label": dataset.label,
    }


class LifdiffDeepmdTrainParser(Parser):
    """Attach the frozen model (PotentialData), lcurve (ArrayData) and errors (Dict) of a dp train/freeze/test job."""

    def _read(self, name: str, mode: str = "r"):
        return self.retrieved.base.repository.get_object_content(name, mode=mode)

    def _tail(self, names: set[str], *logs: str, length: int = 1500) -> str:
        for log in logs:
            if log in names:
                text = "\n".join(line for line in self._read(log).splitlines() if "implib-gen" not in line)
                if text.strip():
                    return f"{log}: ...{text[-length:].strip()}"
        return "(no log)"

    def parse(self, **kwargs) -> ExitCode | None:
        names = set(self.retrieved.base.repository.list_object_names())
        if TRAIN_LOG not in names:
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(detail=f"no {TRAIN_LOG}: dp train did not run")
        log = parse_train_log(self._read(TRAIN_LOG))
        if is_input_error(log["error"]):
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=log["error"])

        settings = with_defaults(self.node.inputs.parameters.get_dict() if "parameters" in self.node.inputs else {})
        errors: dict = {
            "validation": "separate valid dataset" if "valid" in self.node.inputs else "training set reused",
            "numb_steps": int(settings["numb_steps"]),
        }
        for key in ("deepmd_version", "wall_time_s", "seconds_per_batch", "max_neighbours"):
            if key in log:
                errors[{"wall_time_s": "train_wall_time_s"}.get(key, key)] = log[key]

        try:
            columns = parse_lcurve(self._read(LCURVE_FILE)) if LCURVE_FILE in names else {}
        except ValueError as exception:
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(detail=f"unreadable {LCURVE_FILE}: {exception}")
        if columns:
            lcurve = orm.ArrayData()
            for name, values in columns.items():
                lcurve.set_array(name, values)
            # Column prefixes -> units; rmse_trn/rmse_val are the prefactor-weighted loss, without a unit.
            lcurve.base.attributes.set(
                "units", {"rmse_e": "eV/atom", "rmse_f": "eV/A", "rmse_v": "eV/atom", "rmse": "loss", "lr": "-"}
            )
            self.out("lcurve", lcurve)
            errors["lcurve_final"] = lcurve_final(columns)
        divergence = lcurve_divergence(columns) if columns else None
        if divergence:
            self.out("errors", orm.Dict(json_safe(errors)))
            return self.exit_codes.ERROR_TRAINING_DIVERGED.format(reason=divergence)

        if MODEL_FILE not in names:
            last_step = int(columns["step"][-1]) if columns and columns["step"].size else -1
            walltime = self.node.process_class.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status
            if self.node.exit_status == walltime:
                return self.exit_codes.ERROR_OUT_OF_WALLTIME.format(step=last_step, target=settings["numb_steps"])
            if log["error"]:
                detail = f"dp train failed: {log['error']}"
            elif not log["finished"]:
                detail = f"dp train stopped at step {last_step} of {settings['numb_steps']} without an error (killed?)"
            else:
                detail = "dp freeze failed. " + self._tail(names, FREEZE_LOG)
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(detail=detail)

        try:
            model = self._model(settings, log)
        except (ValueError, FileNotFoundError) as exception:
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(
                detail=f"{MODEL_FILE} is not a usable model: {exception}"
            )
        self.out("model", model)

        test_failure = None
        if "test" in self.node.inputs:
            try:
                test = parse_dp_test(self._read(TEST_LOG)) if TEST_LOG in names else None
            except ValueError as exception:
                test, test_failure = None, f"{exception}. {self._tail(names, TEST_LOG)}"
            if test is None and test_failure is None:
                test_failure = f"no {TEST_LOG}"
            if test is not None:
                errors["test"] = test
                errors["n_test_frames"] = test["n_frames"]
                errors.update({f"test_{key}": test[key] for key in HEADLINE_TEST_KEYS if key in test})
        self.out("errors", orm.Dict(json_safe(errors)))
        if test_failure:
            return self.exit_codes.ERROR_TEST_FAILED.format(detail=test_failure)
        return None

    def _model(self, settings: dict, log: dict) -> PotentialData:
        inputs = self.node.inputs
        deepmd_input = json.loads(self.node.base.repository.get_object_content(INPUT_FILE))
        lineage = {
            "method": "deepmd_train",
            "calcjob_uuid": self.node.uuid,
            "train": dataset_record(inputs.train),
            "valid": dataset_record(inputs.valid) if "valid" in inputs else {"reused": "train"},
            "test": dataset_record(inputs.test) if "test" in inputs else None,
            "settings": settings,
            # What the settings resolved to for these data (type_map, sel), and everything dp was given.
            "type_map": deepmd_input["model"]["type_map"],
            "sel": deepmd_input["model"]["descriptor"]["sel"],
            "deepmd_input": deepmd_input,
            "deepmd_kit_version": log.get("deepmd_version"),
            "backend": log.get("backend", "TensorFlow"),
            "command": "dp --tf train input.json && dp --tf freeze -o model.pb",
        }
        train_label = inputs.train.label or inputs.train.uuid[:8]
        label = f"DeePMD se_e2_a ({settings['numb_steps']} steps) on {train_label}"
        # from_model_file checks and describes a file on disk; the retrieved copy lives in the repository.
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / MODEL_FILE
            path.write_bytes(self._read(MODEL_FILE, mode="rb"))
            model = PotentialData.from_model_file("deepmd", path, label=label, lineage=json_safe(lineage))
        # The temporary path means nothing once the directory is gone; the file is the node's own.
        info = {key: value for key, value in model.model_info.items() if key != "path"}
        model.base.attributes.set("model_info", info)
        return model
