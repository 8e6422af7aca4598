"""``lifdiff-barrier``: static lattice constant and climbing-image NEB barriers of interstitial Li in LiF.

Runs on a compute node (no AiiDA): ``lifdiff-barrier input.json [--output-dir DIR]``, or
``python -m aiida_lifdiff.runner.barrier input.json``.

Input (JSON; relative paths are relative to the input file's folder; unknown keys are refused; only
``model`` is required)::

    {"model": {...},                                the model entry of lifdiff-label (mace | ase | classical,
                                                    optionally with "species")
     "lattice": {"relax": true, "a0_A": 4.03, "strain": 0.03, "n_points": 7},
     "repeat": 2,                                   conventional cubes per direction (2: 64 + 1 atoms)
     "paths": ["knockoff_collinear", "knockoff_noncollinear", "direct"],     default: these three; [] =
                                                    lattice only (no supercell is evaluated)
     "start_site": "tetrahedral",                   a key of structures.INTERSTITIAL_SITES (not "none")
     "neb": {"n_images": 5, "fmax_eV_A": 0.01, "max_steps": 400, "climb": true,
             "relax_fmax_eV_A": 0.005, "relax_max_steps": 400},     defaults shown
     "device": "cpu" | "cuda" | "cuda:N",           default "cpu" (MACE; checked for kind ase; not classical)
     "dtype": "float32" | "float64"}                default "float64" (MACE weights)

``lattice.relax``: E(V) of the perfect 8-atom conventional cell at ``n_points`` (>= 5) lattice constants
evenly spaced in ``a0_A * (1 -+ strain)``, fitted with ``ase.eos.EquationOfState`` (Birch-Murnaghan);
the minimum must lie inside the sampled range. ``relax: false`` takes ``a0_A`` as it is.

Paths (:mod:`aiida_lifdiff.migration`): ``direct``, ``knockoff_collinear``, ``knockoff_noncollinear``
(runs ``knockoff_noncollinear_70`` and ``knockoff_noncollinear_109``; the result under the group name is
the lower of the two, with ``variant`` naming it); the two variants may also be asked for by name. They
all start from the tetrahedral site: with another ``start_site`` only the start is relaxed and checked
(for testing that check; the face site is a saddle and rolls off).

Procedure (fixed cell, the supercell at a0):

1. lattice, as above;
2. the start (supercell + interstitial at ``start_site``), every atom displaced by a Gaussian of
   :data:`SYMMETRY_BREAK_A` (fixed seed) so that a saddle cannot survive by symmetry, relaxed with BFGS to
   ``relax_fmax_eV_A`` (at most ``relax_max_steps``), then checked (:mod:`aiida_lifdiff.migration`): the
   interstitial within ``INTERSTITIAL_SITE_TOLERANCE_A`` (0.45 A) of its site, every other Li within
   ``LI_SITE_TOLERANCE_A`` (0.8 A; the four Li next to a tetrahedral interstitial relax out by ~0.5 A) and
   every F within ``F_SITE_TOLERANCE_A`` (0.5 A) of its lattice site;
3. per path: the final end point (same atoms, moved to their destinations), perturbed, relaxed and
   checked the same way; then the NEB (``ase.mep.NEB``, improved tangent, spring
   :data:`SPRING_EV_A2`, one calculator shared by the images) of ``n_images`` moving images between the
   two relaxed end points, interpolated linearly and then with IDPP; FIRE first without climbing image to
   ``max(PRECONVERGE_FACTOR * fmax, PRECONVERGE_MIN_EV_A)``, then (``climb``) with the climbing image to
   ``fmax_eV_A``; ``max_steps`` counts the steps of both stages together. Converged: the largest NEB
   force on any atom of any moving image (the climbing image's included) is below ``fmax_eV_A``.

Outputs (in ``--output-dir``, default the current folder):

- ``summary.json``: ``exit_code``, ``message``, ``model`` (kind, file, sha256, settings, species),
  ``a0_A``, ``B0_GPa`` (null without relax), ``eos`` ({``lattice_constants_A``, ``energies_eV``,
  ``volumes_A3``, ``n_atoms``, ``e0_eV``}, null without relax), ``repeat``, ``n_atoms``, ``start_site``,
  ``start`` ({``energy_eV``, ``converged``, ``n_steps``, ``max_force_eV_A``, ``endpoint``}),
  ``initial_energy_eV`` (the relaxed start), ``paths`` {name: {``barrier_eV`` (highest image energy
  minus the initial end point's), ``converged``, ``max_force_eV_A`` (final largest NEB force),
  ``n_steps``, ``initial_energy_eV``, ``final_energy_eV``, ``reaction_coordinate_A`` (cumulative
  distance along the band), ``energies_eV`` (relative to the initial end point), ``saddle_image``
  (index in the band, 0 = initial end point), ``endpoint`` {``ok``, ``detail``, ...}, ``final_relax``
  ({``converged``, ``n_steps``, ``max_force_eV_A``}), ``n_images``, ``description``, ``angle_deg``,
  ``seconds``}}, plus ``knockoff_noncollinear`` (a copy of the lower variant with ``variant``);
  ``barriers_eV`` {name: barrier}; ``seconds`` (once the calculator is made), ``wall_s`` (whole run),
  ``n_force_calls``, ``versions``, ``device``, ``dtype``, ``settings`` (tolerances, seeds, optimisers).
  Written for every exit code except 1.
- ``start.extxyz``: the relaxed start; ``path-<name>.extxyz``: the final band (all images, energy and
  true forces per image); ``endpoint-<name>.extxyz``: a final end point that relaxed into something else.

Exit codes (the AiiDA parser maps them):

- 0: every requested result computed and converged.
- 1: unexpected internal error (traceback on stderr; no summary.json).
- 2: bad input (JSON, schema, unknown path or site, unreadable model/parameters, model or species not
  covering Li and F, a calculator factory that fails); nothing was evaluated. A bad command line also
  exits 2 (argparse's usage message, no summary.json).
- 3: CUDA requested but ``torch.cuda.is_available()`` is False; nothing was evaluated.
- 4: at least one NEB (or end-point relaxation) did not converge within its steps; every result is still
  written, the unconverged ones are named in the message.
- 5: an end point relaxed into something other than the requested configuration (which, and into what,
  in the message); the other paths still ran (none when it is the start). Takes precedence over 4.
- 6: engine failure: the calculator (LAMMPS, the model) raised or gave non-finite numbers, or the E(V)
  fit failed (minimum outside the sampled range); what was done so far is in summary.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aiida_lifdiff.migration import (
    F_SITE_TOLERANCE_A,
    INTERSTITIAL_SITE_TOLERANCE_A,
    LI_SITE_TOLERANCE_A,
    PATH_GROUPS,
    PATH_NAMES,
    PATHS,
    align_to,
    check_configuration,
    expand_paths,
    path_end_structures,
    perturbed,
    start_structure,
)
from aiida_lifdiff.runner.io import (
    SUMMARY_FILE,
    InputError,
    check_input_keys,
    integer_setting,
    number_setting,
    read_input_json,
    write_json_atomic,
)
from aiida_lifdiff.structures import INTERSTITIAL_SITES, LIF_LATTICE_CONSTANT

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_NO_CUDA = 3
EXIT_NOT_CONVERGED = 4
EXIT_WRONG_ENDPOINT = 5
EXIT_ENGINE_FAILED = 6

PROGRAM = "lifdiff-barrier"
START_FILE = "start.extxyz"
DEFAULT_PATHS = ("knockoff_collinear", "knockoff_noncollinear", "direct")

#: Default NEB and end-point force tolerances (eV/A). The relaxation around the interstitial is soft: with
#: Tosi-Fumi (repeat 2) a climbing image converged to 0.05 eV/A lies 10 meV (collinear knock-off) to
#: 60 meV (non-collinear 70.5 deg: 0.363 instead of 0.301 eV, for 5, 7 and 9 images alike) above the saddle;
#: at 0.01 eV/A the barriers agree within 1 meV for 5, 7 and 9 images.
DEFAULT_FMAX_EV_A = 0.01
DEFAULT_RELAX_FMAX_EV_A = 0.005
#: Gaussian displacement (A, per component) of every atom before an end point is relaxed, and its seed.
SYMMETRY_BREAK_A = 0.02
SYMMETRY_BREAK_SEED = 20240611
#: NEB spring constant (eV/A^2; ASE's default).
SPRING_EV_A2 = 0.1
#: The first, non-climbing NEB stage stops at max(PRECONVERGE_FACTOR * fmax, PRECONVERGE_MIN_EV_A).
PRECONVERGE_FACTOR = 3.0
PRECONVERGE_MIN_EV_A = 0.1
#: FIRE's largest step (A) in the NEB.
NEB_MAXSTEP_A = 0.1
#: The E(V) fit needs at least this many points (Birch-Murnaghan has 4 parameters).
MIN_EOS_POINTS = 5

_TOP_KEYS = {"model", "lattice", "repeat", "paths", "start_site", "neb", "device", "dtype"}
_LATTICE_KEYS = {"relax", "a0_A", "strain", "n_points"}
_NEB_KEYS = {"n_images", "fmax_eV_A", "max_steps", "climb", "relax_fmax_eV_A", "relax_max_steps"}
_REQUIRED_SPECIES = ("F", "Li")


@dataclass
class BarrierConfig:
    """The validated input of one ``lifdiff-barrier`` invocation (paths already absolute)."""

    model: dict
    species: list[str] | None = None
    relax_lattice: bool = True
    a0_A: float = LIF_LATTICE_CONSTANT
    strain: float = 0.03
    n_points: int = 7
    repeat: int = 2
    paths: list[str] = field(default_factory=lambda: list(DEFAULT_PATHS))
    start_site: str = "tetrahedral"
    n_images: int = 5
    fmax: float = DEFAULT_FMAX_EV_A
    max_steps: int = 400
    climb: bool = True
    relax_fmax: float = DEFAULT_RELAX_FMAX_EV_A
    relax_max_steps: int = 400
    device: str = "cpu"
    dtype: str = "float64"
    raw: dict = field(default_factory=dict)

    @property
    def concrete_paths(self) -> list[str]:
        return expand_paths(self.paths)


def _bool_setting(data: Mapping, key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise InputError(f"'{key}' must be true or false, got {value!r}")
    return value


def _section(data: Mapping, key: str, allowed: set[str]) -> Mapping:
    value = data.get(key, {})
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise InputError(f"'{key}' must be an object, got {value!r}")
    unknown = set(value) - allowed
    if unknown:
        raise InputError(f"unknown keys in '{key}': {sorted(unknown)}; allowed: {sorted(allowed)}")
    return value


def parse_input(data: Any, base_dir: str | os.PathLike = ".") -> BarrierConfig:
    """Validate the input document; relative paths are taken relative to ``base_dir``."""
    from aiida_lifdiff.runner.label import _parse_label_model

    base = Path(base_dir)
    check_input_keys(data, _TOP_KEYS, ("model",))
    device = data.get("device", "cpu")
    if not isinstance(device, str) or not re.match(r"^(cpu|cuda(:\d+)?)$", device):
        raise InputError(f"'device' must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    dtype = data.get("dtype", "float64")
    if dtype not in ("float32", "float64"):
        raise InputError(f"'dtype' must be 'float32' or 'float64', got {dtype!r}")

    lattice = _section(data, "lattice", _LATTICE_KEYS)
    relax = _bool_setting(lattice, "relax", True)
    a0 = number_setting(lattice, "a0_A", LIF_LATTICE_CONSTANT)
    if not 2.0 <= a0 <= 10.0:
        raise InputError(f"'lattice.a0_A' must be a lattice constant in Angstrom (2..10), got {a0!r}")
    strain = number_setting(lattice, "strain", 0.03)
    if not strain < 0.2:
        raise InputError(f"'lattice.strain' must be a fraction in (0, 0.2), got {strain!r}")
    n_points = integer_setting(lattice, "n_points", 7, minimum=MIN_EOS_POINTS)

    neb = _section(data, "neb", _NEB_KEYS)
    paths = data.get("paths", list(DEFAULT_PATHS))
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise InputError(f"'paths' must be a list of path names out of {list(PATH_NAMES)}, got {paths!r}")
    unknown = [p for p in paths if p not in PATH_NAMES]
    if unknown:
        raise InputError(f"unknown paths {unknown}; known: {list(PATH_NAMES)}")
    if len(set(paths)) != len(paths):
        raise InputError(f"'paths' lists a path twice: {paths}")
    start_site = data.get("start_site", "tetrahedral")
    sites = [name for name, site in INTERSTITIAL_SITES.items() if site is not None]
    if start_site not in sites:
        raise InputError(f"'start_site' must be one of {sites}, got {start_site!r}")
    if start_site != "tetrahedral" and paths:
        raise InputError(
            f"the migration paths start from the tetrahedral site; with start_site {start_site!r} give "
            '"paths": [] (only the start is relaxed and checked)'
        )

    model, species = _parse_label_model(data["model"], base)
    if species is not None:
        missing = sorted(set(_REQUIRED_SPECIES) - set(species))
        if missing:
            raise InputError(f"the model covers {species}, not {missing}: LiF needs {list(_REQUIRED_SPECIES)}")
    return BarrierConfig(
        model=model,
        species=species,
        relax_lattice=relax,
        a0_A=a0,
        strain=strain,
        n_points=n_points,
        repeat=integer_setting(data, "repeat", 2, minimum=1),
        paths=list(paths),
        start_site=start_site,
        n_images=integer_setting(neb, "n_images", 5, minimum=1),
        fmax=number_setting(neb, "fmax_eV_A", DEFAULT_FMAX_EV_A),
        max_steps=integer_setting(neb, "max_steps", 400, minimum=1),
        climb=_bool_setting(neb, "climb", True),
        relax_fmax=number_setting(neb, "relax_fmax_eV_A", DEFAULT_RELAX_FMAX_EV_A),
        relax_max_steps=integer_setting(neb, "relax_max_steps", 400, minimum=1),
        device=device,
        dtype=dtype,
        raw=dict(data),
    )


def load_input(path: str | os.PathLike) -> BarrierConfig:
    """Read and validate an input JSON file; relative paths in it are relative to its folder."""
    return parse_input(*read_input_json(path))


# -- computations -----------------------------------------------------------------------------


class Stop(Exception):
    """Ends the run early with an exit code (the summary keeps what was computed)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _max_force(forces: np.ndarray) -> float:
    forces = np.asarray(forces).reshape(-1, 3)
    return float(np.sqrt((forces**2).sum(axis=1)).max()) if len(forces) else 0.0


