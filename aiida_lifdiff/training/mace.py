"""MACE training with mace-torch's ``mace_run_train``: flags, their checks and the output parsers (no AiiDA imports).

The ``lifdiff.mace_train`` CalcJob stages the data sets (and a foundation model) as local files and runs
``mace_run_train`` with the arguments of :func:`mace_train_arguments`; everything it needs to know about
mace-torch 0.3.16 lives here so it can be used and tested without a profile.

Settings are one flat dict of ``mace_run_train`` flags (names without ``--``); :data:`DEFAULT_FLAGS` is the tiny
CPU model of ``tests/data/models`` (``scripts/make_tiny_models.py``: 16x0e, max_L 0, r_max 4.5, float32) minus the
file names and the stage-two (SWA) settings, which are easy to add and only pay off over many epochs.

Three modes (``scratch``, ``naive_finetune``, ``multihead_finetune``). Offline facts of mace-torch 0.3.16 that
:func:`validate_mace_settings` enforces (read in ``mace/cli/run_train.py``, ``mace/tools/multihead_tools.py`` and
``mace/calculators/foundations_models.py``):

* ``--foundation_model`` with a name (``small``, ``medium``, ``large``, ``medium-mpa-0``, ``small-omat-0``,
  ``mh-1``, ``small_off``, ``mace_omol``, ``polar-1-s`` ...) makes mace-torch download the weights at run time
  (``mace_mp``/``mace_off``/``mace_omol``/``mace_polar``); only a file path is loaded with ``torch.load``. So the
  foundation must come as a node and the CalcJob alone writes the flag, with a local file name.
* ``--pt_train_file`` ``mp``, ``omat``, ``matpes_pbe`` or ``matpes_r2scan`` (and the foundation names ``small``,
  ``medium``, ``large`` in multihead mode) download a replay set (``assemble_replay_data``). The replay set must
  come as a data set node.
* A local foundation without ``--pt_train_file`` silently turns multihead fine-tuning into naive fine-tuning
  (a warning in the log only); ``multihead_finetune`` without a replay set is refused here instead.
* ``--heads`` (per-head train files, possibly ``mp``), ``--config`` (a YAML of flags), ``--statistics_file``,
  ``--les_arguments``, ``--test_dir``, ``--pt_valid_file`` and ``E0s=<file>.json`` name files the CalcJob does
  not stage; ``--wandb`` needs the network; ``--distributed`` needs a launcher the CalcJob does not set up.
* Multihead fine-tuning asserts ``E0s != average``; ``E0s=foundation``/``estimated`` assert a foundation.

Outputs of a run named ``name`` with seed ``seed`` (``tag = name_run-seed``): the model ``name.model`` (and
``name_stagetwo.model`` with ``--swa``, the final one then; ``*_compiled.model`` are TorchScript copies), the
learning curves ``results/tag_train.txt`` (JSON lines: ``mode: eval`` lines per validation head and epoch with
loss, rmse/mae of energy (per atom) and forces in eV units; ``mode: opt`` lines per batch with the loss), the log
``logs/tag.log`` with the final error tables. The tables are printed only as text (0.1 meV resolution), so
:func:`parse_error_tables` reads the text; the curves come from the JSON lines.

Measured through the CalcJob (``tests/test_mace_train.py``, 1 CPU thread, tiny-mace foundation, 40 frames
relabelled with Tosi-Fumi + a Morse term, 15 held-out test frames): naive fine-tuning, 8 epochs, ~30 s of
training: test force RMSE 195 -> 16 meV/A, energy 55 -> 2.5 meV/atom; multihead fine-tuning with a local replay
set of 30 Tosi-Fumi frames, 6 epochs (``force_mh_ft_lr=True``: mace otherwise forces lr=1e-4 in multihead mode):
195 -> 20 meV/A.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import numpy as np

#: ``--name`` of every run; the output file names follow from it.
RUN_NAME = "mace"
MODES = ("scratch", "naive_finetune", "multihead_finetune")

#: The default flags: a small CPU training (the tiny model of tests/data/models without stage two).
DEFAULT_FLAGS: dict[str, Any] = {
    "model": "ScaleShiftMACE",
    # The canonical keys of DatasetData's extxyz. mace warns that 'energy'/'forces' clash with ASE's calculator
    # results; the files are read with ASE's SinglePointCalculator mapping, which gives the right values here
    # (the foundation in tests/data/models was trained with exactly these keys).
    "energy_key": "energy",
    "forces_key": "forces",
    "stress_key": "stress",
    "hidden_irreps": "16x0e",
    "max_L": 0,
    "correlation": 2,
    "r_max": 4.5,
    "max_ell": 2,
    "num_radial_basis": 6,
    "num_interactions": 2,
    "MLP_irreps": "16x0e",
    "radial_MLP": "[32,32]",
    "loss": "weighted",
    "energy_weight": 1.0,
    "forces_weight": 100.0,
    "batch_size": 5,
    "valid_batch_size": 20,
    # Used only when no validation set is given.
    "valid_fraction": 0.1,
    "lr": 0.01,
    "max_num_epochs": 24,
    "scheduler_patience": 3,
    "patience": 50,
    "eval_interval": 4,
    "ema": True,
    "ema_decay": 0.99,
    "default_dtype": "float32",
    "device": "cpu",
    "seed": 7,
    "num_workers": 0,
    "plot": False,
}

#: Flags that name the staged files; only the CalcJob writes them (see :func:`mace_train_arguments`).
FILE_FLAGS = ("train_file", "valid_file", "test_file", "foundation_model", "pt_train_file")
#: Flags that fix where mace writes; the CalcJob relies on the defaults under the working directory.
DIRECTORY_FLAGS = ("name", "work_dir", "model_dir", "log_dir", "checkpoints_dir", "results_dir", "downloads_dir")

#: mace-torch 0.3.16 arguments without a value (argparse store_true/store_false), with the value of the flag in our
#: dict that makes the bare switch appear. The opposite value is expressed by leaving the switch out.
SWITCHES: dict[str, bool] = {
    "distributed": True,
    "pair_repulsion": True,
    "amsgrad": True,
    "swa": True,
    "stage_two": True,
    "lbfgs": True,
    "ema": True,
    "keep_checkpoints": True,
    "save_all_checkpoints": True,
    "restart_latest": True,
    "save_cpu": True,
    "dry_run": True,
    "wandb": True,
    # store_false: `--foundation_model_readout` switches the foundation's readout OFF.
    "foundation_model_readout": False,
    # store_false into allow_random_padding_pt: the flag itself says "disallow".
    "disallow_random_padding_pt": True,
}
#: Switches whose argparse default already is the value that makes them appear: the other value cannot be asked for.
_SWITCHES_DEFAULT_ON = ("amsgrad",)

#: Value choices checked before submission (argparse would only refuse them at run time).
CHOICES: dict[str, tuple[str, ...]] = {
    "device": ("cpu", "cuda", "mps", "xpu"),
    "default_dtype": ("float32", "float64"),
}

#: Replay-set names that mace-torch downloads (mace/tools/multihead_tools.py: assemble_replay_data).
REPLAY_DOWNLOAD_NAMES = ("mp", "omat", "matpes_pbe", "matpes_r2scan")
#: Foundation names that mace_run_train resolves by downloading (mace_mp_urls, the mace-off sizes, mace_omol,
#: polar_model_names in mace-torch 0.3.16). Refusing the flag covers them all; the list makes the message precise.
FOUNDATION_DOWNLOAD_NAMES = (
    "small",
    "medium",
    "large",
    "small-0b",
    "medium-0b",
    "small-0b2",
    "medium-0b2",
    "large-0b2",
    "medium-0b3",
    "medium-mpa-0",
    "small-omat-0",
    "medium-omat-0",
    "mace-matpes-pbe-0",
    "mace-matpes-r2scan-0",
    "mh-0",
    "mh-1",
    "small_off",
    "medium_off",
    "large_off",
    "mace_omol",
    "polar-1-s",
    "polar-1-m",
    "polar-1-l",
)

#: Flags refused with the reason (besides FILE_FLAGS and DIRECTORY_FLAGS).
_REFUSED_FLAGS = {
    "multiheads_finetuning": "it is set from `mode` (naive_finetune: False, multihead_finetune: True)",
    "heads": "per-head data files are not staged by the CalcJob (and a head train_file `mp` would download); "
    "use the train/valid/test/replay inputs",
    "config": "a YAML of flags would bypass these checks; put the flags in `parameters`",
    "statistics_file": "the file would not be staged on the computer",
    "les_arguments": "the file would not be staged on the computer",
    "test_dir": "the folder would not be staged on the computer; use the `test` input",
    "pt_valid_file": "the file would not be staged on the computer; mace splits the replay set by valid_fraction",
    "wandb": "Weights and Biases needs the network, which compute nodes may not have",
    "distributed": "the CalcJob starts a single process without a distributed launcher",
    "dry_run": "a dry run writes no model",
    "help": "it prints the usage and exits",
    "h": "it prints the usage and exits",
}

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ----------------------------------------------------------------------------------------------- settings


def training_flags(parameters: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """The flags of a run: :data:`DEFAULT_FLAGS`, then ``parameters``, then what ``mode`` fixes.

    Fine-tuning defaults ``E0s`` to ``foundation`` (the foundation's isolated-atom energies). ``save_cpu`` is
    always on so the model file loads on a CPU-only machine whatever device trained it.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    flags = dict(DEFAULT_FLAGS)
    if mode != "scratch":
        flags["E0s"] = "foundation"
    flags.update(parameters)
    if isinstance(flags.get("E0s"), Mapping):
        flags["E0s"] = e0s_string(flags["E0s"])
    if mode != "scratch":
        flags["multiheads_finetuning"] = mode == "multihead_finetune"
    flags["save_cpu"] = True
    return flags


def e0s_string(energies: Mapping[Any, float]) -> str:
    """mace's ``--E0s`` dict string (``{3: -3.85, 9: -6.96}``) from {atomic number or symbol: eV}.

    An AiiDA Dict only has string keys, so ``{"3": -3.85}`` and ``{"Li": -3.85}`` are accepted too.
    """
    from ase.data import atomic_numbers

    items = {}
    for key, value in energies.items():
        if isinstance(key, str) and key in atomic_numbers:
            number = atomic_numbers[key]
        else:
            try:
                number = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"E0s keys must be atomic numbers or chemical symbols, got {key!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"E0s values must be finite numbers (eV), got {value!r} for {key!r}")
        items[number] = float(value)
    return "{" + ", ".join(f"{number}: {items[number]!r}" for number in sorted(items)) + "}"


def validate_mace_settings(
    flags: Mapping[str, Any],
    *,
    has_foundation: bool,
    has_replay: bool,
    mode: str,
    species: Iterable[str] | None = None,
) -> str | None:
    """A message if ``flags`` (the user's, before defaults) cannot run offline with these inputs, else None.

    Refuses: flags that name files or folders (set by the CalcJob), a foundation or replay set given by name (they
    would be downloaded), settings that conflict with ``mode`` and the inputs (e.g. multihead fine-tuning without a
    replay set, which mace would silently turn into naive fine-tuning), E0s that miss one of ``species`` (the
    chemical symbols of the data, when given), flag names that are not identifiers and values that are not
    str/int/float/bool.
    """
    if mode not in MODES:
        return f"unknown mode {mode!r}; expected one of {', '.join(MODES)}"
    message = check_flags(flags)
    if message:
        return message

    if mode == "scratch" and has_foundation:
        return "mode 'scratch' trains a new model: do not pass a foundation (or use mode 'naive_finetune')"
    if mode != "scratch" and not has_foundation:
        return f"mode {mode!r} needs a foundation model (a PotentialData of kind mace, a local file)"
    if mode == "multihead_finetune" and not has_replay:
        return (
            "mode 'multihead_finetune' needs a local replay data set (input `replay`): without --pt_train_file "
            "mace-torch silently switches multihead fine-tuning off (a warning in its log only), and replay sets "
            "by name (mp, omat, matpes_*) are downloaded at run time"
        )
    if mode != "multihead_finetune" and has_replay:
        return f"a replay data set is only used by mode 'multihead_finetune', not {mode!r}"

    effective = training_flags(flags, mode)
    e0s = effective.get("E0s")
    if e0s is None:
        return (
            "mode 'scratch' needs E0s: the isolated-atom energies as a dict string like \"{3: -3.85, 9: -6.96}\" "
            "(atomic number: eV), or 'average' (least squares over the training set, degenerate when every frame "
            "has the same composition)"
        )
    e0s_key = str(e0s).strip().lower()
    if e0s_key in ("foundation", "estimated") and not has_foundation:
        return f"E0s={e0s} needs a foundation model"
    if e0s_key == "average" and mode == "multihead_finetune":
        return "mace-torch refuses E0s=average for multihead fine-tuning; use E0s=foundation or a dict"
    if e0s_key.endswith(".json"):
        return f"E0s={e0s}: the json file would not be staged on the computer; give the dict itself"
    if e0s_key not in ("foundation", "estimated", "average"):
        try:
            energies = ast.literal_eval(str(e0s).strip())
            if not isinstance(energies, dict):
                raise ValueError("not a dict")
            covered = {int(number) for number in energies}
        except (ValueError, TypeError, SyntaxError):
            return f"E0s must be 'foundation', 'estimated', 'average' or a dict {{atomic number: eV}}, got {e0s!r}"
        from ase.data import atomic_numbers

        missing = sorted(set(species or ()) - {s for s in atomic_numbers if atomic_numbers[s] in covered})
        if missing:
            return f"E0s {e0s} has no energy for {', '.join(missing)} (atomic numbers as keys)"

    for key, choices in CHOICES.items():
        if key in effective and effective[key] not in choices:
            return f"{key} must be one of {', '.join(choices)}, got {effective[key]!r}"
    for key in ("max_num_epochs", "batch_size", "valid_batch_size", "eval_interval", "seed"):
        value = effective.get(key)
        if value is not None and (not _is_int(value) or (key != "seed" and value < 1)):
            return f"{key} must be a positive integer, got {value!r}"
    start = effective.get("start_swa", effective.get("start_stage_two"))
    if start is not None:
        if not _is_int(start) or start >= effective["max_num_epochs"]:
            return (
                f"start_swa={start} is not below max_num_epochs={effective['max_num_epochs']}: stage two would "
                "never start"
            )
    return None


def check_flags(flags: Mapping[str, Any]) -> str | None:
    """The checks of :func:`validate_mace_settings` that need no inputs: names, value types, refused flags."""
    if not isinstance(flags, Mapping):
        return f"the mace flags must be a dict, got {type(flags).__name__}"
    for key, value in flags.items():
        message = _check_flag(key, value)
        if message:
            return message
    return None


def _check_flag(key: Any, value: Any) -> str | None:
    if not isinstance(key, str) or not _IDENTIFIER.match(key):
        return f"mace flag names are identifiers without '--' (e.g. 'max_num_epochs'), got {key!r}"
    if key == "foundation_model":
        named = f" ({value!r} is a name mace-torch downloads)" if str(value) in FOUNDATION_DOWNLOAD_NAMES else ""
        return (
            f"do not set foundation_model in the flags{named}: pass the foundation as the `foundation` input "
            "(a PotentialData of kind mace; PotentialData.from_mace_foundation(name) resolves a name from the "
            "local cache)"
        )
    if key == "pt_train_file":
        named = f" ({value!r} is downloaded by mace-torch)" if str(value) in REPLAY_DOWNLOAD_NAMES else ""
        return f"do not set pt_train_file in the flags{named}: pass the replay set as the `replay` input (DatasetData)"
    if key in FILE_FLAGS:
        return f"do not set {key} in the flags: the CalcJob writes it for its data set inputs"
    if key in DIRECTORY_FLAGS:
        return f"do not set {key} in the flags: the CalcJob fixes the run name and output folders"
    if key in _REFUSED_FLAGS or key.startswith("wandb"):
        return f"flag {key} is not allowed: {_REFUSED_FLAGS.get(key, _REFUSED_FLAGS['wandb'])}"
    if key == "E0s" and isinstance(value, Mapping):
        try:
            e0s_string(value)
        except ValueError as exception:
            return str(exception)
        return None
    if isinstance(value, bool):
        if key in _SWITCHES_DEFAULT_ON and value is not SWITCHES[key]:
            return f"mace_run_train cannot switch {key} off (its default is on and the flag only switches it on)"
        return None
    if not isinstance(value, (str, int, float)):
        return f"flag {key}: values must be str, int, float or bool, got {type(value).__name__}"
    if key in SWITCHES:
        return f"flag {key} is a switch: give True or False, got {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"flag {key}: {value} is not a finite number"
    if isinstance(value, str):
        if "://" in value:
            return f"flag {key}={value!r} looks like a URL: nothing is downloaded at run time"
        if "\n" in value or "\0" in value:
            return f"flag {key}: the value must be a single line"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def mace_train_arguments(flags: Mapping[str, Any], files: Mapping[str, str], name: str = RUN_NAME) -> list[str]:
    """The ``mace_run_train`` command-line arguments for ``flags`` and the staged ``files``.

    ``files`` maps flags of :data:`FILE_FLAGS` to paths relative to the working directory. Values are written as
    ``--key=value``; booleans of :data:`SWITCHES` become the bare switch (or nothing), other booleans
    ``--key=True``/``--key=False`` (mace's str2bool). Raises ``ValueError`` for a file flag in ``flags`` or an
    unknown key in ``files``.
    """
    unknown = set(files) - set(FILE_FLAGS)
    if unknown:
        raise ValueError(f"unknown file flags {sorted(unknown)}; expected some of {', '.join(FILE_FLAGS)}")
    clash = (set(FILE_FLAGS) | set(DIRECTORY_FLAGS)) & set(flags)
    if clash:
        raise ValueError(f"flags {sorted(clash)} are set by the CalcJob, not by the parameters")
    arguments = [f"--name={name}"]
    arguments += [f"--{key}={files[key]}" for key in FILE_FLAGS if files.get(key)]
    for key, value in flags.items():
        if isinstance(value, bool):
            if key in SWITCHES:
                if value is SWITCHES[key]:
                    arguments.append(f"--{key}")
            else:
                arguments.append(f"--{key}={value}")
        elif isinstance(value, float):
            arguments.append(f"--{key}={value!r}")
        else:
            arguments.append(f"--{key}={value}")
    return arguments


def run_tag(flags: Mapping[str, Any], name: str = RUN_NAME) -> str:
    """mace's tag of a run (``name_run-seed``), the stem of its log, results and checkpoint files."""
    return f"{name}_run-{int(flags.get('seed', 123))}"


def output_files(flags: Mapping[str, Any], name: str = RUN_NAME) -> dict[str, str]:
    """Paths (relative to the working directory) of what mace_run_train writes for ``flags``."""
    tag = run_tag(flags, name)
    return {
        "model": f"{name}.model",
        "model_stagetwo": f"{name}_stagetwo.model",
        "log": f"logs/{tag}.log",
        "results": f"results/{tag}_train.txt",
    }


def final_model_file(available: Iterable[str], name: str = RUN_NAME) -> str | None:
    """The model mace-torch saved last among ``available`` file names: stage two's if it ran, else stage one's."""
    available = set(available)
    for candidate in (f"{name}_stagetwo.model", f"{name}.model"):
        if candidate in available:
            return candidate
    return None


# ----------------------------------------------------------------------------------------------- outputs

#: Table column header -> key of :func:`parse_error_tables` (units in the key; mace prints meV and percent).
_COLUMNS = {
    "RMSE E / meV / atom": "rmse_e_meV_per_atom",
    "RMSE F / meV / A": "rmse_f_meV_per_A",
    "relative F RMSE %": "rel_rmse_f_percent",
    "rel F RMSE %": "rel_rmse_f_percent",
    "RMSE Stress (Virials) / meV / A (A^3)": "rmse_stress_meV_per_A3",
    "MAE E / meV / atom": "mae_e_meV_per_atom",
    "MAE F / meV / A": "mae_f_meV_per_A",
    "relative F MAE %": "rel_mae_f_percent",
    "MAE Stress (Virials) / meV / A (A^3)": "mae_stress_meV_per_A3",
    "RMSE E / meV": "rmse_e_meV",
    "MAE E / meV": "mae_e_meV",
}
_TABLE_HEADINGS = {"train_valid": "Error-table on TRAIN and VALID:", "test": "Error-table on TEST:"}
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) (\w+): (.*)$")


