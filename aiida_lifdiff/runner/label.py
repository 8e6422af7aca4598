"""``lifdiff-label``: single points (energy, forces, stress) of a set of frames with any potential.

Runs on a compute node (no AiiDA): ``lifdiff-label input.json [--output-dir DIR]``, or
``python -m aiida_lifdiff.runner.label input.json``.

Input (JSON; relative paths are relative to the input file's folder; unknown keys are refused)::

    {"model": {"kind": "mace", "path": "model.model", "head": null}
            | {"kind": "ase", "factory": "package.module:function", "kwargs": {...}}
            | {"kind": "classical", "parameters": "parameters.json",
               "cutoff": 8.0, "kspace_accuracy": 1e-7},
     "frames": "frames.extxyz",                    required; any labels in it are ignored
     "output": "labelled.extxyz",                  default; written in --output-dir
     "device": "cpu" | "cuda" | "cuda:N",          default "cpu"
     "dtype": "float32" | "float64",               default "float64" (MACE weights)
     "batch_size": 16,                             frames per MACE model call (default 16)
     "compute_stress": true}                       default true

Every model may also carry ``"species": ["Li", "F"]``: the elements it covers. Frames with other
elements are refused before anything is evaluated; MACE models and classical parameter tables
name their species themselves, an ASE calculator (``kind: ase``) only through this key.

Engines:

- ``mace``: the model file (or a cached foundation name) is loaded once
  (:func:`aiida_lifdiff.runner.models.open_model`) and evaluated ``batch_size`` frames per call as one
  disconnected graph (:func:`aiida_lifdiff.runner.models.evaluate_structures`).
- ``ase``: ``factory(**kwargs)`` builds ONE calculator that labels the frames one by one (e.g.
  ``aiida_lifdiff.potentials.deepmd:deepmd_calculator`` with ``{"path": "model.pb"}``; ``kwargs`` paths
  are relative to the working directory). Loading a DeePMD graph costs seconds, evaluating it
  milliseconds, hence one calculator for all frames; ASE recomputes whenever the atoms change.
  ``device`` is only checked (CUDA present?): the calculator decides where it computes.
- ``classical``: LAMMPS single points of all frames in one LAMMPS process with Ewald summation
  (:mod:`aiida_lifdiff.engines.lammps_labels`, the procedure that made the test labels); its scratch
  files stay in ``lammps_labels/``. ``device`` and ``dtype`` do not apply (LAMMPS, double precision,
  CPU); cells must be in LAMMPS' restricted-triclinic (lower-triangular) form.

Outputs (in ``--output-dir``, default the current folder):

- ``output`` (``labelled.extxyz``): the frames with their positions, cell and per-frame info (such as
  ``config_type``) unchanged and the new labels under ``energy`` (eV), ``forces`` (eV/A) and, with
  ``compute_stress`` and a model that gives it, ``stress`` (eV/A^3, ASE sign: minus the pressure
  tensor); the canonical form of :mod:`aiida_lifdiff.datasets`. Written only when EVERY frame got
  finite labels, through a temporary file: a file under that name is always complete.
- ``summary.json``: ``exit_code``, ``message``, ``n_frames``, ``n_atoms_total``, ``species``,
  ``seconds`` (labelling wall time once the model or calculator is loaded), ``frames_per_s``, ``wall_s``
  (whole run, imports included), ``model`` (description: kind, file, sha256, settings), ``device``,
  ``dtype``, ``batch_size``, ``stress`` (whether the output has stress), ``failed_frames`` ([{index,
  reason}], 0-based), ``output``, ``versions``. Written for every exit code except 1.

Exit codes (the AiiDA parser maps them):

- 0: every frame labelled.
- 1: unexpected internal error (traceback on stderr; no summary.json).
- 2: bad input (JSON, schema, missing/unreadable frames, parameters or model file, unknown model
  kind, species not covered by the model, a cell LAMMPS would rotate); nothing was evaluated.
  A bad command line also exits 2 (argparse's usage message, no summary.json).
- 3: CUDA requested but ``torch.cuda.is_available()`` is False; nothing was evaluated.
- 4: at least one frame got non-finite energy/forces/stress (e.g. atoms on top of each other) or its
  calculator raised; the frames are named in ``failed_frames`` and the message; no labelled file.
- 5: LAMMPS failed (classical kind); its output tail is in the message; no labelled file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aiida_lifdiff.runner.io import (
    SUMMARY_FILE,
    InputError,
    check_input_keys,
    integer_setting,
    number_setting,
    parse_model_spec,
    read_input_json,
    resolve_path,
    write_json_atomic,
)

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_NO_CUDA = 3
EXIT_NON_FINITE = 4
EXIT_ENGINE_FAILED = 5

OUTPUT_FILE = "labelled.extxyz"
LAMMPS_FOLDER = "lammps_labels"
DEFAULT_BATCH_SIZE = 16
MODEL_KINDS = ("mace", "ase", "classical")

_TOP_KEYS = {"model", "frames", "output", "device", "dtype", "batch_size", "compute_stress"}
#: Frames named in full in a message; the rest are counted (summary.json lists them all).
_MAX_NAMED = 20


@dataclass
class LabelConfig:
    """The validated input of one ``lifdiff-label`` invocation (paths already absolute)."""

    model: dict
    frames: Path
    output: str = OUTPUT_FILE
    device: str = "cpu"
    dtype: str = "float64"
    batch_size: int = DEFAULT_BATCH_SIZE
    compute_stress: bool = True
    species: list[str] | None = None  # what the input says the model covers, if it says
    raw: dict = field(default_factory=dict)


def _parse_species(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(s, str) and s for s in value):
        raise InputError(f"'model.species' must be a non-empty list of element symbols, got {value!r}")
    return sorted(set(value))


def _parse_label_model(spec: Any, base_dir: Path) -> tuple[dict, list[str] | None]:
    if not isinstance(spec, Mapping):
        raise InputError(f"'model' must be an object like {{'kind': 'mace', 'path': ...}}, got {spec!r}")
    spec = dict(spec)
    species = _parse_species(spec.pop("species", None))
    kind = spec.get("kind")
    if kind not in MODEL_KINDS:
        raise InputError(f"'model.kind' must be one of {', '.join(MODEL_KINDS)}, got {kind!r}")
    if kind != "classical":
        return parse_model_spec(spec, base_dir), species
    unknown = set(spec) - {"kind", "parameters", "cutoff", "kspace_accuracy"}
    if unknown:
        raise InputError(f"unknown keys in 'model' (kind classical): {sorted(unknown)}")
    from aiida_lifdiff.engines.lammps_labels import DEFAULT_CUTOFF, DEFAULT_KSPACE_ACCURACY

    name = spec.get("parameters")
    if not isinstance(name, str) or not name.strip():
        raise InputError("'model.parameters' must name the JSON file of the classical parameters")
    path = resolve_path(base_dir, name)
    try:
        parameters = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read the classical parameters {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(parameters, Mapping) or not isinstance(parameters.get("pairs"), Mapping):
        raise InputError(f"{path} is not a classical parameter table (no 'pairs' mapping)")
    accuracy = number_setting(spec, "kspace_accuracy", DEFAULT_KSPACE_ACCURACY)
    if not accuracy < 1:
        raise InputError(f"'model.kspace_accuracy' must be a relative accuracy in (0, 1), got {accuracy!r}")
    own = parameters.get("species") or sorted({s for pair in parameters["pairs"] for s in str(pair).split("-")})
    model = {
        "kind": "classical",
        "parameters": str(path),
        "table": dict(parameters),
        "species_order": list(own),
        "cutoff": number_setting(spec, "cutoff", DEFAULT_CUTOFF),
        "kspace_accuracy": accuracy,
    }
    return model, species if species is not None else sorted(set(own))


def parse_input(data: Any, base_dir: str | os.PathLike = ".") -> LabelConfig:
    """Validate the input document; relative paths are taken relative to ``base_dir``."""
    base = Path(base_dir)
    check_input_keys(data, _TOP_KEYS, ("model", "frames"))
    device = data.get("device", "cpu")
    if not isinstance(device, str) or not re.match(r"^(cpu|cuda(:\d+)?)$", device):
        raise InputError(f"'device' must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    dtype = data.get("dtype", "float64")
    if dtype not in ("float32", "float64"):
        raise InputError(f"'dtype' must be 'float32' or 'float64', got {dtype!r}")
    compute_stress = data.get("compute_stress", True)
    if not isinstance(compute_stress, bool):
        raise InputError(f"'compute_stress' must be true or false, got {compute_stress!r}")
    frames = data["frames"]
    if not isinstance(frames, str) or not frames.strip():
        raise InputError(f"'frames' must be an extxyz file name, got {frames!r}")
    frames_path = resolve_path(base, frames)
    if not frames_path.is_file():
        raise InputError(f"frames file {frames_path} does not exist")
    output = data.get("output", OUTPUT_FILE)
    if not isinstance(output, str) or not output.strip() or Path(output).name in (SUMMARY_FILE, ""):
        raise InputError(f"'output' must be a file name other than {SUMMARY_FILE}, got {output!r}")
    model, species = _parse_label_model(data["model"], base)
    return LabelConfig(
        model=model,
        frames=frames_path,
        output=output,
        device=device,
        dtype=dtype,
        batch_size=integer_setting(data, "batch_size", DEFAULT_BATCH_SIZE, minimum=1),
        compute_stress=compute_stress,
        species=species,
        raw=dict(data),
    )


def load_input(path: str | os.PathLike) -> LabelConfig:
    """Read and validate an input JSON file; relative paths in it are relative to its folder."""
    return parse_input(*read_input_json(path))


def read_frames(path: Path) -> list:
    """The frames of an extxyz file (labels dropped: only structures matter here)."""
    from aiida_lifdiff.datasets import DatasetError, read_extxyz

    try:
        frames = read_extxyz(path)
    except DatasetError as exc:
        raise InputError(str(exc)) from exc
    for frame in frames:
        frame.calc = None
    return frames


def check_species(frames: Sequence[Any], covered: Sequence[str] | None, what: str) -> None:
    """InputError naming the frames' elements the model lacks (nothing to check without ``covered``)."""
    if covered is None:
        return
    present = sorted({symbol for frame in frames for symbol in frame.get_chemical_symbols()})
    missing = sorted(set(present) - set(covered))
    if missing:
        first = next(i for i, frame in enumerate(frames) if set(frame.get_chemical_symbols()) & set(missing))
        raise InputError(
            f"the frames contain {missing} (first in frame {first}; all species {present}) but {what} covers only "
            f"{sorted(covered)}"
        )