def _freeze(atoms, energy: float, forces: np.ndarray):
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = SinglePointCalculator(atoms, energy=float(energy), forces=np.array(forces))
    return atoms


#: E(V) windows tried before giving up: a model whose minimum lies outside the first window (e.g. a PBE-trained
#: universal model started from the experimental a0, or a briefly trained one) gets the window moved onto the
#: lowest sampled point, like a line search, instead of a failed study.
MAX_EOS_WINDOWS = 4


def fit_lattice(calculator_factory, config: BarrierConfig, summary: dict) -> None:
    """E(V) of the perfect conventional cube; ``a0_A``, ``B0_GPa`` (Birch-Murnaghan) and ``eos`` into ``summary``.

    The window ``a0_A * (1 -+ strain)`` is moved onto its lowest point while the fitted minimum lies outside it
    (at most :data:`MAX_EOS_WINDOWS` windows; every window is kept in ``eos['windows']``); the fit uses the
    last one, in which the minimum must lie.
    """
    from ase.eos import EquationOfState
    from ase.units import GPa

    from aiida_lifdiff.structures import build_lif_supercell

    calc = calculator_factory()
    centre = config.a0_A
    windows = []
    for _ in range(MAX_EOS_WINDOWS):
        lattice_constants = centre * (1.0 + np.linspace(-config.strain, config.strain, config.n_points))
        energies, volumes = [], []
        for a in lattice_constants:
            cell = build_lif_supercell(1, float(a), "none")
            cell.calc = calc
            energies.append(float(cell.get_potential_energy()))
            volumes.append(float(cell.get_volume()))
        eos = {
            "lattice_constants_A": [float(a) for a in lattice_constants],
            "energies_eV": energies,
            "volumes_A3": volumes,
            "n_atoms": 8,
            "e0_eV": None,
        }
        windows.append({k: eos[k] for k in ("lattice_constants_A", "energies_eV")})
        eos["windows"] = windows
        summary["eos"] = eos
        lowest = int(np.argmin(energies))
        if 0 < lowest < len(energies) - 1:
            break
        centre = float(lattice_constants[lowest])  # the minimum is beyond this edge: look there
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v0, e0, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    except Exception as exc:  # ASE raises RuntimeError/ValueError/LinAlgError on a failed fit
        raise Stop(EXIT_ENGINE_FAILED, f"the E(V) fit failed: {exc}") from exc
    a0 = float(v0) ** (1.0 / 3.0)
    eos["e0_eV"] = float(e0)
    summary.update(a0_A=a0, B0_GPa=float(b) / GPa)
    if not (np.isfinite(a0) and lattice_constants[0] <= a0 <= lattice_constants[-1]):
        raise Stop(
            EXIT_ENGINE_FAILED,
            f"the E(V) minimum (a0 = {a0:.4f} A) lies outside the sampled range "
            f"{lattice_constants[0]:.4f}-{lattice_constants[-1]:.4f} A after {len(windows)} windows: move "
            "lattice.a0_A or widen lattice.strain",
        )


