"""Force providers of ``lifdiff-md``: a batched MACE evaluator and a per-member ASE loop.

Both take the unwrapped positions of every atom of a batch (one float64 tensor, members
concatenated) and return per-member energies, per-atom forces and, on request,
per-member stresses, all as float64 tensors on the runner's device. Members marked
inactive (failed) are skipped: their energy is NaN and their forces zero.

MACE batching
-------------
All active members go through the model in ONE call per step, as one disconnected
graph. The static part of that graph (one-hot species, head, cell, ``batch``/``ptr``)
is built once per active set with mace-torch's own ``AtomicData.from_config`` and
``torch_geometric.Batch``; the edges are replaced every step:

- Neighbour lists come from mace-torch's ``get_neighborhood`` (matscipy), built per
  member at ``r_max + skin`` on the positions wrapped into the cell, and reused until an
  atom of that member has moved more than ``skin / 2`` (a Verlet list). Measured on this
  2-core CPU, 217 atoms, 5 A: matscipy 3 ms per list, ASE's ``neighbor_list`` 38 ms.
- Every step the candidate edges are cut back to ``|r| < r_max`` on the device, so the
  model sees exactly the edge set a fresh list would give (only the order differs). MACE
  would give zero-weight messages on longer edges anyway (its cutoff envelope is
  ``* (r < r_max)``), but the cut keeps that independent of model internals such as
  density-normalised interaction blocks.
- Positions fed to the model are the unwrapped ones minus the lattice translation chosen
  at the last rebuild, so they stay near the cell even after long runs (float32 models
  would otherwise lose precision on coordinates that grew by diffusion).
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import torch  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.calculators.calculator import PropertyNotImplementedError  # noqa: E402
from ase.geometry import wrap_positions  # noqa: E402

from aiida_lifdiff.potentials import file_sha256  # noqa: E402
from aiida_lifdiff.potentials.mace import load_mace_model, resolve_mace_model  # noqa: E402

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class ModelError(ValueError):
    """The model cannot be used for these members (missing file, species not covered, ...)."""


@dataclass
class Evaluation:
    """Results for one batch: float64 tensors on the device, plus per-member error messages."""

    energy: torch.Tensor  # (n_members,) eV, NaN for inactive members
    forces: torch.Tensor  # (n_atoms_total, 3) eV/A, zero for inactive members
    stress: torch.Tensor | None  # (n_members, 3, 3) eV/A^3 (ASE sign convention), or None
    errors: dict[int, str] = field(default_factory=dict)


def batch_layout(atoms_list: Sequence[Atoms]) -> np.ndarray:
    """``ptr``: member j owns atoms ``ptr[j]:ptr[j+1]`` of the concatenated arrays."""
    return np.concatenate([[0], np.cumsum([len(atoms) for atoms in atoms_list])]).astype(np.int64)


def _select_head(model: torch.nn.Module, head: str | None) -> tuple[list[str], str]:
    heads = list(getattr(model, "heads", None) or ["Default"])
    if head is not None:
        if head not in heads:
            raise ModelError(f"head {head!r} is not in the model's heads {heads}")
        return heads, head
    if len(heads) == 1:
        return heads, heads[0]
    defaults = [h for h in heads if h.lower() == "default"]
    if not defaults:
        raise ModelError(f"the model has several heads {heads} and none is 'default'; set model.head")
    return heads, defaults[0]


class MaceModel:
    """A MACE model file loaded once on the device; :meth:`evaluator` binds it to a batch."""

    kind = "mace"

    def __init__(
        self,
        name_or_path: str | os.PathLike,
        device: str = "cpu",
        dtype: str = "float64",
        head: str | None = None,
        skin: float = 1.0,
    ) -> None:
        try:
            self.path = resolve_mace_model(name_or_path)
        except FileNotFoundError as exc:
            raise ModelError(str(exc)) from exc
        try:
            self.model = load_mace_model(self.path, device=device, dtype=dtype)
        except RuntimeError:
            raise  # CUDA missing: the caller maps it to its own exit code
        except Exception as exc:  # unpickling garbage raises anything
            raise ModelError(f"cannot load MACE model {self.path}: {exc}") from exc
        self.device = torch.device(device)
        self.dtype = dtype
        self.torch_dtype = TORCH_DTYPES[dtype]
        self.skin = float(skin)
        self.atomic_numbers = [int(z) for z in self.model.atomic_numbers]
        self.r_max = float(self.model.r_max)
        self.heads, self.head = _select_head(self.model, head)
        self.sha256 = file_sha256(self.path)

    @property
    def description(self) -> dict:
        return {"kind": "mace", "path": str(self.path), "sha256": self.sha256, "head": self.head}

    def check_species(self, atoms: Atoms, name: str) -> None:
        missing = sorted(set(atoms.get_chemical_symbols()) - set(_symbols(self.atomic_numbers)))
        if missing:
            raise ModelError(
                f"member {name!r}: species {missing} are not covered by the MACE model "
                f"(it knows {_symbols(self.atomic_numbers)})"
            )

    def evaluator(self, atoms_list: Sequence[Atoms]) -> MaceBatchEvaluator:
        return MaceBatchEvaluator(self, atoms_list)


def _symbols(numbers: Sequence[int]) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[z] for z in numbers]


class MaceBatchEvaluator:
    """One model call per step for all active members of a batch (see the module doc)."""

    def __init__(self, model: MaceModel, atoms_list: Sequence[Atoms]) -> None:
        from mace import data as mace_data
        from mace.tools import AtomicNumberTable, torch_tools

        self.m = model
        self.device = model.device
        self.dtype = model.torch_dtype
        self.ptr = batch_layout(atoms_list)
        self.n_members = len(atoms_list)
        n_total = int(self.ptr[-1])
        self.member_of_atom = torch.as_tensor(
            np.repeat(np.arange(self.n_members), np.diff(self.ptr)), device=self.device
        )
        self.cells = np.array([np.asarray(atoms.cell, dtype=np.float64) for atoms in atoms_list])
        self._cells_t = torch.as_tensor(self.cells, device=self.device)
        self._inv_cells_t = torch.linalg.inv(self._cells_t)
        self.cutoff = model.r_max + model.skin
        z_table = AtomicNumberTable(model.atomic_numbers)
        # The per-member graphs are built once, with mace-torch's own code, for everything
        # but the edges (species one-hot, head index, cell, pbc); their edges are ignored.
        self._graphs = []
        with torch_tools.default_dtype(model.dtype):
            for atoms in atoms_list:
                config = mace_data.config_from_atoms(atoms, head_name=model.head)
                self._graphs.append(
                    mace_data.AtomicData.from_config(config, z_table=z_table, cutoff=model.r_max, heads=model.heads)
                )
        self._edges: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = [None] * self.n_members
        self._ref_positions = torch.zeros((n_total, 3), dtype=torch.float64, device=self.device)
        self._wrap_offset = torch.zeros((n_total, 3), dtype=torch.float64, device=self.device)
        self._active_key: tuple[bool, ...] | None = None
        self._template: dict[str, Any] = {}
        self._atom_index: torch.Tensor | None = None
        self._chosen: torch.Tensor | None = None
        self._edge_cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.timings = {"neighbour_s": 0.0, "model_s": 0.0, "rebuilds": 0}

    def _set_active(self, active: np.ndarray) -> None:
        from mace.tools import torch_geometric

        key = tuple(bool(a) for a in active)
        if key == self._active_key:
            return
        self._active_key = key
        chosen = [j for j in range(self.n_members) if key[j]]
        batch = torch_geometric.Batch.from_data_list([self._graphs[j] for j in chosen]).to(self.device)
        template = batch.to_dict()
        for name in ("edge_index", "shifts", "unit_shifts", "positions"):
            template.pop(name, None)
        self._template = template
        self._atom_index = torch.as_tensor(
            np.concatenate([np.arange(self.ptr[j], self.ptr[j + 1]) for j in chosen]), device=self.device
        )
        self._chosen = torch.as_tensor(chosen, dtype=torch.long, device=self.device)
        self._edge_cache = None

    def _rebuild(self, j: int, positions: torch.Tensor) -> None:
        from mace.data.neighborhood import get_neighborhood

        start, stop = int(self.ptr[j]), int(self.ptr[j + 1])
        pos = positions[start:stop]
        images = torch.floor(pos @ self._inv_cells_t[j])
        offset = images @ self._cells_t[j]
        wrapped = (pos - offset).cpu().numpy()
        edge_index, _, unit_shifts, _ = get_neighborhood(
            positions=wrapped, cutoff=self.cutoff, pbc=(True, True, True), cell=self.cells[j].copy()
        )
        # Kept on the device per member, so a rebuild ships only this member's edges.
        units = torch.as_tensor(unit_shifts, dtype=torch.float64, device=self.device)
        self._edges[j] = (
            torch.as_tensor(edge_index, dtype=torch.long, device=self.device),
            units.to(self.dtype),
            (units @ self._cells_t[j]).to(self.dtype),
        )
        self._ref_positions[start:stop] = pos
        self._wrap_offset[start:stop] = offset
        self._edge_cache = None
        self.timings["rebuilds"] += 1

    def _candidate_edges(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Concatenated Verlet-list edges of the active members, in active-atom numbering."""
        if self._edge_cache is None:
            indices, unit_shifts, shifts = [], [], []
            offset = 0
            for j in range(self.n_members):
                if not self._active_key[j]:
                    continue
                edge_index, units, cartesian = self._edges[j]
                indices.append(edge_index + offset)
                unit_shifts.append(units)
                shifts.append(cartesian)
                offset += int(self.ptr[j + 1] - self.ptr[j])
            self._edge_cache = (torch.cat(indices, dim=1), torch.cat(unit_shifts), torch.cat(shifts))
        return self._edge_cache

    def evaluate(self, positions: torch.Tensor, active: np.ndarray, compute_stress: bool = False) -> Evaluation:
        n_total = positions.shape[0]
        energy = torch.full((self.n_members,), float("nan"), dtype=torch.float64, device=self.device)
        forces = torch.zeros((n_total, 3), dtype=torch.float64, device=self.device)
        stress = (
            torch.full((self.n_members, 3, 3), float("nan"), dtype=torch.float64, device=self.device)
            if compute_stress
            else None
        )
        errors: dict[int, str] = {}
        if not active.any():
            return Evaluation(energy, forces, stress, errors)

        tick = time.perf_counter()
        moved = ((positions - self._ref_positions) ** 2).sum(dim=1)
        max_moved = torch.zeros(self.n_members, dtype=torch.float64, device=self.device).scatter_reduce(
            0, self.member_of_atom, moved, reduce="amax", include_self=False
        )
        max_moved = max_moved.cpu().numpy()
        usable = active.copy()
        for j in np.flatnonzero(active):
            if not np.isfinite(max_moved[j]):
                errors[j] = "non-finite positions"
                usable[j] = False
            elif self._edges[j] is None or max_moved[j] > (0.5 * self.m.skin) ** 2:
                self._rebuild(j, positions)
        self._set_active(usable)
        if not usable.any():
            return Evaluation(energy, forces, stress, errors)
        edge_index, unit_shifts, shifts = self._candidate_edges()
        model_positions = (positions - self._wrap_offset)[self._atom_index].to(self.dtype)
        vectors = model_positions[edge_index[1]] - model_positions[edge_index[0]] + shifts
        keep = (vectors * vectors).sum(dim=1) < self.m.r_max**2
        self.timings["neighbour_s"] += time.perf_counter() - tick

        tick = time.perf_counter()
        data = dict(self._template)
        data["positions"] = model_positions.detach()
        data["edge_index"] = edge_index[:, keep]
        data["unit_shifts"] = unit_shifts[keep]
        data["shifts"] = shifts[keep]
        out = self.m.model(data, training=False, compute_force=True, compute_stress=compute_stress)
        chosen = self._chosen
        energy[chosen] = out["energy"].detach().to(torch.float64)
        forces[self._atom_index] = out["forces"].detach().to(torch.float64)
        if compute_stress:
            stress[chosen] = out["stress"].detach().to(torch.float64)
        self.timings["model_s"] += time.perf_counter() - tick
        return Evaluation(energy, forces, stress, errors)