def _voigt(stress: np.ndarray) -> np.ndarray:
    """ASE Voigt order xx yy zz yz xz xy from a 3x3 tensor (or a Voigt vector as is)."""
    stress = np.asarray(stress, dtype=float)
    if stress.shape == (3, 3):
        return stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return stress.reshape(6)


def _non_finite(result: Mapping[str, Any]) -> str | None:
    bad = [key for key in ("energy", "forces", "stress") if key in result and not np.all(np.isfinite(result[key]))]
    return f"non-finite {', '.join(bad)}" if bad else None


# -- engines ----------------------------------------------------------------------------------
# Each returns one entry per frame: a dict of labels, or None with a reason in ``failures``.


def _label_torch_batched(model: Any, frames: list, config: LabelConfig, failures: dict[int, str]) -> list:
    from aiida_lifdiff.runner.models import ModelError, evaluate_structures

    results: list = []
    size = config.batch_size
    for start in range(0, len(frames), size):
        batch = frames[start : start + size]
        try:
            results += evaluate_structures(model, batch, compute_stress=config.compute_stress)
        except ModelError:
            # One bad frame fails the whole batched call: redo the batch frame by frame to name it.
            for offset, frame in enumerate(batch):
                try:
                    results += evaluate_structures(model, [frame], compute_stress=config.compute_stress)
                except ModelError as exc:
                    results.append(None)
                    failures[start + offset] = str(exc)
    return results