def relax(atoms, calculator, fmax: float, max_steps: int) -> dict:
    """BFGS at fixed cell; the atoms keep a single-point calculator with the final energy and forces."""
    from ase.optimize import BFGS

    atoms.calc = calculator
    optimizer = BFGS(atoms, logfile=None)
    converged = bool(optimizer.run(fmax=fmax, steps=max_steps))
    energy = float(atoms.get_potential_energy())
    forces = np.array(atoms.get_forces())
    _freeze(atoms, energy, forces)
    return {
        "energy_eV": energy,
        "converged": converged,
        "n_steps": int(optimizer.nsteps),
        "max_force_eV_A": _max_force(forces),
    }


def _band_coordinate(images) -> list[float]:
    from ase.geometry import find_mic

    s = [0.0]
    for previous, current in zip(images[:-1], images[1:]):
        d, _ = find_mic(current.positions - previous.positions, previous.cell, pbc=True)
        s.append(s[-1] + float(np.linalg.norm(d)))
    return s


def run_neb(initial, final, calculator, config: BarrierConfig) -> tuple[dict, list]:
    """The NEB between two relaxed end points (single-point calculators attached); returns (result, band)."""
    from ase.mep import NEB
    from ase.mep.neb import idpp_interpolate, interpolate
    from ase.optimize import FIRE

    images = [initial] + [initial.copy() for _ in range(config.n_images)] + [final]
    for image in images[1:-1]:
        image.calc = calculator
    neb = NEB(images, k=SPRING_EV_A2, climb=False, method="improvedtangent", allow_shared_calculator=True)
    interpolate(images, mic=False, apply_constraint=False)
    idpp_interpolate(neb, traj=None, log=None, mic=True)

    n_steps = 0
    preconverge = max(PRECONVERGE_FACTOR * config.fmax, PRECONVERGE_MIN_EV_A)
    stages = [(False, preconverge), (True, config.fmax)] if config.climb else [(False, config.fmax)]
    for climb, fmax in stages:
        neb.climb = climb
        optimizer = FIRE(neb, logfile=None, maxstep=NEB_MAXSTEP_A)
        optimizer.run(fmax=fmax, steps=config.max_steps - n_steps)
        n_steps += int(optimizer.nsteps)
        if n_steps >= config.max_steps:
            break
    neb.climb = config.climb
    # One more evaluation at the final positions: the shared calculator keeps only the last image.
    max_force = _max_force(neb.get_forces())
    converged = bool(max_force < config.fmax)
    energies = np.array(neb.energies, dtype=float)
    band = []
    for i, image in enumerate(images):
        copy = image.copy()
        forces = neb.real_forces[i] if 0 < i < len(images) - 1 else image.get_forces()
        band.append(_freeze(copy, energies[i], forces))
    relative = energies - energies[0]
    saddle = int(np.argmax(relative))
    result = {
        "barrier_eV": float(relative[saddle]),
        "converged": converged,
        "max_force_eV_A": max_force,
        "n_steps": n_steps,
        "initial_energy_eV": float(energies[0]),
        "final_energy_eV": float(energies[-1]),
        "reaction_coordinate_A": _band_coordinate(images),
        "energies_eV": [float(e) for e in relative],
        "saddle_image": saddle,
        "climbing_image": bool(config.climb),
    }
    return result, band