def import_factory(spec: str) -> Callable[..., Any]:
    """``'package.module:function'`` (or ``module:Class.attr``) -> the callable."""
    module_name, _, attribute = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"cannot import the calculator factory {spec!r}: {exc}") from exc
    if not callable(target):
        raise ModelError(f"calculator factory {spec!r} is not callable")
    return target


class AseModel:
    """Any ASE calculator, made by ``factory(**kwargs)`` once per member (no batching)."""

    kind = "ase"

    def __init__(self, factory: str, kwargs: Mapping[str, Any] | None = None, device: str = "cpu") -> None:
        self.factory_spec = factory
        self.factory = import_factory(factory)
        self.kwargs = dict(kwargs or {})
        # The calculator computes on its own terms; integrating on the CPU avoids shipping
        # its numpy results to a GPU and back every step.
        self.device = torch.device("cpu")
        self.dtype = "float64"
        # A factory that loads a model file (``path`` kwarg: DeePMD, universal potentials) is identified by it.
        path = self.kwargs.get("path")
        self.sha256 = file_sha256(path) if isinstance(path, str) and os.path.isfile(path) else None

    @property
    def description(self) -> dict:
        return {"kind": "ase", "factory": self.factory_spec, "kwargs": self.kwargs, "sha256": self.sha256}

    def check_species(self, atoms: Atoms, name: str) -> None:
        """Species coverage is the calculator's business; it raises on the first evaluation."""

    def evaluator(self, atoms_list: Sequence[Atoms]) -> AseBatchEvaluator:
        return AseBatchEvaluator(self, atoms_list)