def _label_ase(calculator: Any, frames: list, config: LabelConfig, failures: dict[int, str]) -> list:
    from ase.calculators.calculator import PropertyNotImplementedError

    results: list = []
    for index, frame in enumerate(frames):
        atoms = frame.copy()
        atoms.calc = calculator
        try:
            item: dict[str, Any] = {
                "energy": float(atoms.get_potential_energy()),
                "forces": np.array(atoms.get_forces(), dtype=float),
            }
            if config.compute_stress:
                try:
                    item["stress"] = _voigt(atoms.get_stress(voigt=False))
                except (PropertyNotImplementedError, NotImplementedError):
                    pass  # the calculator has no stress: no frame will carry one
        except Exception as exc:  # a calculator error fails this frame only
            results.append(None)
            failures[index] = f"calculator error: {type(exc).__name__}: {exc}"
            continue
        results.append(item)
    return results


def _label_classical(config: LabelConfig, frames: list, output_dir: Path) -> tuple[list, str]:
    from aiida_lifdiff.engines.lammps_labels import lammps_single_points

    model = config.model
    results, stdout = lammps_single_points(
        output_dir / LAMMPS_FOLDER,
        frames,
        model["table"],
        species_order=model["species_order"],
        cutoff=model["cutoff"],
        kspace_accuracy=model["kspace_accuracy"],
    )
    if not config.compute_stress:
        for item in results:
            item.pop("stress", None)
    return results, stdout