# -- summary ----------------------------------------------------------------------------------


def _versions() -> dict[str, str | None]:
    import ase

    import aiida_lifdiff
    from aiida_lifdiff.runner.calculators import lammps_version

    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "ase": ase.__version__,
        "aiida_lifdiff": aiida_lifdiff.__version__,
    }
    for module in ("torch", "mace", "deepmd"):
        if module in sys.modules:
            versions[module] = str(getattr(sys.modules[module], "__version__", None))
    lammps = lammps_version()
    if lammps is not None:
        versions["lammps"] = lammps
    return versions


def _settings() -> dict:
    return {
        "interstitial_site_tolerance_A": INTERSTITIAL_SITE_TOLERANCE_A,
        "li_site_tolerance_A": LI_SITE_TOLERANCE_A,
        "f_site_tolerance_A": F_SITE_TOLERANCE_A,
        "symmetry_break_A": SYMMETRY_BREAK_A,
        "symmetry_break_seed": SYMMETRY_BREAK_SEED,
        "spring_eV_A2": SPRING_EV_A2,
        "preconverge_factor": PRECONVERGE_FACTOR,
        "preconverge_min_eV_A": PRECONVERGE_MIN_EV_A,
        "neb_optimizer": "FIRE",
        "neb_maxstep_A": NEB_MAXSTEP_A,
        "neb_method": "improvedtangent",
        "interpolation": "linear + idpp",
        "relax_optimizer": "BFGS",
        "eos": "birchmurnaghan",
    }


