"""Input validation and the output files of ``lifdiff-md`` (no AiiDA, no torch).

File names and columns here are the contract with the AiiDA CalcJob/parser: keep them in
sync with :mod:`aiida_lifdiff.engines.lammps_input` where they mean the same thing
(:data:`THERMO_COLUMNS` is the LAMMPS layer's, so one thermo reader serves both).

Restart layout (same rule as the LAMMPS layer): a run continued from a checkpoint taken
at production step S writes only steps strictly after S; step S belongs to the earlier
segment. If the member's folder already holds the earlier segment's files (the run is
continued in place), frames and thermo rows after S are dropped from them and the new
ones appended, so the folder ends up with one seamless trajectory; in a fresh folder the
files hold only the new segment, to be joined with
:func:`aiida_lifdiff.engines.lammps_output.join_segments`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TRAJECTORY_FILE = "trajectory.npz"
THERMO_FILE = "thermo.dat"
STATUS_FILE = "status.json"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.npz"
THERMO_COLUMNS = ("step", "time_ps", "temp_K", "pe_eV", "etotal_eV", "press_bar", "econserve_eV")
CHECKPOINT_VERSION = 1

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_RESERVED_NAMES = {TRAJECTORY_FILE, THERMO_FILE, STATUS_FILE, SUMMARY_FILE, CHECKPOINT_FILE}
_TOP_KEYS = {
    "model",
    "device",
    "dtype",
    "timestep_fs",
    "n_steps",
    "equilibration_steps",
    "dump_stride",
    "thermo_stride",
    "thermostat",
    "checkpoint_stride",
    "timeout_s",
    "batch_size",
    "members",
    "restart",
    "neighbor_skin_A",
    "limits",
}
_REQUIRED_KEYS = ("model", "timestep_fs", "n_steps", "members")


class InputError(ValueError):
    """The input JSON (or a file it names) is unusable; reported before any MD step."""


@dataclass(frozen=True)
class MemberSpec:
    """One (structure, temperature, seed) of the batch."""

    name: str
    structure: Path
    temperature_K: float
    seed: int


@dataclass
class RunConfig:
    """The validated input of one ``lifdiff-md`` invocation (paths already absolute)."""

    model: dict
    members: list[MemberSpec]
    timestep_fs: float
    n_steps: int
    device: str = "cpu"
    dtype: str = "float64"
    equilibration_steps: int = 0
    dump_stride: int = 10
    thermo_stride: int = 10
    thermostat_tau_fs: float = 100.0
    checkpoint_stride: int | None = None
    timeout_s: float | None = None
    batch_size: int | None = None
    restart: Path | None = None
    neighbor_skin_A: float = 1.0
    max_force_eV_A: float = 100.0
    max_temperature_ratio: float = 5.0
    raw: dict = field(default_factory=dict)

    @property
    def engine(self) -> str:
        return f"lifdiff-md/{self.model['kind']}"


def number_setting(
    data: Mapping, key: str, default: Any = None, *, positive: bool = True, allow_none: bool = False
) -> Any:
    value = data.get(key, default)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"'{key}' must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise InputError(f"'{key}' must be > 0, got {value!r}")
    return float(value)


def integer_setting(data: Mapping, key: str, default: Any = None, *, minimum: int = 1, allow_none: bool = False) -> Any:
    value = data.get(key, default)
    if value is None and allow_none:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"'{key}' must be an integer, got {value!r}")
    if value < minimum:
        raise InputError(f"'{key}' must be >= {minimum}, got {value!r}")
    return value


def resolve_path(base_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def parse_model_spec(spec: Any, base_dir: Path) -> dict:
    if not isinstance(spec, Mapping):
        raise InputError(f"'model' must be an object like {{'kind': 'mace', 'path': ...}}, got {spec!r}")
    kind = spec.get("kind")
    if kind == "mace":
        unknown = set(spec) - {"kind", "path", "head"}
        if unknown:
            raise InputError(f"unknown keys in 'model' (kind mace): {sorted(unknown)}")
        path = spec.get("path")
        if not isinstance(path, str) or not path.strip():
            raise InputError("'model.path' must be a MACE model file (or a foundation model name)")
        head = spec.get("head")
        if head is not None and not isinstance(head, str):
            raise InputError(f"'model.head' must be a string, got {head!r}")
        resolved = resolve_path(base_dir, path)
        # A name such as 'medium-mpa-0' is only a foundation name when no such file exists.
        return {"kind": "mace", "path": str(resolved) if resolved.exists() else path, "head": head}
    if kind == "ase":
        unknown = set(spec) - {"kind", "factory", "kwargs"}
        if unknown:
            raise InputError(f"unknown keys in 'model' (kind ase): {sorted(unknown)}")
        factory = spec.get("factory")
        if not isinstance(factory, str) or not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", factory):
            raise InputError(f"'model.factory' must look like 'package.module:function', got {factory!r}")
        kwargs = spec.get("kwargs", {}) or {}
        if not isinstance(kwargs, Mapping):
            raise InputError(f"'model.kwargs' must be an object, got {kwargs!r}")
        return {"kind": "ase", "factory": factory, "kwargs": dict(kwargs)}
    raise InputError(f"'model.kind' must be 'mace' or 'ase', got {kind!r}")


def _parse_members(value: Any, base_dir: Path) -> list[MemberSpec]:
    if not isinstance(value, list) or not value:
        raise InputError("'members' must be a non-empty list of {name, structure, temperature_K, seed}")
    members, seen = [], set()
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise InputError(f"members[{index}] must be an object, got {item!r}")
        unknown = set(item) - {"name", "structure", "temperature_K", "seed"}
        missing = {"name", "structure", "temperature_K", "seed"} - set(item)
        if unknown or missing:
            raise InputError(f"members[{index}]: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
        name = item["name"]
        if not isinstance(name, str) or not _NAME_RE.match(name) or name in _RESERVED_NAMES:
            raise InputError(
                f"members[{index}].name {name!r} is not a usable folder name "
                "(letters, digits, '_', '.', '+', '-'; not an output file name)"
            )
        if name in seen:
            raise InputError(f"member name {name!r} appears twice")
        seen.add(name)
        if not isinstance(item["structure"], str):
            raise InputError(f"members[{index}].structure must be a file name, got {item['structure']!r}")
        structure = resolve_path(base_dir, item["structure"])
        if not structure.is_file():
            raise InputError(f"member {name!r}: structure file {structure} does not exist")
        temperature = number_setting(item, "temperature_K")
        seed = integer_setting(item, "seed", minimum=0)
        members.append(MemberSpec(name=name, structure=structure, temperature_K=temperature, seed=seed))
    return members


def check_input_keys(data: Any, allowed, required) -> None:
    """Raise :class:`InputError` unless ``data`` is a mapping with every ``required`` and only ``allowed`` keys."""
    if not isinstance(data, Mapping):
        raise InputError(f"the input must be a JSON object, got {type(data).__name__}")
    unknown = set(data) - set(allowed)
    if unknown:
        raise InputError(f"unknown input keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    missing = [key for key in required if key not in data]
    if missing:
        raise InputError(f"missing input keys {missing}")


def parse_input(data: Any, base_dir: str | os.PathLike = ".") -> RunConfig:
    """Validate the input document; relative paths are taken relative to ``base_dir``."""
    base = Path(base_dir)
    check_input_keys(data, _TOP_KEYS, _REQUIRED_KEYS)
    device = data.get("device", "cpu")
    if not isinstance(device, str) or not re.match(r"^(cpu|cuda(:\d+)?)$", device):
        raise InputError(f"'device' must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    dtype = data.get("dtype", "float64")
    if dtype not in ("float32", "float64"):
        raise InputError(f"'dtype' must be 'float32' or 'float64', got {dtype!r}")
    thermostat = data.get("thermostat", {"kind": "csvr", "tau_fs": 100.0})
    if not isinstance(thermostat, Mapping) or thermostat.get("kind", "csvr") != "csvr":
        raise InputError(f"'thermostat' must be {{'kind': 'csvr', 'tau_fs': ...}}, got {thermostat!r}")
    if set(thermostat) - {"kind", "tau_fs"}:
        raise InputError(f"unknown keys in 'thermostat': {sorted(set(thermostat) - {'kind', 'tau_fs'})}")
    limits = data.get("limits", {}) or {}
    if not isinstance(limits, Mapping) or set(limits) - {"max_force_eV_A", "max_temperature_ratio"}:
        raise InputError(f"'limits' may only hold max_force_eV_A and max_temperature_ratio, got {limits!r}")
    restart = data.get("restart")
    if restart is not None:
        if not isinstance(restart, str):
            raise InputError(f"'restart' must be a checkpoint file name, got {restart!r}")
        restart_path = resolve_path(base, restart)
        if not restart_path.is_file():
            raise InputError(f"restart checkpoint {restart_path} does not exist")
    else:
        restart_path = None
    config = RunConfig(
        model=parse_model_spec(data["model"], base),
        members=_parse_members(data["members"], base),
        timestep_fs=number_setting(data, "timestep_fs"),
        n_steps=integer_setting(data, "n_steps", minimum=1),
        device=device,
        dtype=dtype,
        equilibration_steps=integer_setting(data, "equilibration_steps", 0, minimum=0),
        dump_stride=integer_setting(data, "dump_stride", 10),
        thermo_stride=integer_setting(data, "thermo_stride", 10),
        thermostat_tau_fs=number_setting(thermostat, "tau_fs", 100.0),
        checkpoint_stride=integer_setting(data, "checkpoint_stride", None, allow_none=True),
        timeout_s=number_setting(data, "timeout_s", None, allow_none=True),
        batch_size=integer_setting(data, "batch_size", None, allow_none=True),
        restart=restart_path,
        neighbor_skin_A=number_setting(data, "neighbor_skin_A", 1.0),
        max_force_eV_A=number_setting(limits, "max_force_eV_A", 100.0),
        max_temperature_ratio=number_setting(limits, "max_temperature_ratio", 5.0),
        raw=dict(data),
    )
    if config.max_temperature_ratio <= 1:
        raise InputError(f"'limits.max_temperature_ratio' must be > 1, got {config.max_temperature_ratio}")
    return config


def read_input_json(path: str | os.PathLike) -> tuple[Any, Path]:
    """The parsed JSON of an input file and the folder its relative paths are relative to."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read input file {path}: {exc}") from exc
    try:
        return json.loads(text), path.resolve().parent
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc


