"""Readers for what :mod:`aiida_lifdiff.engines.lammps_input` makes LAMMPS write (no AiiDA imports).

Dump reader choice: measured on a 217-atom x 10^4-frame ``id type xu yu zu`` dump
(2-core machine), ASE's ``lammps-dump-text`` reader and :func:`read_dump` both take
about 3 s and return the same (unwrapped, exact to the printed digits) positions;
both are dominated by parsing 10^7 floats. The own reader is kept because it
gives arrays and timesteps directly instead of 10^4 ``Atoms`` objects whose types
ASE maps to elements H, He, ... unless told otherwise, it checks that every frame
is sorted by id with a constant atom count, and it drops a truncated last frame
(job killed while writing) instead of failing.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .lammps_input import RELAX_MARKER, THERMO_COLUMNS

_HEADER_LINES = 9  # TIMESTEP x2, NUMBER OF ATOMS x2, BOX BOUNDS x4, ATOMS header


def _text(path_or_text: str | os.PathLike) -> str:
    """File content if given a path (or a one-line str naming a file), else the str itself."""
    if isinstance(path_or_text, os.PathLike):
        return Path(path_or_text).read_text()
    if isinstance(path_or_text, str):
        if "\n" in path_or_text or not path_or_text.strip():
            return path_or_text
        if os.path.isfile(path_or_text):
            return Path(path_or_text).read_text()
        raise ValueError(f"{path_or_text!r} is neither an existing file nor the text of a LAMMPS output")
    raise ValueError(f"expected a path or the text of a file, got {type(path_or_text).__name__}")


def _box_matrix(bounds: np.ndarray, triclinic: bool) -> np.ndarray:
    """(n, 3, 3) cell rows (a, b, c) from LAMMPS ``BOX BOUNDS`` lines of shape (n, 3, 2 or 3)."""
    n = bounds.shape[0]
    cell = np.zeros((n, 3, 3))
    if not triclinic:
        lengths = bounds[:, :, 1] - bounds[:, :, 0]
        cell[:, 0, 0], cell[:, 1, 1], cell[:, 2, 2] = lengths[:, 0], lengths[:, 1], lengths[:, 2]
        return cell
    # Triclinic dumps give the bounding box plus tilts; undo the bounding (LAMMPS Howto_triclinic).
    xy, xz, yz = bounds[:, 0, 2], bounds[:, 1, 2], bounds[:, 2, 2]
    xlo = bounds[:, 0, 0] - np.minimum.reduce([np.zeros(n), xy, xz, xy + xz])
    xhi = bounds[:, 0, 1] - np.maximum.reduce([np.zeros(n), xy, xz, xy + xz])
    ylo = bounds[:, 1, 0] - np.minimum(0.0, yz)
    yhi = bounds[:, 1, 1] - np.maximum(0.0, yz)
    cell[:, 0, 0] = xhi - xlo
    cell[:, 1, 0], cell[:, 1, 1] = xy, yhi - ylo
    cell[:, 2, 0], cell[:, 2, 1], cell[:, 2, 2] = xz, yz, bounds[:, 2, 1] - bounds[:, 2, 0]
    return cell


def read_dump(
    path_or_text: str | os.PathLike,
    columns: Sequence[str] = ("xu", "yu", "zu"),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read a LAMMPS text dump sorted by id with a constant number of atoms.

    :param path_or_text: a file path or the dump text itself.
    :param columns: the three per-atom columns to return as "positions" (default the
        unwrapped Cartesian ``xu yu zu``; e.g. ``('ix', 'iy', 'iz')`` reads image flags).
    :returns: ``timesteps`` (n,) int64, ``positions`` (n, n_atoms, 3) float64, ``types``
        (n_atoms,) int64 from the first frame, ``cells`` (n, 3, 3) with the cell vectors
        as rows (Angstrom).

    A trailing incomplete frame (a job killed while writing) is dropped. Frames must be
    sorted by id 1..n_atoms (``dump_modify sort id``), otherwise ValueError.
    """
    text = _text(path_or_text)
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) < _HEADER_LINES or lines[0].strip() != "ITEM: TIMESTEP":
        raise ValueError("not a LAMMPS text dump: expected it to start with 'ITEM: TIMESTEP'")
    if not lines[2].startswith("ITEM: NUMBER OF ATOMS") or not lines[4].startswith("ITEM: BOX BOUNDS"):
        raise ValueError(f"unexpected dump header: {lines[:5]!r}")
    n_atoms = int(lines[3])
    triclinic = "xy" in lines[4].split()
    header = lines[8].split()
    if header[:2] != ["ITEM:", "ATOMS"]:
        raise ValueError(f"unexpected dump header line {lines[8]!r}; expected 'ITEM: ATOMS ...'")
    names = header[2:]
    wanted = ["id", "type", *columns]
    missing = [name for name in wanted if name not in names]
    if missing:
        raise ValueError(f"dump lacks columns {missing}; it has {names}")

    frame_len = _HEADER_LINES + n_atoms
    n_frames = len(lines) // frame_len
    if n_frames == 0:
        raise ValueError(f"dump has no complete frame ({len(lines)} lines, {frame_len} per frame)")
    end = n_frames * frame_len
    if any(line != "ITEM: TIMESTEP" for line in lines[0:end:frame_len]) or any(
        line.strip() != str(n_atoms) for line in lines[3:end:frame_len]
    ):
        raise ValueError("dump frames are not all the same size: the number of atoms changed or the file is corrupt")
    timesteps = np.array(lines[1:end:frame_len], dtype=np.int64)
    bounds_cols = 3 if triclinic else 2
    bound_lines = [line for start in range(0, end, frame_len) for line in lines[start + 5 : start + 8]]
    bounds = np.loadtxt(bound_lines, dtype=float, ndmin=2)[:, :bounds_cols].reshape(n_frames, 3, bounds_cols)
    atom_lines = [
        line for start in range(0, end, frame_len) for line in lines[start + _HEADER_LINES : start + frame_len]
    ]
    usecols = [names.index(name) for name in wanted]
    # np.loadtxt's C parser dominates the cost (~2 s for 10^4 x 217 atoms); one call for all frames.
    data = np.loadtxt(atom_lines, dtype=float, usecols=usecols, ndmin=2).reshape(n_frames, n_atoms, len(wanted))
    ids = data[:, :, 0]
    if not np.array_equal(ids, np.broadcast_to(np.arange(1, n_atoms + 1), ids.shape)):
        raise ValueError("dump atoms are not sorted by id 1..N in every frame (use 'dump_modify sort id')")
    types = data[0, :, 1].astype(np.int64)
    positions = np.ascontiguousarray(data[:, :, 2:5])
    return timesteps, positions, types, _box_matrix(bounds, triclinic)