def _model_description(config: BarrierConfig, calculator=None) -> dict:
    from aiida_lifdiff.potentials import file_sha256
    from aiida_lifdiff.runner.calculators import model_file, model_species

    model = config.model
    path = model_file(model)
    description: dict[str, Any] = {"kind": model["kind"], "file": path, "sha256": file_sha256(path) if path else None}
    if model["kind"] == "classical":
        description.update(
            name=model["table"].get("name"),
            engine="LAMMPS Python module through ase LAMMPSlib, pair_style born/coul/long + kspace_style ewald",
            cutoff_A=model["cutoff"],
            kspace_accuracy=model["kspace_accuracy"],
        )
    elif model["kind"] == "mace":
        description.update(path=model["path"], head=model.get("head"), engine="mace-torch MACECalculator")
    else:
        description.update(factory=model["factory"], kwargs=model.get("kwargs") or {})
    description["species"] = config.species or model_species(model, calculator)
    return description


def _base_summary(config: BarrierConfig | None, code: int, message: str) -> dict:
    summary: dict[str, Any] = {"exit_code": code, "message": message}
    if config is not None:
        classical = config.model["kind"] == "classical"
        summary.update(
            device="cpu" if classical else config.device,
            dtype="float64" if classical else config.dtype,
            repeat=config.repeat,
            start_site=config.start_site,
            requested_paths=list(config.paths),
            neb={
                "n_images": config.n_images,
                "fmax_eV_A": config.fmax,
                "max_steps": config.max_steps,
                "climb": config.climb,
                "relax_fmax_eV_A": config.relax_fmax,
                "relax_max_steps": config.relax_max_steps,
            },
            lattice={
                "relax": config.relax_lattice,
                "a0_A": config.a0_A,
                "strain": config.strain,
                "n_points": config.n_points,
            },
            settings=_settings(),
        )
    return summary