def _classical_description(config: LabelConfig) -> dict:
    from aiida_lifdiff.potentials import file_sha256

    model = config.model
    return {
        "kind": "classical",
        "name": model["table"].get("name"),
        "parameters": model["parameters"],
        "sha256": file_sha256(model["parameters"]),
        "engine": "LAMMPS single points, pair_style born/coul/long + kspace_style ewald",
        "cutoff_A": model["cutoff"],
        "kspace_accuracy": model["kspace_accuracy"],
        "species": config.species,
    }


# -- summary ----------------------------------------------------------------------------------


def _versions(lammps_output: str | None = None) -> dict[str, str | None]:
    import ase

    import aiida_lifdiff

    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "ase": ase.__version__,
        "aiida_lifdiff": aiida_lifdiff.__version__,
    }
    # Only what this run imported: a classical run never loads torch.
    for module in ("torch", "mace", "deepmd"):
        if module in sys.modules:
            versions[module] = str(getattr(sys.modules[module], "__version__", None))
    if lammps_output:
        match = re.search(r"^LAMMPS \((.+)\)\s*$", lammps_output, flags=re.MULTILINE)
        versions["lammps"] = match.group(1) if match else None
    return versions


def _base_summary(config: LabelConfig | None, code: int, message: str) -> dict:
    summary: dict[str, Any] = {"exit_code": code, "message": message}
    if config is not None:
        classical = config.model["kind"] == "classical"
        summary.update(
            device="cpu" if classical else config.device,
            dtype="float64" if classical else config.dtype,
            batch_size=config.batch_size,
            compute_stress=config.compute_stress,
            frames=str(config.frames),
            output=config.output,
        )
    return summary


def _refuse(output_dir: Path, code: int, message: str, config: LabelConfig | None = None, **extra: Any) -> int:
    print(f"lifdiff-label: error: {message}", file=sys.stderr, flush=True)
    summary = _base_summary(config, code, message)
    summary.update(extra)
    summary.setdefault("versions", _versions())
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output_dir / SUMMARY_FILE, summary)
    except OSError as exc:
        print(f"lifdiff-label: could not write {SUMMARY_FILE}: {exc}", file=sys.stderr)
    return code


def _name_frames(failures: Mapping[int, str]) -> str:
    items = [f"{index} ({reason})" for index, reason in sorted(failures.items())[:_MAX_NAMED]]
    more = len(failures) - _MAX_NAMED
    return "; ".join(items) + (f"; and {more} more (see failed_frames)" if more > 0 else "")