def parse_learning_curves(text: str) -> dict[str, dict[str, np.ndarray]]:
    """The learning curves in mace's results file (``results/<tag>_train.txt``, JSON lines).

    Returns ``{head: {metric: array}}`` for the validation evaluations of each head (``epoch`` -1 is the
    evaluation before training; metrics in mace's units: eV, eV/atom, eV/A, eV/A^3, relative ones in percent)
    and ``{"train": {"epoch": ..., "loss": ...}}`` with the mean optimisation loss of each epoch. Lines that are
    not JSON (a line cut by a killed job) are skipped; NaN losses are kept as NaN.
    """
    evals: dict[str, list[dict]] = {}
    train: dict[int, list[float]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        epoch = record.get("epoch")
        epoch = -1 if epoch is None else int(epoch)
        if record.get("mode") == "eval":
            evals.setdefault(str(record.get("head", "Default")), []).append(record | {"epoch": epoch})
        elif record.get("mode") == "opt" and "loss" in record:
            train.setdefault(epoch, []).append(_as_float(record["loss"]))
    curves: dict[str, dict[str, np.ndarray]] = {}
    for head, records in evals.items():
        keys = [
            key
            for key in records[0]
            if key not in ("mode", "head") and all(_is_number_or_none(r.get(key)) for r in records)
        ]
        curves[head] = {key: np.array([_as_float(r.get(key)) for r in records], dtype=float) for key in keys}
        curves[head]["epoch"] = curves[head]["epoch"].astype(int)
    if train:
        epochs = sorted(train)
        curves["train"] = {
            "epoch": np.array(epochs, dtype=int),
            "loss": np.array([float(np.mean(train[e])) for e in epochs], dtype=float),
        }
    return curves


def _is_number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _as_float(value: Any) -> float:
    return math.nan if value is None else float(value)


def parse_error_tables(
    log_text: str, head: str = "Default", atoms_per_config_type: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The final error tables of a mace log: ``{"train": {...}, "valid": {...}, "test": {...}, ...}``.

    mace prints the tables once per evaluated model (stage one, then stage two with ``--swa``); the last ones
    describe the model that was saved last. Each entry maps metrics to numbers in the printed units (keys like
    ``rmse_e_meV_per_atom``, ``rmse_f_meV_per_A``, ``rel_rmse_f_percent``, ``rmse_stress_meV_per_A3``; MAE keys
    with ``--error_table=PerAtomMAE``). mace splits the test set by ``config_type``: ``test_by_config_type`` holds
    those rows (with ``n_frames`` from the log) and ``test`` their combination (see :func:`combine_error_rows`;
    ``atoms_per_config_type`` weights the force errors exactly when the frames differ in size).
    Rows of other heads land under ``other_heads``. Missing tables give missing keys.
    """
    result: dict[str, Any] = {}
    suffix = f"_{head}"
    train_valid = _last_table(log_text, _TABLE_HEADINGS["train_valid"])
    for row_name, metrics in train_valid.items():
        for subset in ("train", "valid"):
            if row_name == f"{subset}{suffix}":
                result[subset] = metrics
                break
        else:
            result.setdefault("other_heads", {})[row_name] = metrics
    test = _last_table(log_text, _TABLE_HEADINGS["test"])
    if test:
        counts = parse_test_counts(log_text)
        by_type = {}
        for row_name, metrics in test.items():
            if not row_name.endswith(suffix):
                result.setdefault("other_heads", {})[row_name] = metrics
                continue
            entry = dict(metrics)
            if row_name in counts:
                entry["n_frames"] = counts[row_name]
            by_type[row_name[: -len(suffix)]] = entry
        if by_type:
            result["test_by_config_type"] = by_type
            atoms = atoms_per_config_type or {}
            result["test"] = combine_error_rows(by_type, atoms if set(by_type) <= set(atoms) else None)
    return result


def parse_test_counts(log_text: str) -> dict[str, int]:
    """Frames per test group (``<config_type>_<head>``) from mace's 'Total number of configurations' lines."""
    counts: dict[str, int] = {}
    for match in re.finditer(r"tests=\[([^\]]*)\]", log_text):
        for item in match.group(1).split(","):
            if ":" in item:
                group, _, count = item.strip().rpartition(":")
                try:
                    counts[group.strip()] = int(count)
                except ValueError:
                    continue
    return counts


def combine_error_rows(
    rows: Mapping[str, Mapping[str, float]], atoms_per_group: Mapping[str, int] | None = None
) -> dict[str, float]:
    """One set of errors from rows of disjoint groups of frames (mace's per-config_type test rows).

    RMSEs combine as the root of the weighted mean square, MAEs as the weighted mean. Energy metrics are
    weighted by frames (``n_frames`` of each row), force metrics by atoms (``atoms_per_group``, or frames when
    not given: exact when all frames have the same size). Relative metrics are left out (they need the
    reference magnitudes). A single row is returned as it is.
    """
    rows = {name: dict(row) for name, row in rows.items()}
    if len(rows) == 1:
        return dict(next(iter(rows.values())))
    combined: dict[str, float] = {}
    keys = set.intersection(*(set(row) for row in rows.values())) - {"n_frames"}
    frames = {name: float(row.get("n_frames", 1)) for name, row in rows.items()}
    atoms = {name: float(atoms_per_group[name]) for name in rows} if atoms_per_group else frames
    for key in sorted(keys):
        if key.startswith("rel_"):
            continue
        # Forces are averaged over atoms; energies (per atom or total) and stresses over frames.
        weights = atoms if "_f_" in key else frames
        total = sum(weights.values())
        values = {name: float(row[key]) for name, row in rows.items()}
        if key.startswith("rmse"):
            combined[key] = math.sqrt(sum(weights[n] * values[n] ** 2 for n in rows) / total)
        else:
            combined[key] = sum(weights[n] * values[n] for n in rows) / total
    combined["n_frames"] = int(sum(frames.values()))
    return combined


def _last_table(log_text: str, heading: str) -> dict[str, dict[str, float]]:
    position = log_text.rfind(heading)
    if position < 0:
        return {}
    lines = log_text[position + len(heading) :].splitlines()[1:]
    rows: list[list[str]] = []
    for line in lines:
        line = line.strip()
        if line.startswith("+"):
            continue
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    if len(rows) < 2:
        return {}
    header, *body = rows
    keys = [_COLUMNS.get(name, _slug(name)) for name in header[1:]]
    table = {}
    for row in body:
        table[row[0]] = {key: _as_float_text(cell) for key, cell in zip(keys, row[1:])}
    return table


def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def _as_float_text(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return math.nan


def parse_log(log_text: str) -> dict[str, Any]:
    """What a mace_run_train log says about the run (beyond the error tables).

    Keys: ``mace_version``, ``completed`` (the log ends with 'Done'), ``training_completed``, ``wall_time_s``
    (first to last log line), ``training_time_s`` ('Started training' to 'Training complete', None if it did
    not complete), ``last_epoch`` (of the validation lines), ``nan_loss`` (a validation loss that is NaN or
    infinite), ``multihead`` (multihead mode was really used), ``multihead_disabled`` (mace switched it off),
    ``errors`` (the lines logged at ERROR level).
    """
    times: list[datetime] = []
    summary: dict[str, Any] = {
        "mace_version": None,
        "completed": False,
        "training_completed": False,
        "wall_time_s": None,
        "training_time_s": None,
        "last_epoch": None,
        "nan_loss": False,
        "multihead": False,
        "multihead_disabled": False,
        "errors": [],
    }
    started = finished = None
    for line in log_text.splitlines():
        match = _LOG_TIME.match(line)
        if not match:
            continue
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f")
        level, message = match.group(2), match.group(3)
        times.append(stamp)
        if level == "ERROR":
            summary["errors"].append(message)
        if message.startswith("MACE version:"):
            summary["mace_version"] = message.split(":", 1)[1].strip()
        elif message.startswith("Started training"):
            started = stamp
        elif message.startswith("Training complete"):
            finished = stamp
            summary["training_completed"] = True
        elif message.strip() == "Done":
            summary["completed"] = True
        elif "Using multiheads finetuning mode" in message:
            summary["multihead"] = True
        elif "need to provied a path to a pretraining file" in message or "need to provide a path" in message:
            summary["multihead_disabled"] = True
        epoch = re.match(r"Epoch (\d+): .*loss=\s*([^,\s]+)", message)
        if epoch:
            summary["last_epoch"] = int(epoch.group(1))
            if not math.isfinite(_as_float_text(epoch.group(2))):
                summary["nan_loss"] = True
    if times:
        summary["wall_time_s"] = (times[-1] - times[0]).total_seconds()
    if started and finished:
        summary["training_time_s"] = (finished - started).total_seconds()
    return summary


def diverged(curves: Mapping[str, Mapping[str, np.ndarray]], log_summary: Mapping[str, Any] | None = None) -> bool:
    """True when a validation or training loss became NaN/infinite (the parameters are then garbage too)."""
    if log_summary and log_summary.get("nan_loss"):
        return True
    for values in curves.values():
        loss = values.get("loss")
        if loss is not None and len(loss) and not np.all(np.isfinite(loss)):
            return True
    return False