def _write_summary(output_dir: Path, summary: dict) -> None:
    from aiida_lifdiff.runner.label import _finite_json

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output_dir / SUMMARY_FILE, _finite_json(summary))
    except OSError as exc:
        print(f"{PROGRAM}: could not write {SUMMARY_FILE}: {exc}", file=sys.stderr)


def _refuse(output_dir: Path, code: int, message: str, config: BarrierConfig | None = None, **extra: Any) -> int:
    print(f"{PROGRAM}: error: {message}", file=sys.stderr, flush=True)
    if output_dir.is_dir():
        _clean_outputs(output_dir)
    summary = _base_summary(config, code, message)
    summary.update(extra)
    summary.setdefault("versions", _versions())
    _write_summary(output_dir, summary)
    return code


def _write_extxyz(path: Path, images: Sequence) -> None:
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    clean = []
    for image in images:
        copy = image.copy()
        copy.info = {k: v for k, v in image.info.items() if k not in ("expected_positions",) and v is not None}
        copy.info["repeat"] = " ".join(str(n) for n in copy.info.get("repeat", ())) or None
        if image.calc is not None:
            copy.calc = SinglePointCalculator(copy, energy=image.get_potential_energy(), forces=image.get_forces())
        clean.append(copy)
    temporary = path.with_name(path.name + ".tmp")
    ase.io.write(temporary, clean, format="extxyz")
    os.replace(temporary, path)


def _clean_outputs(output_dir: Path) -> None:
    """Outputs of an earlier run in this folder must not pass for this run's."""
    for pattern in (SUMMARY_FILE, START_FILE, "path-*.extxyz", "endpoint-*.extxyz"):
        for old in output_dir.glob(pattern):
            old.unlink(missing_ok=True)


def _group_results(paths: dict[str, dict], requested: Sequence[str]) -> None:
    """Add each requested group (``knockoff_noncollinear``) as a copy of its lowest-barrier member."""
    for group, members in PATH_GROUPS.items():
        if group not in requested:
            continue
        done = [m for m in members if m in paths and paths[m].get("barrier_eV") is not None]
        if not done:
            paths[group] = {"variant": None, "barrier_eV": None, "members": list(members), "converged": False}
            continue
        best = min(done, key=lambda m: paths[m]["barrier_eV"])
        paths[group] = dict(paths[best], variant=best, members=list(members))