def run(config: LabelConfig, output_dir: Path, started: float | None = None) -> int:
    """Label the frames of a validated input; write the outputs; return the exit code."""
    started = time.monotonic() if started is None else started
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / config.output
    # A labelled file left by an earlier run in this folder must not pass for this run's result.
    target.unlink(missing_ok=True)
    kind = config.model["kind"]
    try:
        frames = read_frames(config.frames)
    except InputError as exc:
        return _refuse(output_dir, EXIT_BAD_INPUT, str(exc), config)

    model = calculator = None
    if kind != "classical":
        from aiida_lifdiff.potentials.mace import check_device

        try:
            check_device(config.device)
        except RuntimeError as exc:
            return _refuse(output_dir, EXIT_NO_CUDA, str(exc), config)
        from aiida_lifdiff.runner.models import ModelError, open_model

        try:
            model = open_model(config.model, config.device, config.dtype)
            check_species(frames, config.species, "the input's model.species")
            if kind == "mace":
                check_species(frames, [_symbol(z) for z in model.atomic_numbers], f"the MACE model {model.path}")
            else:
                try:
                    calculator = model.factory(**model.kwargs)
                except Exception as exc:  # the factory's own error (missing model file, ...) is the message
                    raise InputError(f"calculator factory {model.factory_spec!r} failed: {exc}") from exc
        except (InputError, ModelError) as exc:
            return _refuse(output_dir, EXIT_BAD_INPUT, str(exc), config)
        own = [_symbol(z) for z in model.atomic_numbers] if kind == "mace" else None
        description = dict(model.description, species=config.species or own)
    else:
        try:
            check_species(frames, config.species, f"the classical potential {config.model['table'].get('name')!r}")
        except InputError as exc:
            return _refuse(output_dir, EXIT_BAD_INPUT, str(exc), config)
        description = _classical_description(config)
        if config.device != "cpu":
            print(f"lifdiff-label: device {config.device!r} ignored: classical labels come from LAMMPS on the CPU")

    print(
        f"lifdiff-label: {len(frames)} frames, model {description.get('path') or description.get('name') or kind}, "
        f"pid {os.getpid()}",
        flush=True,
    )
    failures: dict[int, str] = {}
    lammps_output = None
    tick = time.perf_counter()
    try:
        if kind == "mace":
            results = _label_torch_batched(model, frames, config, failures)
        elif kind == "ase":
            results = _label_ase(calculator, frames, config, failures)
        else:
            results, lammps_output = _label_classical(config, frames, output_dir)
    except InputError as exc:
        return _refuse(output_dir, EXIT_BAD_INPUT, str(exc), config, model=description)
    except Exception as exc:
        from aiida_lifdiff.engines.lammps_labels import LabelInputError, LammpsLabelError

        if isinstance(exc, LabelInputError):
            return _refuse(output_dir, EXIT_BAD_INPUT, str(exc), config, model=description)
        if isinstance(exc, LammpsLabelError):
            return _refuse(output_dir, EXIT_ENGINE_FAILED, str(exc), config, model=description)
        raise
    seconds = time.perf_counter() - tick

    for index, item in enumerate(results):
        if item is not None and index not in failures:
            reason = _non_finite(item)
            if reason:
                failures[index] = reason
    # Mixed labelling is no dataset: stress only if every frame has it.
    with_stress = config.compute_stress and all(r is not None and "stress" in r for r in results)

    summary = _base_summary(config, EXIT_OK, "")
    summary.update(
        n_frames=len(frames),
        n_atoms_total=int(sum(len(frame) for frame in frames)),
        species=sorted({s for frame in frames for s in frame.get_chemical_symbols()}),
        seconds=seconds,
        frames_per_s=len(frames) / seconds if seconds > 0 else None,
        model=description,
        stress=bool(with_stress),
        failed_frames=[{"index": index, "reason": reason} for index, reason in sorted(failures.items())],
    )
    if failures:
        code = EXIT_NON_FINITE
        message = (
            f"{len(failures)} of {len(frames)} frame(s) could not be labelled: {_name_frames(failures)}; "
            f"no {config.output} written"
        )
        summary["output"] = None
    else:
        from aiida_lifdiff.datasets import labelled_frame, write_extxyz

        code, message = EXIT_OK, f"{len(frames)} frames labelled"
        labelled = [
            labelled_frame(frame, item["energy"], item["forces"], item.get("stress") if with_stress else None)
            for frame, item in zip(frames, results)
        ]
        temporary = target.with_name(target.name + ".tmp")
        write_extxyz(labelled, temporary)
        os.replace(temporary, target)
    summary.update(exit_code=code, message=message, wall_s=time.monotonic() - started)
    summary["versions"] = _versions(lammps_output)
    write_json_atomic(output_dir / SUMMARY_FILE, _finite_json(summary))
    stream = sys.stdout if code == EXIT_OK else sys.stderr
    print(f"lifdiff-label: {message} in {seconds:.2f} s (exit code {code})", file=stream, flush=True)
    return code


def _symbol(number: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(number)]


def _finite_json(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become None (the failed frames say why)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(item) for item in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (see the module docstring)."""
    started = time.monotonic()
    parser = argparse.ArgumentParser(
        prog="lifdiff-label", description="Energies, forces and stresses of extxyz frames with any potential."
    )
    parser.add_argument("input", help="input JSON file")
    parser.add_argument("--output-dir", default=".", help="where the labelled file and summary.json go (default: .)")
    args = parser.parse_args(argv)
    output_dir = Path(args.output_dir)
    try:
        config = load_input(args.input)
    except InputError as exc:
        return _refuse(output_dir, EXIT_BAD_INPUT, str(exc))
    return run(config, output_dir, started)


if __name__ == "__main__":
    sys.exit(main())