def load_input(path: str | os.PathLike) -> RunConfig:
    """Read and validate an input JSON file; relative paths in it are relative to its folder."""
    return parse_input(*read_input_json(path))


def read_structure(member: MemberSpec):
    """The member's structure as ``ase.Atoms``, checked for what NVT MD here needs."""
    import ase.io

    try:
        atoms = ase.io.read(member.structure)
    except Exception as exc:  # ASE raises many types for unreadable files
        raise InputError(f"member {member.name!r}: cannot read {member.structure}: {exc}") from exc
    if len(atoms) < 2:
        raise InputError(f"member {member.name!r}: needs at least 2 atoms, {member.structure} has {len(atoms)}")
    if not all(atoms.pbc):
        raise InputError(f"member {member.name!r}: {member.structure} must be periodic in x, y and z")
    if abs(atoms.cell.volume) < 1e-6:
        raise InputError(f"member {member.name!r}: {member.structure} has a zero-volume cell")
    atoms.calc = None
    return atoms


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON through a temporary file, so a killed job never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _savez_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)


def read_trajectory(path: str | os.PathLike) -> dict[str, Any]:
    """A ``trajectory.npz`` as a dict; 0-d arrays (the attributes) become Python scalars."""
    with np.load(path, allow_pickle=False) as data:
        return {key: (data[key].item() if data[key].ndim == 0 else data[key]) for key in data.files}