class AseBatchEvaluator:
    """Loops over the members; one calculator each, so no state leaks between systems."""

    def __init__(self, model: AseModel, atoms_list: Sequence[Atoms]) -> None:
        self.ptr = batch_layout(atoms_list)
        self.n_members = len(atoms_list)
        self.device = model.device
        self.atoms = []
        for atoms in atoms_list:
            copy = atoms.copy()
            try:
                copy.calc = model.factory(**model.kwargs)
            except Exception as exc:
                raise ModelError(f"calculator factory {model.factory_spec!r} failed: {exc}") from exc
            self.atoms.append(copy)
        self.timings = {"neighbour_s": 0.0, "model_s": 0.0, "rebuilds": 0}

    def evaluate(self, positions: torch.Tensor, active: np.ndarray, compute_stress: bool = False) -> Evaluation:
        tick = time.perf_counter()
        everything = positions.detach().cpu().numpy()
        energy = np.full(self.n_members, np.nan)
        forces = np.zeros_like(everything)
        stress = np.full((self.n_members, 3, 3), np.nan) if compute_stress else None
        errors: dict[int, str] = {}
        for j in np.flatnonzero(active):
            atoms = self.atoms[j]
            start, stop = self.ptr[j], self.ptr[j + 1]
            try:
                atoms.positions = wrap_positions(everything[start:stop], atoms.cell, pbc=True)
                energy[j] = atoms.get_potential_energy()
                forces[start:stop] = atoms.get_forces()
                if compute_stress:
                    try:
                        stress[j] = atoms.get_stress(voigt=False)
                    except (PropertyNotImplementedError, NotImplementedError):
                        pass  # pressure is reported as NaN
            except Exception as exc:  # any calculator error stops this member only
                errors[j] = f"calculator error: {type(exc).__name__}: {exc}"
        self.timings["model_s"] += time.perf_counter() - tick

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(array, dtype=torch.float64, device=self.device)

        return Evaluation(tensor(energy), tensor(forces), None if stress is None else tensor(stress), errors)


