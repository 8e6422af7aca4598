"""Batched NVT: velocity Verlet + CSVR, every member of a batch advanced at once.

Written here rather than taken from torch-sim: torch-sim-atomistic 0.3.0 (the last one
for Python 3.11) integrates a batch at ONE temperature, while a batch here mixes
temperatures (and seeds) per member. The state lives in torch tensors on the device,
members concatenated along the atom axis, so one step is a handful of vectorised ops
plus one force evaluation for the whole batch.

Units are ASE's: positions A, energies eV, masses amu, time in ASE units
(``ase.units.fs`` per fs), so velocities are in A / (ASE time) exactly like
``Atoms.get_velocities()``, and 0.5 m v^2 is in eV with no conversion factor.

The integration state is float64 whatever the model dtype: the model sees float32
positions near the cell (see :mod:`aiida_lifdiff.runner.models`), but unwrapped
coordinates and the thermostat's energy book-keeping accumulate over 1e5-1e6 steps.

Thermostat: CSVR (G. Bussi, D. Donadio, M. Parrinello, J. Chem. Phys. 126, 014101
(2007)), applied once per step after the second half-kick with the full timestep, as
LAMMPS' ``fix temp/csvr`` does. It samples the canonical ensemble and only rescales
velocities, so momentum stays zero and dynamics are barely perturbed for tau >> the
vibrational periods. Each member draws its two random numbers per step from its own
``numpy`` generator, seeded by the member's seed: a member follows the same random
sequence whether it runs alone or in a batch, and the generator state goes into the
checkpoint. The energy the thermostat adds is accumulated per member so that
``econserve = E_total - added`` is the conserved quantity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms, units

from aiida_lifdiff.runner.models import Evaluation, batch_layout

EV_PER_A3_TO_BAR = 1.0 / units.bar


class BatchedNVT:
    """The dynamical state of a batch and one velocity Verlet + CSVR step for all of it.

    :param evaluator: a force provider (:mod:`aiida_lifdiff.runner.models`).
    :param atoms_list: the members' structures (positions, masses, cell are copied).
    :param temperatures_K: target temperature per member.
    :param rngs: one ``numpy.random.Generator`` per member (velocities and thermostat).
    :param timestep_fs: integration timestep.
    :param tau_fs: CSVR relaxation time.
    :param device: where the tensors live (the evaluator's device).
    """

    def __init__(
        self,
        evaluator: Any,
        atoms_list: Sequence[Atoms],
        temperatures_K: Sequence[float],
        rngs: Sequence[np.random.Generator],
        timestep_fs: float,
        tau_fs: float,
        device: torch.device | str = "cpu",
    ) -> None:
        self.evaluator = evaluator
        self.device = torch.device(device)
        self.n_members = len(atoms_list)
        self.ptr = batch_layout(atoms_list)
        self.n_atoms = np.diff(self.ptr)
        self.rngs = list(rngs)

        def tensor(array: Any) -> torch.Tensor:
            return torch.as_tensor(np.asarray(array, dtype=np.float64), device=self.device)

        self.member_of_atom = torch.as_tensor(np.repeat(np.arange(self.n_members), self.n_atoms), device=self.device)
        self.masses = tensor(np.concatenate([atoms.get_masses() for atoms in atoms_list]))[:, None]
        self.cells = tensor(np.array([np.asarray(atoms.cell) for atoms in atoms_list]))
        self.volumes = torch.abs(torch.linalg.det(self.cells))
        self.positions = tensor(np.concatenate([atoms.positions for atoms in atoms_list]))
        self.velocities = torch.zeros_like(self.positions)
        self.forces = torch.zeros_like(self.positions)
        self.energy = torch.full((self.n_members,), float("nan"), dtype=torch.float64, device=self.device)
        self.stress: torch.Tensor | None = None
        # Total momentum is zero and stays so (CSVR only rescales): 3 degrees of freedom fewer.
        self.n_dof_host = (3 * self.n_atoms - 3).astype(np.float64)
        self.n_dof = tensor(self.n_dof_host)
        self.target_kT = tensor(np.asarray(temperatures_K, dtype=np.float64) * units.kB)
        self.dt = float(timestep_fs) * units.fs
        self.c = math.exp(-float(timestep_fs) / float(tau_fs))
        self.thermostat_energy = torch.zeros(self.n_members, dtype=torch.float64, device=self.device)
        self.active = np.ones(self.n_members, dtype=bool)

    # -- per-member access -------------------------------------------------------------
    def atoms_slice(self, j: int) -> slice:
        return slice(int(self.ptr[j]), int(self.ptr[j + 1]))

    def initialise_velocities(self, j: int) -> None:
        """Maxwell-Boltzmann velocities from member j's generator, zero total momentum.

        Rescaled to exactly the target temperature (as LAMMPS' ``velocity create`` does),
        so equilibration starts from the right kinetic energy.
        """
        part = self.atoms_slice(j)
        masses = self.masses[part, 0].cpu().numpy()
        kT = float(self.target_kT[j])
        v = self.rngs[j].standard_normal((len(masses), 3)) * np.sqrt(kT / masses)[:, None]
        v -= (masses[:, None] * v).sum(axis=0) / masses.sum()
        kinetic = 0.5 * (masses[:, None] * v**2).sum()
        v *= math.sqrt(0.5 * float(self.n_dof[j]) * kT / kinetic)
        self.velocities[part] = torch.as_tensor(v, device=self.device)

    def set_member_state(self, j: int, positions: np.ndarray, velocities: np.ndarray) -> None:
        part = self.atoms_slice(j)
        self.positions[part] = torch.as_tensor(np.asarray(positions, dtype=np.float64), device=self.device)
        self.velocities[part] = torch.as_tensor(np.asarray(velocities, dtype=np.float64), device=self.device)

    def member_state(self, j: int) -> dict[str, np.ndarray]:
        """Unwrapped positions, velocities and the image offsets (wrapped = positions - images @ cell)."""
        part = self.atoms_slice(j)
        positions = self.positions[part]
        images = torch.floor(positions @ torch.linalg.inv(self.cells[j]))
        return {
            "positions": positions.cpu().numpy(),
            "velocities": self.velocities[part].cpu().numpy(),
            "images": images.cpu().numpy().astype(np.int64),
        }

    def deactivate(self, j: int) -> None:
        """Stop member j: it keeps its last positions and no longer moves or is evaluated."""
        self.active[j] = False
        part = self.atoms_slice(j)
        self.velocities[part] = 0.0
        self.forces[part] = 0.0

    # -- dynamics ----------------------------------------------------------------------
    def compute(self, compute_stress: bool = False) -> dict[int, str]:
        """Evaluate forces at the current positions; returns per-member error messages."""
        result: Evaluation = self.evaluator.evaluate(self.positions, self.active, compute_stress=compute_stress)
        self.energy = result.energy
        self.forces = result.forces
        self.stress = result.stress
        return result.errors

    def kinetic_energy(self) -> torch.Tensor:
        per_atom = 0.5 * (self.masses * self.velocities**2).sum(dim=1)
        return torch.zeros(self.n_members, dtype=torch.float64, device=self.device).index_add_(
            0, self.member_of_atom, per_atom
        )

    def step(self, compute_stress: bool = False) -> dict[int, str]:
        """One velocity Verlet step then CSVR; returns per-member errors of the force call."""
        self.velocities += (0.5 * self.dt) * self.forces / self.masses
        self.positions += self.dt * self.velocities
        errors = self.compute(compute_stress)
        self.velocities += (0.5 * self.dt) * self.forces / self.masses
        self.thermostat()
        return errors

    def thermostat(self) -> None:
        """CSVR: draw the new kinetic energy per member and rescale its velocities."""
        kinetic = self.kinetic_energy()
        draws = np.zeros((self.n_members, 2))
        n_dof = self.n_dof_host
        for j in np.flatnonzero(self.active):
            rng = self.rngs[j]
            draws[j, 0] = rng.standard_normal()
            draws[j, 1] = rng.chisquare(n_dof[j] - 1.0)
        r1, chi2 = torch.as_tensor(draws, device=self.device).unbind(dim=1)
        c = self.c
        target = 0.5 * self.n_dof * self.target_kT
        new = (
            kinetic
            + (1.0 - c) * (target * (r1**2 + chi2) / self.n_dof - kinetic)
            + 2.0 * r1 * torch.sqrt(torch.clamp(c * (1.0 - c) * target * kinetic / self.n_dof, min=0.0))
        )
        active = torch.as_tensor(self.active, device=self.device)
        usable = active & (kinetic > 0)
        alpha = torch.where(usable, torch.sqrt(torch.clamp(new, min=0.0) / torch.where(usable, kinetic, 1.0)), 1.0)
        self.velocities *= alpha[self.member_of_atom][:, None]
        self.thermostat_energy += torch.where(usable, (alpha**2 - 1.0) * kinetic, 0.0)

    # -- diagnostics -------------------------------------------------------------------
    def health(self) -> dict[str, np.ndarray]:
        """Per-member numbers for the failure checks, in one device -> host transfer."""
        force_sq = (self.forces**2).sum(dim=1)
        bad_atom = ~(torch.isfinite(force_sq) & torch.isfinite(self.positions).all(dim=1))
        bad = torch.zeros(self.n_members, dtype=torch.float64, device=self.device).index_add_(
            0, self.member_of_atom, bad_atom.to(torch.float64)
        )
        max_force_sq = torch.zeros(self.n_members, dtype=torch.float64, device=self.device).scatter_reduce(
            0, self.member_of_atom, torch.nan_to_num(force_sq, nan=0.0), reduce="amax", include_self=False
        )
        kinetic = self.kinetic_energy()
        stacked = torch.stack([bad, max_force_sq, kinetic, self.energy]).cpu().numpy()
        return {
            "non_finite_atoms": stacked[0],
            "max_force": np.sqrt(stacked[1]),
            "temperature_K": 2.0 * stacked[2] / (self.n_dof_host * units.kB),
            "kinetic": stacked[2],
            "energy": stacked[3],
        }

    def thermo(self) -> dict[str, np.ndarray]:
        """Temperature, potential/total/conserved energy and pressure (bar, NaN without stress)."""
        kinetic = self.kinetic_energy()
        if self.stress is not None:
            virial_pressure = -torch.diagonal(self.stress, dim1=1, dim2=2).sum(dim=1) / 3.0
        else:
            virial_pressure = torch.full_like(kinetic, float("nan"))
        # Kinetic part as LAMMPS reports it: N_dof k T / (3 V) = 2 K / (3 V).
        pressure = (virial_pressure + 2.0 * kinetic / (3.0 * self.volumes)) * EV_PER_A3_TO_BAR
        stacked = torch.stack([kinetic, self.energy, pressure, self.thermostat_energy]).cpu().numpy()
        kinetic, energy, pressure, added = stacked
        etotal = energy + kinetic
        return {
            "temp_K": 2.0 * kinetic / (self.n_dof_host * units.kB),
            "pe_eV": energy,
            "etotal_eV": etotal,
            "press_bar": pressure,
            "econserve_eV": etotal - added,
        }