def run(config: BarrierConfig, output_dir: Path, started: float | None = None) -> int:
    """Compute what a validated input asks for; write the outputs; return the exit code."""
    started = time.monotonic() if started is None else started
    output_dir.mkdir(parents=True, exist_ok=True)
    _clean_outputs(output_dir)
    kind = config.model["kind"]
    from aiida_lifdiff.runner.calculators import CountingCalculator, EngineError, make_calculator, model_species

    if kind != "classical":
        from aiida_lifdiff.potentials.mace import check_device

        try:
            check_device(config.device)
        except RuntimeError as exc:
            return _refuse(output_dir, EXIT_NO_CUDA, str(exc), config)
    elif config.device != "cpu":
        print(f"{PROGRAM}: device {config.device!r} ignored: classical energies come from LAMMPS on the CPU")

    counters: list[CountingCalculator] = []

    def calculator_factory() -> CountingCalculator:
        counted = CountingCalculator(make_calculator(config.model, config.device, config.dtype))
        counters.append(counted)
        return counted

    try:
        main_calculator = calculator_factory()
        own = model_species(config.model, main_calculator.inner)
        if own is not None:
            missing = sorted(set(_REQUIRED_SPECIES) - set(own))
            if missing:
                raise InputError(f"the model covers {own}, not {missing}: LiF needs {list(_REQUIRED_SPECIES)}")
    except InputError as exc:
        return _refuse(output_dir, EXIT_BAD_INPUT, str(exc), config)
    description = _model_description(config, main_calculator.inner)
    tick = time.perf_counter()
    print(
        f"{PROGRAM}: model {description.get('file') or description.get('factory') or kind}, "
        f"repeat {config.repeat}, paths {config.paths or '(none)'}, pid {os.getpid()}",
        flush=True,
    )

    summary = _base_summary(config, EXIT_OK, "")
    summary.update(
        model=description,
        a0_A=config.a0_A,
        B0_GPa=None,
        eos=None,
        n_atoms=8 * config.repeat**3 + 1,
        start=None,
        initial_energy_eV=None,
        paths={},
        barriers_eV={},
    )
    problems: dict[int, list[str]] = {EXIT_NOT_CONVERGED: [], EXIT_WRONG_ENDPOINT: []}
    code = EXIT_OK
    message = ""
    try:
        if config.relax_lattice:
            fit_lattice(calculator_factory, config, summary)
            print(f"{PROGRAM}: a0 = {summary['a0_A']:.4f} A, B0 = {summary['B0_GPa']:.1f} GPa", flush=True)
        if config.paths or config.start_site != "tetrahedral":
            _run_paths(config, summary, main_calculator, output_dir, problems)
    except Stop as stop:
        code, message = stop.code, stop.message
    except EngineError as exc:
        code, message = EXIT_ENGINE_FAILED, f"engine failure: {exc}"
    _group_results(summary["paths"], config.paths)
    summary["barriers_eV"] = {name: entry.get("barrier_eV") for name, entry in summary["paths"].items()}
    if code == EXIT_OK:
        if problems[EXIT_WRONG_ENDPOINT]:
            code = EXIT_WRONG_ENDPOINT
        elif problems[EXIT_NOT_CONVERGED]:
            code = EXIT_NOT_CONVERGED
        parts = problems[EXIT_WRONG_ENDPOINT] + problems[EXIT_NOT_CONVERGED]
        if parts:
            message = "; ".join(parts)
        else:
            barriers = ", ".join(f"{k} {v:.4f} eV" for k, v in summary["barriers_eV"].items() if v is not None)
            message = f"a0 {summary['a0_A']:.4f} A" + (f"; barriers: {barriers}" if barriers else "")
    summary.update(
        exit_code=code,
        message=message,
        seconds=time.perf_counter() - tick,
        wall_s=time.monotonic() - started,
        n_force_calls=int(sum(c.n_calls for c in counters)),
        versions=_versions(),
    )
    _write_summary(output_dir, summary)
    stream = sys.stdout if code == EXIT_OK else sys.stderr
    print(f"{PROGRAM}: {message} ({summary['seconds']:.1f} s, exit code {code})", file=stream, flush=True)
    return code