def open_model(spec: Mapping[str, Any], device: str, dtype: str, skin: float = 1.0) -> MaceModel | AseModel:
    """The model of a validated input's ``model`` entry."""
    if spec["kind"] == "mace":
        return MaceModel(spec["path"], device=device, dtype=dtype, head=spec.get("head"), skin=skin)
    return AseModel(spec["factory"], spec.get("kwargs"), device=device)


def evaluate_structures(
    model: MaceModel | AseModel, atoms_list: Sequence[Atoms], compute_stress: bool = True
) -> list[dict[str, Any]]:
    """Energy, forces and stress of each structure from ONE batched evaluation (numpy, eV/A units)."""
    evaluator = model.evaluator(atoms_list)
    positions = torch.as_tensor(
        np.concatenate([atoms.positions for atoms in atoms_list]), dtype=torch.float64, device=model.device
    )
    result = evaluator.evaluate(positions, np.ones(len(atoms_list), dtype=bool), compute_stress=compute_stress)
    if result.errors:
        raise ModelError(f"evaluation failed: {result.errors}")
    ptr = batch_layout(atoms_list)
    out = []
    for j in range(len(atoms_list)):
        item = {
            "energy": float(result.energy[j]),
            "forces": result.forces[ptr[j] : ptr[j + 1]].cpu().numpy(),
        }
        if result.stress is not None:
            item["stress"] = result.stress[j].cpu().numpy()
        out.append(item)
    return out
