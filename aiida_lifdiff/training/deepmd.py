"""DeePMD-kit training: settings, the ``dp train`` input, neighbour counts and the output parsers (no AiiDA imports).

The ``lifdiff.deepmd_train`` CalcJob runs ``dp --tf train input.json``, ``dp --tf freeze`` and (with a test set)
``dp --tf test``; everything it needs to know about DeePMD-kit's files lives here so it can be used and tested
without a profile. Settings are one flat dict (:data:`DEFAULT_SETTINGS`, the single place for defaults); the
defaults are the tiny se_e2_a model of ``tests/data/models`` (``scripts/make_tiny_models.py``), which trains on a
laptop CPU in minutes and reaches ~60 meV/A force RMSE on the Tosi-Fumi LiF data. For production, raise the
network sizes and ``numb_steps``.

Units: DeePMD-kit's ``lcurve.out`` holds energy RMSEs per atom (eV/atom) and force RMSEs in eV/A; ``dp test``
prints eV, eV/atom, eV/A and eV/A^3. :func:`parse_dp_test` converts to meV, meV/atom, meV/A and meV/A^3.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ase import Atoms

#: Every settings key with its default (None: derived, see the comments).
DEFAULT_SETTINGS: dict[str, Any] = {
    # Element order of the model's types; None: the sorted species of all datasets given.
    "type_map": None,
    # se_e2_a descriptor. The fifth neighbour shell of LiF (a = 4.03 A) lies at 4.51 A, just outside 4.5 A.
    "rcut": 4.5,
    "rcut_smth": 0.5,
    # "auto": max neighbours per type in the data (train + valid + test) x sel_margin, see neighbour_sel.
    "sel": "auto",
    "sel_margin": 1.2,
    "neuron": [8, 16],
    "axis_neuron": 4,
    "fitting_neuron": [32, 32],
    # {element: eV} fixes the per-type energy bias; None lets dp fit it by least squares, which is
    # degenerate when all frames have one composition (see tests/data/models/README.md).
    "atom_ener": None,
    "precision": "float64",
    # Exponential decay from start_lr to stop_lr, a step every decay_steps.
    "start_lr": 2e-3,
    "stop_lr": 1e-5,
    "decay_steps": 200,
    # Loss prefactors (energy, forces, virial) at the start and the end of training. Virials are off by
    # default: the MD of this project is NVT, and forces carry ~3N labels per frame against 1 energy.
    "start_pref_e": 0.02,
    "limit_pref_e": 2.0,
    "start_pref_f": 1000.0,
    "limit_pref_f": 1.0,
    "start_pref_v": 0.0,
    "limit_pref_v": 0.0,
    "numb_steps": 20000,
    "batch_size": "auto",
    # Validation batches per lcurve line.
    "valid_batches": 1,
    # One seed for the whole run: the descriptor, the fitting net and the data order get seed, seed+1, seed+2.
    "seed": 13,
    "disp_freq": 200,
    # None: only at the end (the frozen model is what the CalcJob keeps).
    "save_freq": None,
}

LCURVE_FILE = "lcurve.out"
PRECISIONS = ("float32", "float64")
#: A run whose final physical training error (energy or force) is this many times its step-0 value has diverged.
#: Adam with a huge learning rate rarely produces NaN: the energy bias just runs away (measured: 1e-1 -> 1e24
#: eV/atom), while a healthy run always ends far below the untrained network's error.
DIVERGENCE_FACTOR = 100.0

_CHEMICAL_SYMBOL = re.compile(r"^[A-Z][a-z]?$")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _positive_int_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(_is_int(v) and v > 0 for v in value)


def with_defaults(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """``settings`` completed with :data:`DEFAULT_SETTINGS` (``save_freq`` None -> ``numb_steps``)."""
    full = dict(DEFAULT_SETTINGS)
    full.update(settings or {})
    if full["save_freq"] is None:
        full["save_freq"] = full["numb_steps"]
    return full


def validate_deepmd_settings(settings: Mapping[str, Any]) -> str | None:
    """A message saying what is wrong with ``settings`` (partial, completed with the defaults), else None."""
    if not isinstance(settings, Mapping):
        return f"DeePMD settings must be a dict, got {type(settings).__name__}"
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        return f"unknown DeePMD settings {unknown}; allowed: {sorted(DEFAULT_SETTINGS)}"
    s = with_defaults(settings)

    for key in ("rcut", "rcut_smth", "sel_margin", "start_lr", "stop_lr"):
        if not _is_number(s[key]) or not math.isfinite(s[key]):
            return f"{key} must be a finite number, got {s[key]!r}"
    if s["rcut"] <= 0:
        return f"rcut must be > 0 A, got {s['rcut']}"
    if not 0 <= s["rcut_smth"] < s["rcut"]:
        return (
            "rcut_smth must satisfy 0 <= rcut_smth < rcut (the smooth switch-off starts inside the cutoff), "
            f"got rcut_smth {s['rcut_smth']} with rcut {s['rcut']}"
        )
    if s["sel"] != "auto" and not _positive_int_list(s["sel"]):
        return f"sel must be 'auto' or a list of positive integers (one per type), got {s['sel']!r}"
    if s["sel_margin"] < 1:
        return f"sel_margin must be >= 1 (a headroom factor over the largest neighbour count), got {s['sel_margin']}"
    for key in ("neuron", "fitting_neuron"):
        if not _positive_int_list(s[key]):
            return f"{key} must be a non-empty list of positive integers, got {s[key]!r}"
    if not _is_int(s["axis_neuron"]) or not 0 < s["axis_neuron"] <= s["neuron"][-1]:
        return f"axis_neuron must be an integer in [1, neuron[-1] = {s['neuron'][-1]}], got {s['axis_neuron']!r}"
    if s["precision"] not in PRECISIONS:
        return f"precision must be one of {PRECISIONS}, got {s['precision']!r}"

    if s["start_lr"] <= 0 or s["stop_lr"] <= 0:
        return f"start_lr and stop_lr must be > 0, got {s['start_lr']} and {s['stop_lr']}"
    if s["stop_lr"] > s["start_lr"]:
        return f"stop_lr ({s['stop_lr']}) must not exceed start_lr ({s['start_lr']}): the learning rate decays"
    for key in ("numb_steps", "decay_steps", "disp_freq", "save_freq", "valid_batches"):
        if not _is_int(s[key]) or s[key] < 1:
            return f"{key} must be a positive integer, got {s[key]!r}"
    if s["decay_steps"] >= s["numb_steps"]:
        # dp would silently replace decay_steps by its own default in that case.
        return f"decay_steps ({s['decay_steps']}) must be smaller than numb_steps ({s['numb_steps']})"
    for key in ("numb_steps", "save_freq"):
        if s[key] % s["disp_freq"]:
            # deepmd-kit 3.2 (TF) checks for a checkpoint only on steps it also displays, and after the loop only
            # when the last step is not a multiple of save_freq: other combinations end with no checkpoint at all
            # and `dp freeze` fails (seen with numb_steps 1500, disp_freq 200).
            return (
                f"{key} ({s[key]}) must be a multiple of disp_freq ({s['disp_freq']}): dp writes checkpoints only "
                "on displayed steps"
            )
    if not _is_int(s["seed"]) or s["seed"] < 0:
        return f"seed must be a non-negative integer, got {s['seed']!r}"
    batch = s["batch_size"]
    if not ((_is_int(batch) and batch > 0) or (isinstance(batch, str) and re.fullmatch(r"auto(:[1-9][0-9]*)?", batch))):
        return f"batch_size must be a positive integer, 'auto' or 'auto:N', got {batch!r}"

    prefactors = [f"{stage}_pref_{kind}" for stage in ("start", "limit") for kind in "efv"]
    for key in prefactors:
        if not _is_number(s[key]) or not math.isfinite(s[key]) or s[key] < 0:
            return f"{key} must be a finite number >= 0, got {s[key]!r}"
    for stage in ("start", "limit"):
        if sum(s[f"{stage}_pref_{kind}"] for kind in "efv") <= 0:
            return f"at least one of {stage}_pref_e/f/v must be > 0, or the loss is empty"

    type_map = s["type_map"]
    if type_map is not None:
        if (
            not isinstance(type_map, (list, tuple))
            or not type_map
            or not all(isinstance(t, str) and _CHEMICAL_SYMBOL.match(t) for t in type_map)
            or len(set(type_map)) != len(type_map)
        ):
            return f"type_map must be a list of distinct element symbols, got {type_map!r}"
        if s["sel"] != "auto" and len(s["sel"]) != len(type_map):
            return f"sel has {len(s['sel'])} entries for {len(type_map)} types {list(type_map)}"
    atom_ener = s["atom_ener"]
    if atom_ener is not None:
        if not isinstance(atom_ener, Mapping) or not atom_ener:
            return f"atom_ener must be a dict {{element: energy in eV}}, got {atom_ener!r}"
        for element, energy in atom_ener.items():
            if not isinstance(element, str) or not _CHEMICAL_SYMBOL.match(element):
                return f"atom_ener keys must be element symbols, got {element!r}"
            if not _is_number(energy) or not math.isfinite(energy):
                return f"atom_ener[{element!r}] must be a finite number (eV), got {energy!r}"
        if type_map is not None and set(atom_ener) != set(type_map):
            return f"atom_ener must give one energy per type of type_map {list(type_map)}, got {sorted(atom_ener)}"
    return None


def check_species(settings: Mapping[str, Any], type_map: Sequence[str]) -> str | None:
    """A message if ``settings`` do not fit the types ``type_map`` of the data, else None."""
    s = with_defaults(settings)
    if s["sel"] != "auto" and len(s["sel"]) != len(type_map):
        return f"sel has {len(s['sel'])} entries for {len(type_map)} types {list(type_map)}"
    if s["atom_ener"] is not None and set(s["atom_ener"]) != set(type_map):
        return f"atom_ener gives {sorted(s['atom_ener'])}, the data's types are {list(type_map)}"
    return None


def neighbour_counts(frame: Atoms, rcut: float, type_map: Sequence[str]) -> dict[str, int]:
    """Per type, the largest number of neighbours of that type within ``rcut`` around any atom of ``frame``.

    Periodic images count (also an atom's own images, as DeePMD-kit counts them); the cutoff may exceed half the
    cell. The same numbers as ``ase.neighborlist.neighbor_list``, ~100x faster for the small cells of training
    data (ASE's binning costs ~0.1 s per 65-atom frame at 4.5 A): all pair distances, one lattice image at a time.
    """
    cell = frame.cell.array
    pbc = np.asarray(frame.pbc, dtype=bool)
    positions = frame.positions.copy()
    if pbc.any():
        # Wrapped positions make the image range below sufficient.
        scaled = frame.cell.scaled_positions(positions) if frame.cell.rank == 3 else None
        if scaled is not None:
            scaled[:, pbc] %= 1.0
            positions = scaled @ cell
    # Images needed per axis: the cutoff over the spacing of that axis' lattice planes.
    spacing = np.full(3, np.inf)
    if frame.cell.rank == 3:
        spacing = 1.0 / np.linalg.norm(frame.cell.reciprocal(), axis=1)
    reach = [int(math.ceil(rcut / spacing[axis])) if pbc[axis] else 0 for axis in range(3)]
    symbols = np.asarray(frame.get_chemical_symbols())
    counts = {element: np.zeros(len(frame), dtype=int) for element in type_map}
    columns = {element: symbols == element for element in type_map}
    for shift in np.ndindex(*(2 * n + 1 for n in reach)):
        offset = (np.asarray(shift) - reach) @ cell
        distances = np.linalg.norm(positions[:, None, :] - (positions[None, :, :] + offset), axis=-1)
        within = (distances < rcut) & (distances > 1e-8)
        for element, column in columns.items():
            counts[element] += within[:, column].sum(axis=1)
    return {element: int(values.max(initial=0)) for element, values in counts.items()}


def neighbour_sel(frames: Sequence[Atoms], rcut: float, type_map: Sequence[str], margin: float = 1.2) -> list[int]:
    """``sel`` of an se_e2_a descriptor: per type, the largest neighbour count within ``rcut`` in ``frames``.

    The count of neighbours of type ``t`` is taken around every atom of every frame (:func:`neighbour_counts`);
    its maximum is multiplied by ``margin`` (headroom for denser configurations than the data holds, e.g. MD at
    higher temperature or pressure) and rounded up to a multiple of 4, as DeePMD-kit's own ``sel: "auto:f"``
    does. A type absent from the data still gets 4 slots, so the model can be built.
    """
    if margin < 1:
        raise ValueError(f"margin must be >= 1, got {margin}")
    largest = dict.fromkeys(type_map, 0)
    for frame in frames:
        for element, count in neighbour_counts(frame, rcut, type_map).items():
            largest[element] = max(largest[element], count)
    return [max(4, int(math.ceil(margin * largest[element] / 4.0)) * 4) for element in type_map]


def deepmd_input(
    settings: Mapping[str, Any],
    type_map: Sequence[str],
    train_systems: Sequence[str],
    valid_systems: Sequence[str],
    sel: Sequence[int],
) -> dict:
    """The DeePMD-kit v3 input (``dp --tf train input.json``): an se_e2_a energy model.

    ``settings`` are completed with :data:`DEFAULT_SETTINGS` and must pass :func:`validate_deepmd_settings`
    (ValueError otherwise); ``sel`` is the explicit neighbour selection (see :func:`neighbour_sel`), written into
    the input so the run does not depend on dp's own neighbour statistics.
    """
    message = validate_deepmd_settings(settings) or check_species(settings, type_map)
    if message:
        raise ValueError(message)
    if len(sel) != len(type_map):
        raise ValueError(f"sel has {len(sel)} entries for {len(type_map)} types {list(type_map)}")
    s = with_defaults(settings)
    seed = int(s["seed"])
    fitting: dict[str, Any] = {
        "type": "ener",
        "neuron": list(s["fitting_neuron"]),
        "resnet_dt": True,
        "precision": s["precision"],
        "seed": seed + 1,
    }
    if s["atom_ener"] is not None:
        fitting["atom_ener"] = [float(s["atom_ener"][element]) for element in type_map]
    return {
        "model": {
            "type_map": list(type_map),
            "descriptor": {
                "type": "se_e2_a",
                "rcut": float(s["rcut"]),
                "rcut_smth": float(s["rcut_smth"]),
                "sel": [int(n) for n in sel],
                "neuron": list(s["neuron"]),
                "axis_neuron": int(s["axis_neuron"]),
                "resnet_dt": False,
                "precision": s["precision"],
                "seed": seed,
            },
            "fitting_net": fitting,
        },
        "learning_rate": {
            "type": "exp",
            "start_lr": float(s["start_lr"]),
            "stop_lr": float(s["stop_lr"]),
            "decay_steps": int(s["decay_steps"]),
        },
        "loss": {
            "type": "ener",
            **{
                f"{stage}_pref_{kind}": float(s[f"{stage}_pref_{kind}"])
                for stage in ("start", "limit")
                for kind in "efv"
            },
        },
        "training": {
            "training_data": {"systems": list(train_systems), "batch_size": s["batch_size"]},
            "validation_data": {
                "systems": list(valid_systems),
                "batch_size": s["batch_size"],
                "numb_btch": int(s["valid_batches"]),
            },
            "numb_steps": int(s["numb_steps"]),
            "seed": seed + 2,
            "disp_file": LCURVE_FILE,
            "disp_freq": int(s["disp_freq"]),
            "save_freq": int(s["save_freq"]),
        },
    }


# ------------------------------------------------------------------------------------------------ parsers


def parse_lcurve(text: str) -> dict[str, np.ndarray]:
    """The columns of dp's ``lcurve.out`` by name (``step`` as integers, the rest as floats, NaN kept).

    The column names come from the first comment line (``# step rmse_val rmse_trn ...``); further comment lines
    (dp's note on missing data, or the header written again by a restart that appends) are skipped, as is a
    last line cut short by a killed job. ValueError without a header or for a malformed line elsewhere.
    """
    names: list[str] | None = None
    rows: list[list[float]] = []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("#"):
            if names is None:
                names = line.lstrip("#").split()
            continue
        if names is None:
            raise ValueError("lcurve.out has no '#' header line with the column names")
        fields = line.split()
        try:
            values = [float(field) for field in fields]
        except ValueError:
            values = []
        if len(values) != len(names):
            if index == len(lines) - 1:
                break
            raise ValueError(f"lcurve.out line {line!r} does not have the {len(names)} columns {names}")
        rows.append(values)
    if names is None:
        raise ValueError("lcurve.out has no '#' header line with the column names")
    table = np.asarray(rows, dtype=float).reshape(len(rows), len(names))
    columns = {name: table[:, i].copy() for i, name in enumerate(names)}
    if "step" in columns:
        columns["step"] = columns["step"].astype(np.int64)
    return columns


def lcurve_divergence(columns: Mapping[str, np.ndarray]) -> str | None:
    """Why the training in ``columns`` (from :func:`parse_lcurve`) diverged, or None.

    Diverged: a non-finite training error, or a final physical training error (``rmse_e_trn``, ``rmse_f_trn``,
    ``rmse_v_trn``: independent of the loss prefactors, which change during training) :data:`DIVERGENCE_FACTOR`
    times above its step-0 value. Validation columns may legitimately be NaN (no labels of that kind).
    """
    for name, values in columns.items():
        if name.endswith("_trn") and values.size and not np.all(np.isfinite(values)):
            step = columns["step"][~np.isfinite(values)][0] if "step" in columns else "?"
            return f"{name} is not finite from step {step}"
    for name in ("rmse_e_trn", "rmse_f_trn", "rmse_v_trn"):
        values = columns.get(name)
        if values is None or values.size < 2 or not values[0] > 0:
            continue
        if values[-1] > DIVERGENCE_FACTOR * values[0]:
            return f"{name} grew from {values[0]:.3g} at the start to {values[-1]:.3g} at the end"
    return None


def lcurve_final(columns: Mapping[str, np.ndarray]) -> dict[str, float | int | None]:
    """The last lcurve line in meV/atom (energies, virials) and meV/A (forces); the total loss rmse stays as is."""
    if not columns or next(iter(columns.values())).size == 0:
        return {}
    final: dict[str, float | int | None] = {}
    for name, values in columns.items():
        value = values[-1]
        if name == "step":
            final["step"] = int(value)
        elif name == "lr":
            final["lr"] = float(value)
        elif re.fullmatch(r"rmse_[ev]_(trn|val)", name):
            final[f"{name}_meV_per_atom"] = 1e3 * float(value) if np.isfinite(value) else None
        elif re.fullmatch(r"rmse_f_(trn|val)", name):
            final[f"{name}_meV_per_A"] = 1e3 * float(value) if np.isfinite(value) else None
        else:
            final[name] = float(value) if np.isfinite(value) else None
    return final


_DP_TEST_METRIC = re.compile(
    r"(?P<quantity>Energy|Force|Virial|Stress)\s+(?P<kind>MAE|RMSE)(?P<per_atom>/Natoms)?\s*:\s*"
    r"(?P<value>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))\s*(?P<unit>\S+)"
)
_DP_TEST_SYSTEM = re.compile(r"#\s*testing system\s*:\s*(?P<name>\S+)")
_DP_TEST_FRAMES = re.compile(r"#\s*number of test data\s*:\s*(?P<n>\d+)")
_DP_TEST_AVERAGE = re.compile(r"#\s*-+\s*weighted average of errors")
#: Unit suffix of our keys (values x 1000) by (quantity, per atom), and the eV unit dp prints with it.
_DP_TEST_UNITS = {
    ("energy", False): "meV",
    ("energy", True): "meV_per_atom",
    ("force", False): "meV_per_A",
    ("virial", False): "meV",
    ("virial", True): "meV_per_atom",
    ("stress", False): "meV_per_A3",
}


def parse_dp_test(text: str) -> dict[str, Any]:
    """The errors ``dp test`` prints, converted from eV to meV (``energy_rmse_meV_per_atom``, ``force_rmse_meV_per_A``).

    Keys: ``{energy,force,virial,stress}_{rmse,mae}_{unit}`` with unit ``meV`` (per frame), ``meV_per_atom``,
    ``meV_per_A`` or ``meV_per_A3``; those of the weighted average over systems (or of the only system) at the
    top level, each system's under ``systems[name]`` with its ``n_frames``; ``n_frames`` is the total.
    Virial/stress keys appear only when the test data have virial labels. ValueError if the text holds no result.
    """
    systems: dict[str, dict[str, Any]] = {}
    average: dict[str, Any] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        if match := _DP_TEST_SYSTEM.search(line):
            current = systems.setdefault(match["name"], {})
            continue
        if _DP_TEST_AVERAGE.search(line):
            current = average
            continue
        if (match := _DP_TEST_FRAMES.search(line)) and current is not None:
            current["n_frames"] = int(match["n"])
            continue
        if (match := _DP_TEST_METRIC.search(line)) and current is not None:
            quantity, per_atom = match["quantity"].lower(), bool(match["per_atom"])
            if not match["unit"].startswith("eV") or (quantity, per_atom) not in _DP_TEST_UNITS:
                raise ValueError(f"unexpected unit in dp test output line {line.strip()!r}")
            key = f"{quantity}_{match['kind'].lower()}_{_DP_TEST_UNITS[(quantity, per_atom)]}"
            current[key] = 1e3 * float(match["value"])
    systems = {name: values for name, values in systems.items() if len(values) > 1}
    if not systems:
        raise ValueError("no dp test results found (no '# testing system' block with errors)")
    top = average if len(average) > 0 else next(iter(systems.values()))
    result = {key: value for key, value in top.items() if key != "n_frames"}
    result["n_frames"] = sum(int(values.get("n_frames", 0)) for values in systems.values())
    result["n_systems"] = len(systems)
    result["systems"] = systems
    return result


_LOG_PATTERNS = {
    "deepmd_version": (re.compile(r"Source:\s+(\S+)"), str),
    "backend": (re.compile(r"Backend:\s+(\S+)"), str),
    "float_precision": (re.compile(r"Float Precision:\s+(\S+)"), str),
    "tensorflow_version": (re.compile(r"TF Ver:\s+(\S+)"), str),
    "wall_time_s": (re.compile(r"\bwall time:\s*([0-9.eE+-]+)\s*s"), float),
    "seconds_per_batch": (re.compile(r"average training time:\s*([0-9.eE+-]+)\s*s/batch"), float),
    "min_neighbour_distance_A": (re.compile(r"minimal neighbor distance:\s*([0-9.eE+-]+)"), float),
}


def parse_train_log(text: str) -> dict[str, Any]:
    """What ``dp train`` says about itself: version, backend, wall time, time per batch, whether it finished.

    Keys present only when the log has them; ``finished`` (bool) and ``error`` (the last line of a Python
    traceback or dp's own error message, or None) always.
    """
    info: dict[str, Any] = {}
    for key, (pattern, convert) in _LOG_PATTERNS.items():
        matches = pattern.findall(text)
        if matches:
            info[key] = convert(matches[-1])
    if match := re.search(r"maximum neighbor size:\s*\[([\d\s,]+)\]", text):
        info["max_neighbours"] = [int(n) for n in re.split(r"[\s,]+", match[1].strip()) if n]
    info["finished"] = "finished training" in text
    error = None
    lines = text.splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if starts:
        # The exception line is the first unindented line after the LAST traceback (earlier ones are the causes
        # of a chained exception); the library noise printed at exit comes after it.
        following = [line for line in lines[starts[-1] + 1 :] if line.strip() and not line[0].isspace()]
        error = following[0].strip() if following else "Python traceback"
    info["error"] = error
    return info


#: dargs' exceptions: dp checks its input.json with dargs (strict mode) and raises one of these on a bad key or value.
INPUT_ERRORS = ("ArgumentError", "ArgumentKeyError", "ArgumentTypeError", "ArgumentValueError")


def is_input_error(error: str | None) -> bool:
    """Whether the ``error`` of :func:`parse_train_log` is dp refusing its input (rather than a crash)."""
    return bool(error) and any(name in error for name in INPUT_ERRORS)