def join_segments(
    segments: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``(timesteps, values)`` of consecutive restart segments without overlap.

    Each segment keeps only its frames before the first frame of the next one: a
    continuation starts right after its restart step S, and any frames an earlier
    segment wrote after S (it ran on after the restart was written, then died) are
    superseded. ``values`` may be positions (n, N, 3) or any per-frame array.
    """
    if not segments:
        raise ValueError("no segments to join")
    steps_out, values_out = [], []
    for index, (steps, values) in enumerate(segments):
        steps = np.asarray(steps)
        values = np.asarray(values)
        if len(steps) != len(values):
            raise ValueError(f"segment {index}: {len(steps)} timesteps but {len(values)} frames")
        if np.any(np.diff(steps) <= 0):
            raise ValueError(f"segment {index}: timesteps are not strictly increasing")
        keep = np.ones(len(steps), dtype=bool)
        following = [np.asarray(later) for later, _ in segments[index + 1 :] if len(later)]
        if following and len(steps):
            next_first = following[0][0]
            if next_first <= steps[0]:
                raise ValueError(
                    f"segment {index + 1} starts at step {next_first}, not after segment {index}'s "
                    f"first step {steps[0]}: segments out of order?"
                )
            keep = steps < next_first
        steps_out.append(steps[keep])
        values_out.append(values[keep])
    return np.concatenate(steps_out), np.concatenate(values_out)


def read_thermo(path_or_text: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read :data:`~aiida_lifdiff.engines.lammps_input.THERMO_FILE` into arrays by column name.

    Keys: ``step`` (int64), ``time_ps``, ``temp_K``, ``pe_eV``, ``etotal_eV``, ``press_bar``,
    ``econserve_eV``. The column names come from the file's ``#`` title line when present.
    A truncated last line (killed job) is dropped.
    """
    text = _text(path_or_text)
    names: list[str] = list(THERMO_COLUMNS)
    rows: list[list[float]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            title = stripped.lstrip("#").split()
            if title:
                names = title
            continue
        fields = stripped.split()
        if len(fields) != len(names):
            continue
        try:
            rows.append([float(value) for value in fields])
        except ValueError:
            continue
    table = np.array(rows, dtype=float).reshape(-1, len(names))
    result = {name: table[:, i] for i, name in enumerate(names)}
    if "step" in result:
        result["step"] = result["step"].astype(np.int64)
    return result


_RUN_RE = re.compile(r"^\s*run\s+(\d+)(.*)$")
_LOOP_RE = re.compile(r"^Loop time of (\S+) on (\d+) procs for (\d+) steps with (\d+) atoms")
_PERF_RE = re.compile(r"([\d.]+) timesteps/s")
_WALL_RE = re.compile(r"^Total wall time: (\d+):(\d+):(\d+)")
_VERSION_RE = re.compile(r"^LAMMPS \((.+)\)")


def scan_log(text: str) -> dict:
    """Summarise a LAMMPS log (``log.lammps`` or screen output).

    Returns a dict with: ``version``; ``runs`` (one dict per ``run``/``minimize`` loop:
    ``first_step``, ``last_step``, ``n_steps``, ``loop_time_s``, ``steps_per_s``);
    ``last_step`` (the step reached: start + steps done from the loop summary, or the
    last thermo line of a run cut short by an error or a kill); ``target_step`` (the step the
    last ``run`` command aimed at: N for ``run N upto``, start + N otherwise);
    ``completed`` (last_step reached target and LAMMPS exited normally); ``timeout``
    (stopped by ``timer timeout``); ``error`` (first ``ERROR`` line, or None);
    ``lost_atoms``; ``warnings`` (distinct WARNING lines); ``walltime_s``;
    ``finished`` (the log has LAMMPS' closing "Total wall time").
    """
    result: dict = {
        "version": None,
        "runs": [],
        "last_step": None,
        "target_step": None,
        "completed": False,
        "timeout": False,
        "error": None,
        "lost_atoms": False,
        "warnings": [],
        "walltime_s": None,
        "finished": False,
        "steps_per_s": None,
    }
    pending_run: tuple[int, bool] | None = None
    in_thermo = False
    thermo_first: int | None = None
    thermo_last: int | None = None
    target: int | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if result["version"] is None:
            match = _VERSION_RE.match(stripped)
            if match:
                result["version"] = match.group(1)
                continue
        if stripped.startswith("ERROR"):
            if result["error"] is None:
                result["error"] = stripped
            if "Lost atoms" in stripped:
                result["lost_atoms"] = True
            continue
        if stripped.startswith("WARNING"):
            if "Wall time limit reached" in stripped:
                result["timeout"] = True
            message = re.sub(r"\s*\([^()]*:\d+\)$", "", stripped)
            if message not in result["warnings"]:
                result["warnings"].append(message)
            continue
        if re.match(r"^\s*minimize\s", line):
            pending_run, target = None, None
            continue
        match = _RUN_RE.match(line)
        if match:
            pending_run = (int(match.group(1)), "upto" in match.group(2).split())
            continue
        if stripped.startswith("Step ") or stripped == "Step":
            in_thermo = True
            thermo_first = thermo_last = None
            continue
        if in_thermo:
            fields = stripped.split()
            if fields and re.fullmatch(r"-?\d+", fields[0]):
                step = int(fields[0])
                if thermo_first is None:
                    thermo_first = step
                    if pending_run is not None:
                        n, upto = pending_run
                        target = n if upto else step + n
                        pending_run = None
                thermo_last = step
                # Updated row by row so that a log cut short (error, kill) still says how far it got.
                result["last_step"], result["target_step"] = step, target
                continue
            in_thermo = False
        match = _LOOP_RE.match(stripped)
        if match:
            loop_time, n_steps = float(match.group(1)), int(match.group(3))
            # A run stopped by the timer does not print a thermo line at its last step; the
            # loop summary's step count is what was actually done.
            last = thermo_first + n_steps if thermo_first is not None else thermo_last
            result["last_step"] = last
            result["runs"].append(
                {
                    "first_step": thermo_first,
                    "last_step": last,
                    "n_steps": n_steps,
                    "loop_time_s": loop_time,
                    "steps_per_s": n_steps / loop_time if loop_time > 0 else None,
                }
            )
            continue
        match = _PERF_RE.search(stripped)
        if match and stripped.startswith("Performance:") and result["runs"]:
            result["runs"][-1]["steps_per_s"] = float(match.group(1))
            continue
        match = _WALL_RE.match(stripped)
        if match:
            hours, minutes, seconds = (int(value) for value in match.groups())
            result["walltime_s"] = 3600 * hours + 60 * minutes + seconds
            result["finished"] = True
    if result["runs"]:
        result["steps_per_s"] = result["runs"][-1]["steps_per_s"]
    result["completed"] = bool(
        result["finished"]
        and result["error"] is None
        and result["last_step"] is not None
        and result["target_step"] is not None
        and result["last_step"] >= result["target_step"]
    )
    return result


def parse_relax(text: str) -> dict[str, float]:
    """Values of the ``LIFDIFF_RELAX`` line of a :func:`lattice_relax_script` log.

    Keys: ``natoms``, ``lx``, ``ly``, ``lz`` (A), ``pe`` (eV), ``pe_per_atom`` (eV),
    ``press`` (bar). ValueError if the line is missing (relaxation did not finish).
    """
    for line in reversed(text.splitlines()):
        if line.startswith(RELAX_MARKER):
            values = dict(item.split("=", 1) for item in line.split()[1:])
            result = {key: float(value) for key, value in values.items()}
            result["pe_per_atom"] = result["pe"] / result["natoms"]
            return result
    raise ValueError(f"no '{RELAX_MARKER}' line in the log: the relaxation did not reach its end")


_RESTART_MAGIC = b"LammpS RestartT\x00"
# Header section ids of LAMMPS restart files (src/lmprestart.h): VERSION=0 and UNITS=4
# are strings, SMALLINT/TAGINT/BIGINT=1..3 and IMAGEINT=48 ints, NTIMESTEP=5 a 64-bit int.
_STRING_SECTIONS = {0, 4}
_INT_SECTIONS = {1, 2, 3, 48}
_NTIMESTEP = 5


def read_restart_timestep(path: str | os.PathLike) -> int:
    """The timestep stored in a LAMMPS binary restart file (native endianness)."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if not head.startswith(_RESTART_MAGIC):
        raise ValueError(f"{path} is not a LAMMPS restart file (no 'LammpS RestartT' magic string)")
    offset = len(_RESTART_MAGIC)
    endian, _revision = struct.unpack_from("=ii", head, offset)
    if endian != 1:
        raise ValueError(f"{path} was written with the other byte order; read it where it was written")
    offset += 8
    try:
        while True:
            (flag,) = struct.unpack_from("=i", head, offset)
            offset += 4
            if flag in _STRING_SECTIONS:
                (length,) = struct.unpack_from("=i", head, offset)
                offset += 4 + length
            elif flag in _INT_SECTIONS:
                offset += 4
            elif flag == _NTIMESTEP:
                return int(struct.unpack_from("=q", head, offset)[0])
            else:
                break
    except struct.error:
        pass
    raise ValueError(f"{path}: no timestep found in the restart header (unknown layout)")


def newest_restart(paths: Sequence[str | os.PathLike]) -> tuple[str, int] | None:
    """The readable restart file with the highest timestep among ``paths`` (missing/corrupt skipped)."""
    best: tuple[str, int] | None = None
    for path in paths:
        try:
            step = read_restart_timestep(path)
        except (OSError, ValueError):
            continue
        if best is None or step > best[1]:
            best = (os.fspath(path), step)
    return best