class MemberOutput:
    """The folder of one member: trajectory frames, thermo rows and status.

    Frames are kept in memory and the whole ``trajectory.npz`` is rewritten at each
    :meth:`flush` (checkpoints, failure, end), so the file on disk is always complete and
    never ahead of the checkpoint by more than the frames since the last flush.
    """

    def __init__(
        self,
        folder: Path,
        *,
        name: str,
        symbols: Sequence[str],
        cell: np.ndarray,
        attributes: Mapping[str, Any],
        timestep_fs: float,
        resume_after: int | None = None,
    ) -> None:
        self.folder = folder
        self.name = name
        self.symbols = list(symbols)
        self.cell = np.asarray(cell, dtype=float)
        self.attributes = dict(attributes)
        self.timestep_fs = timestep_fs
        self.steps: list[int] = []
        self.frames: list[np.ndarray] = []
        folder.mkdir(parents=True, exist_ok=True)
        thermo_path = folder / THERMO_FILE
        kept_rows: list[str] = []
        if resume_after is not None:
            self._keep_earlier_segment(resume_after, kept_rows)
        self._thermo = open(thermo_path, "w")  # kept open for the whole run
        self._thermo.write("# " + " ".join(THERMO_COLUMNS) + "\n")
        self._thermo.writelines(kept_rows)
        self._thermo.flush()

    def _keep_earlier_segment(self, resume_after: int, kept_rows: list[str]) -> None:
        """Continue in place: keep the earlier segment's frames/rows up to the checkpoint step."""
        trajectory = self.folder / TRAJECTORY_FILE
        if trajectory.is_file():
            try:
                old = read_trajectory(trajectory)
                steps = np.asarray(old["steps"])
                positions = np.asarray(old["positions"])
            except Exception:  # an unreadable old file is no reason to stop the continuation
                steps, positions = np.zeros(0, dtype=int), np.zeros((0, len(self.symbols), 3))
            if positions.ndim == 3 and positions.shape[1] == len(self.symbols):
                keep = steps <= resume_after
                self.steps = [int(s) for s in steps[keep]]
                self.frames = list(positions[keep])
        thermo = self.folder / THERMO_FILE
        if thermo.is_file():
            for line in thermo.read_text().splitlines(keepends=True):
                fields = line.split()
                if not fields or line.startswith("#") or len(fields) != len(THERMO_COLUMNS):
                    continue
                try:
                    step = int(fields[0])
                except ValueError:
                    continue
                if step <= resume_after:
                    kept_rows.append(line if line.endswith("\n") else line + "\n")

    def add_frame(self, step: int, positions: np.ndarray) -> None:
        self.steps.append(int(step))
        self.frames.append(np.array(positions, dtype=np.float64))

    def add_thermo(self, step: int, temp: float, pe: float, etotal: float, press: float, econserve: float) -> None:
        time_ps = step * self.timestep_fs * 1e-3
        self._thermo.write(f"{step:d} {time_ps:.6f} {temp:.6f} {pe:.8f} {etotal:.8f} {press:.6f} {econserve:.8f}\n")

    def flush(self) -> None:
        self._thermo.flush()
        steps = np.asarray(self.steps, dtype=np.int64)
        positions = np.stack(self.frames) if self.frames else np.zeros((0, len(self.symbols), 3), dtype=np.float64)
        arrays: dict[str, Any] = {
            "positions": positions,
            "steps": steps,
            "times_ps": steps * self.timestep_fs * 1e-3,
            "cell": self.cell,
            "symbols": np.array(self.symbols),
        }
        arrays.update({key: np.array(value) for key, value in self.attributes.items()})
        _savez_atomic(self.folder / TRAJECTORY_FILE, arrays)

    def write_status(self, status: str, reason: str | None, last_step: int | None, **extra: Any) -> None:
        data = {"name": self.name, "status": status, "reason": reason, "last_step": last_step}
        data["n_frames"] = len(self.steps)
        data.update(extra)
        write_json_atomic(self.folder / STATUS_FILE, data)

    def close(self) -> None:
        if not self._thermo.closed:
            self._thermo.close()


def write_checkpoint(path: str | os.PathLike, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``checkpoint.npz``: per-member arrays plus a JSON ``meta`` string, atomically."""
    payload = dict(arrays)
    payload["meta"] = np.array(json.dumps(dict(meta), default=_json_default))
    _savez_atomic(Path(path), payload)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a checkpoint written by :func:`write_checkpoint`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {key: data[key] for key in data.files if key != "meta"}
    except Exception as exc:
        raise InputError(f"cannot read checkpoint {path}: {exc}") from exc
    if meta.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"checkpoint {path} has version {meta.get('version')!r}, expected {CHECKPOINT_VERSION}")
    return meta, arrays
