"""Synthetic LiF trajectories with planted hop events, for tests and benchmarks of the mechanism analysis.

A rock-salt LiF supercell with one interstitial Li at a tetrahedral site, Gaussian "thermal" noise on every
atom in every frame, an optional uniform drift of the whole crystal, and events planted at known frames,
each a smooth move (``0.5 - 0.5 cos``) over ``move_frames`` frames:

- ``direct``: the interstitial hops to a neighbouring tetrahedral site (a/2 along <100>);
- ``knockoff_collinear``: the interstitial enters one of its 4 neighbouring Li sites and that Li leaves to
  the next tetrahedral site along the same <111> (angle 0 deg);
- ``knockoff_noncollinear``: as above, but the knocked Li leaves along one of the 6 other <111> directions
  that do not lead back (70.5 or 109.5 deg);
- ``ring``: three mutually neighbouring lattice Li permute cyclically (A -> B -> C -> A);
- ``failed``: one Li (the interstitial or a lattice Li next to an empty tetrahedral site) moves 40-60 % of
  the way to a neighbouring empty site and comes back (``sin^2`` profile): not an event;
- ``pause``: nothing happens (vibration only).

Choices (which neighbour, which direction) are uniform at random from the seed, so a long schedule of one
kind is the textbook random process of that mechanism (collinear interstitialcy: tracer correlation
factor 2/3, Haven ratio 1/3; direct: 1 and 1). Pure numpy + ASE; no AiiDA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..structures import LIF_LATTICE_CONSTANT, build_lif_supercell

__all__ = ["PLANTED_KINDS", "SyntheticTrajectory", "planted_hops_trajectory"]

PLANTED_KINDS = ("direct", "knockoff_collinear", "knockoff_noncollinear", "ring", "failed", "pause")
_COUNTED = ("direct", "knockoff_collinear", "knockoff_noncollinear", "ring")

_CORNERS = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)])
_AXES = np.array([[2, 0, 0], [-2, 0, 0], [0, 2, 0], [0, -2, 0], [0, 0, 2], [0, 0, -2]])
_FCC_NN = np.array(
    [
        v
        for v in (np.array([i, j, k]) for i in (-2, 0, 2) for j in (-2, 0, 2) for k in (-2, 0, 2))
        if (v != 0).sum() == 2
    ]
)


@dataclass
class SyntheticTrajectory:
    """Unwrapped positions ``(n_frames, n_atoms, 3)``, the cell, symbols, frame times and the planted events."""

    positions: np.ndarray = field(repr=False)
    cell: np.ndarray = field(repr=False)
    symbols: list[str] = field(repr=False)
    times_ps: np.ndarray = field(repr=False)
    planted: list[dict]
    lattice_constant: float
    repeat: int

    @property
    def counts(self) -> dict[str, int]:
        """Planted events per analysis type (``failed`` and ``pause`` are not events)."""
        out = {k: 0 for k in (*_COUNTED, "other")}
        for event in self.planted:
            if event["kind"] in _COUNTED:
                out[event["kind"]] += 1
        return out

    @property
    def li_indices(self) -> list[int]:
        return [i for i, s in enumerate(self.symbols) if s == "Li"]

    @property
    def f_indices(self) -> list[int]:
        return [i for i, s in enumerate(self.symbols) if s == "F"]

    def to_atoms_list(self, wrap: bool = False) -> list:
        """One ``ase.Atoms`` per frame with ``info['time_ps']`` (positions wrapped into the cell if ``wrap``)."""
        from ase import Atoms

        frames = []
        for t, pos in zip(self.times_ps, self.positions, strict=True):
            atoms = Atoms(self.symbols, positions=pos, cell=self.cell, pbc=True)
            if wrap:
                atoms.wrap()
            atoms.info["time_ps"] = float(t)
            frames.append(atoms)
        return frames


def _smooth(n: int) -> np.ndarray:
    """Fractions of the move reached at the n frames of a move (ends at exactly 1)."""
    tau = np.arange(1, n + 1) / n
    return 0.5 - 0.5 * np.cos(np.pi * tau)


def planted_hops_trajectory(
    schedule: Sequence[str],
    repeat: int = 2,
    lattice_constant: float = LIF_LATTICE_CONSTANT,
    noise_A: float = 0.12,
    drift_A_per_frame: Sequence[float] = (0.0, 0.0, 0.0),
    spacing: int = 20,
    move_frames: int = 6,
    lead_frames: int = 20,
    timestep_ps: float = 0.01,
    failed_fraction: tuple[float, float] = (0.4, 0.6),
    seed: int = 0,
) -> SyntheticTrajectory:
    """A trajectory with one planted event (or pause) every ``spacing`` frames.

    Args:
        schedule: kinds from :data:`PLANTED_KINDS`, in order.
        repeat: conventional cubes per axis (2: 64 + 1 atoms, 3: 216 + 1).
        lattice_constant: A.
        noise_A: standard deviation of the Gaussian displacement of every atom, per coordinate and frame (A).
        drift_A_per_frame: uniform velocity of the whole crystal (A per frame); the positions stay unwrapped.
        spacing: frames from the start of one event to the start of the next (> ``move_frames``).
        move_frames: frames a move takes.
        lead_frames: quiet frames before the first and after the last event.
        timestep_ps: time between frames.
        failed_fraction: range of the fraction of the way a failed excursion reaches.
        seed: random seed (choices and noise).
    """
    unknown = [k for k in schedule if k not in PLANTED_KINDS]
    if unknown:
        raise ValueError(f"unknown planted kinds {unknown}; expected some of {PLANTED_KINDS}")
    if spacing <= move_frames:
        raise ValueError(f"spacing ({spacing}) must exceed move_frames ({move_frames})")
    rng = np.random.default_rng(seed)
    atoms = build_lif_supercell(repeat, lattice_constant, "tetrahedral")
    a = float(lattice_constant)
    quarter = a / 4.0
    period = 4 * repeat
    symbols = atoms.get_chemical_symbols()
    n_atoms = len(atoms)
    base0 = atoms.get_positions()
    # Site bookkeeping in quarter-lattice units: Li sites all even with even (q/2) sum, tetrahedral all odd.
    q = np.rint(base0 / quarter).astype(np.int64)
    li = [i for i, s in enumerate(symbols) if s == "Li"]

    def key(v: np.ndarray) -> tuple:
        return tuple(np.asarray(v) % period)

    def is_li_site(v: np.ndarray) -> bool:
        v = np.asarray(v)
        return bool(np.all(v % 2 == 0) and (v // 2).sum() % 2 == 0)

    occupant = {key(q[i]): i for i in li if is_li_site(q[i])}
    interstitial = n_atoms - 1

    n_frames = 2 * lead_frames + len(schedule) * spacing
    base = np.broadcast_to(base0, (n_frames, n_atoms, 3)).copy()
    planted = []
    for number, kind in enumerate(schedule):
        start = lead_frames + number * spacing
        moves: list[tuple[int, np.ndarray]] = []  # (atom, displacement in quarter units)
        record: dict = {"kind": kind, "frame": start}
        if kind == "direct":
            moves.append((interstitial, _AXES[rng.integers(len(_AXES))]))
        elif kind in ("knockoff_collinear", "knockoff_noncollinear"):
            qx = q[interstitial]
            corners = [c for c in _CORNERS if is_li_site(qx + c)]
            d1 = corners[rng.integers(len(corners))]
            target = occupant[key(qx + d1)]
            if kind == "knockoff_collinear":
                d2 = d1
            else:
                others = [c for c in _CORNERS if not np.array_equal(c, d1) and not np.array_equal(c, -d1)]
                d2 = others[rng.integers(len(others))]
            moves += [(interstitial, d1), (target, d2)]
            record["angle_deg"] = float(np.degrees(np.arccos(d1 @ d2 / 3.0)))
        elif kind == "ring":
            lattice_atoms = [i for i in li if i != interstitial]
            while True:
                first = lattice_atoms[rng.integers(len(lattice_atoms))]
                v1 = _FCC_NN[rng.integers(len(_FCC_NN))]
                partners = [v for v in _FCC_NN if (np.abs(v - v1) > 0).sum() == 2 and np.abs(v - v1).max() == 2]
                v2 = partners[rng.integers(len(partners))]
                second, third = occupant.get(key(q[first] + v1)), occupant.get(key(q[first] + v2))
                if second not in (None, interstitial) and third not in (None, interstitial):
                    break
            moves += [(first, v1), (second, v2 - v1), (third, -v2)]
        elif kind == "failed":
            if rng.random() < 0.5:
                mover, d = interstitial, _AXES[rng.integers(len(_AXES))]
            else:
                qx = q[interstitial]
                neighbours = [occupant[key(qx + c)] for c in _CORNERS if is_li_site(qx + c)]
                mover = neighbours[rng.integers(len(neighbours))]
                free = [c for c in _CORNERS if key(q[mover] + c) != key(qx)]
                d = free[rng.integers(len(free))]
            fraction = rng.uniform(*failed_fraction)
            tau = np.arange(1, move_frames + 1) / (move_frames + 1)
            profile = fraction * np.sin(np.pi * tau) ** 2
            base[start : start + move_frames, mover] += profile[:, None] * d * quarter
            record.update(atoms=[int(mover)], fraction=float(fraction))
            planted.append(record)
            continue
        else:  # pause
            planted.append(record)
            continue
        profile = _smooth(move_frames)
        for atom, d in moves:
            base[start : start + move_frames, atom] += profile[:, None] * d * quarter
            base[start + move_frames :, atom] += d * quarter
        for atom, _ in moves:
            if occupant.get(key(q[atom])) == atom:
                del occupant[key(q[atom])]
        for atom, d in moves:
            q[atom] = q[atom] + d
            if is_li_site(q[atom]):
                occupant[key(q[atom])] = atom
        if kind.startswith("knockoff"):
            interstitial = moves[1][0]
        record["atoms"] = [int(atom) for atom, _ in moves]
        planted.append(record)

    drift = np.arange(n_frames)[:, None] * np.asarray(drift_A_per_frame, dtype=float)[None, :]
    positions = base + drift[:, None, :] + rng.normal(0.0, noise_A, size=base.shape)
    return SyntheticTrajectory(
        positions=positions,
        cell=np.array(atoms.get_cell()),
        symbols=symbols,
        times_ps=np.arange(n_frames) * float(timestep_ps),
        planted=planted,
        lattice_constant=a,
        repeat=int(repeat),
    )