def _run_paths(config: BarrierConfig, summary: dict, calculator, output_dir: Path, problems: dict) -> None:
    a0 = float(summary["a0_A"])
    ideal = start_structure(a0, config.repeat, config.start_site)
    start = perturbed(ideal, SYMMETRY_BREAK_A, SYMMETRY_BREAK_SEED)
    start.info.update(ideal.info)
    start_result = relax(start, calculator, config.relax_fmax, config.relax_max_steps)
    what = f"start: interstitial at the {config.start_site} site"
    check = check_configuration(start, ideal.info["expected_positions"], what)
    start_result["endpoint"] = check.as_dict()
    summary["start"] = start_result
    summary["initial_energy_eV"] = start_result["energy_eV"]
    _write_extxyz(output_dir / START_FILE, [start])
    print(f"{PROGRAM}: start relaxed, E = {start_result['energy_eV']:.6f} eV; {check.detail}", flush=True)
    concrete = config.concrete_paths
    if not check.ok:
        problems[EXIT_WRONG_ENDPOINT].append(check.detail + ("; no path computed" if concrete else ""))
        for name in concrete:
            summary["paths"][name] = {"barrier_eV": None, "converged": False, "skipped": "the start is not kept"}
        return
    if not start_result["converged"]:
        problems[EXIT_NOT_CONVERGED].append(
            f"the start relaxation did not reach {config.relax_fmax} eV/A in {config.relax_max_steps} steps "
            f"(max force {start_result['max_force_eV_A']:.3g} eV/A)"
        )
    for number, name in enumerate(concrete, start=1):
        summary["paths"][name] = _one_path(name, number, ideal, start, calculator, config, output_dir, problems)


def _one_path(name, number, ideal, start, calculator, config, output_dir, problems) -> dict:
    tick = time.perf_counter()
    path = PATHS[name]
    _, final_ideal, movers = path_end_structures(ideal, name)
    final = perturbed(final_ideal, SYMMETRY_BREAK_A, SYMMETRY_BREAK_SEED + number)
    final.info.update(final_ideal.info)
    relaxed = relax(final, calculator, config.relax_fmax, config.relax_max_steps)
    check = check_configuration(final, final_ideal.info["expected_positions"], f"{name} final end point")
    entry: dict[str, Any] = {
        "description": path.description,
        "angle_deg": path.angle_deg,
        "movers": movers,
        "n_images": config.n_images,
        "endpoint": check.as_dict(),
        "final_relax": {k: relaxed[k] for k in ("converged", "n_steps", "max_force_eV_A")},
        "initial_energy_eV": summary_energy(start),
        "final_energy_eV": relaxed["energy_eV"],
        "barrier_eV": None,
        "converged": False,
    }
    if not check.ok:
        problems[EXIT_WRONG_ENDPOINT].append(check.detail)
        _write_extxyz(output_dir / f"endpoint-{name}.extxyz", [final])
        entry["seconds"] = time.perf_counter() - tick
        print(f"{PROGRAM}: {name}: {check.detail}", file=sys.stderr, flush=True)
        return entry
    if not relaxed["converged"]:
        problems[EXIT_NOT_CONVERGED].append(
            f"{name}: the final end point relaxation did not reach {config.relax_fmax} eV/A "
            f"in {config.relax_max_steps} steps"
        )
    initial = _freeze(start.copy(), start.get_potential_energy(), start.get_forces())
    aligned = _freeze(align_to(final, start), final.get_potential_energy(), final.get_forces())
    result, band = run_neb(initial, aligned, calculator, config)
    for image in band:
        image.info.update(path=name, lattice_constant=float(start.info["lattice_constant"]))
    _write_extxyz(output_dir / f"path-{name}.extxyz", band)
    entry.update(result)
    entry["seconds"] = time.perf_counter() - tick
    if not result["converged"]:
        problems[EXIT_NOT_CONVERGED].append(
            f"NEB {name} not converged: max force {result['max_force_eV_A']:.3g} eV/A > {config.fmax} "
            f"after {result['n_steps']} steps"
        )
    print(
        f"{PROGRAM}: {name}: barrier {result['barrier_eV']:.4f} eV, converged {result['converged']}, "
        f"max force {result['max_force_eV_A']:.3g} eV/A, {result['n_steps']} steps, {entry['seconds']:.1f} s",
        flush=True,
    )
    return entry


def summary_energy(atoms) -> float:
    return float(atoms.get_potential_energy())


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (see the module docstring)."""
    started = time.monotonic()
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Lattice constant and NEB barriers of interstitial Li in LiF with any potential."
    )
    parser.add_argument("input", help="input JSON file")
    parser.add_argument("--output-dir", default=".", help="where summary.json and the bands go (default: .)")
    args = parser.parse_args(argv)
    output_dir = Path(args.output_dir)
    try:
        config = load_input(args.input)
    except InputError as exc:
        return _refuse(output_dir, EXIT_BAD_INPUT, str(exc))
    return run(config, output_dir, started)


if __name__ == "__main__":
    sys.exit(main())
