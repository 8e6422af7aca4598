"""Choosing configurations to label: frames from MD, rattled and strained copies (no AiiDA imports).

The study's training sets are MD snapshots of the interstitial cell at several temperatures, plus
copies with random displacements (configurations MD rarely visits: compressed contacts, the hop
saddle) and small cell strains (so stress is learned). Everything is drawn from one seeded generator,
so the same settings give the same frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from ase import Atoms

#: Settings of :func:`sample_configurations` and their defaults.
SAMPLING_DEFAULTS = {
    "every": 1,  # take every n-th trajectory frame
    "skip": 0,  # frames dropped at the start of each trajectory (equilibration already discarded by the MD)
    "max_frames_per_trajectory": None,
    "rattle_fraction": 0.0,  # rattled copies, as a fraction of the MD frames
    "rattle_sigma_A": [0.03, 0.12],  # displacement std, drawn uniformly in this range per copy
    "strain_fraction": 0.0,  # strained copies, as a fraction of the MD frames
    "max_strain": 0.03,  # largest strain component (volume and shear)
    "seed": 0,
}


class SamplingError(ValueError):
    """Sampling settings that cannot be satisfied."""


def validate_sampling(settings: Mapping) -> str | None:
    """A message if ``settings`` are unusable, else None."""
    unknown = set(settings) - set(SAMPLING_DEFAULTS)
    if unknown:
        return f"unknown sampling settings {sorted(unknown)}; allowed: {sorted(SAMPLING_DEFAULTS)}"
    merged = {**SAMPLING_DEFAULTS, **settings}
    if int(merged["every"]) < 1 or int(merged["skip"]) < 0:
        return "sampling `every` must be >= 1 and `skip` >= 0"
    for key in ("rattle_fraction", "strain_fraction"):
        if not 0.0 <= float(merged[key]) <= 10.0:
            return f"{key} must be between 0 and 10, got {merged[key]}"
    sigma = merged["rattle_sigma_A"]
    if len(sigma) != 2 or not 0.0 < float(sigma[0]) <= float(sigma[1]) < 0.5:
        return f"rattle_sigma_A must be [low, high] with 0 < low <= high < 0.5 A, got {sigma}"
    if not 0.0 <= float(merged["max_strain"]) < 0.2:
        return f"max_strain must be in [0, 0.2), got {merged['max_strain']}"
    return None


def trajectory_frames(
    symbols: Sequence[str],
    positions: np.ndarray,
    cells: np.ndarray,
    every: int = 1,
    skip: int = 0,
    max_frames: int | None = None,
    info: Mapping | None = None,
) -> list[Atoms]:
    """Wrapped snapshots of an (unwrapped) trajectory, every ``every``-th after the first ``skip``."""
    picks = list(range(int(skip), len(positions), int(every)))
    if max_frames is not None:
        picks = picks[: int(max_frames)]
    frames = []
    for index in picks:
        atoms = Atoms(list(symbols), positions=positions[index], cell=cells[index], pbc=True)
        atoms.wrap()
        # extxyz cannot hold None; a missing value is simply absent.
        atoms.info.update({k: v for k, v in (info or {}).items() if v is not None})
        atoms.info["config_type"] = "md"
        atoms.info["trajectory_frame"] = int(index)
        frames.append(atoms)
    return frames


def rattled_copies(frames: Sequence[Atoms], count: int, sigma_range: Sequence[float], rng) -> list[Atoms]:
    """``count`` copies of randomly chosen frames with Gaussian displacements of a random width."""
    copies = []
    for pick in rng.integers(0, len(frames), size=int(count)):
        atoms = frames[int(pick)].copy()
        sigma = float(rng.uniform(*sigma_range))
        atoms.positions += rng.normal(0.0, sigma, atoms.positions.shape)
        atoms.wrap()
        atoms.info.update(config_type="rattled", rattle_sigma_A=sigma)
        copies.append(atoms)
    return copies


def strained_copies(frames: Sequence[Atoms], count: int, max_strain: float, rng) -> list[Atoms]:
    """``count`` copies of randomly chosen frames under a random strain of up to ``max_strain``.

    The deformation is lower-triangular (ASE's row-vector convention), so an orthogonal cell stays in
    LAMMPS' restricted-triclinic form and the classical labeller's forces need no rotation back.
    """
    copies = []
    for pick in rng.integers(0, len(frames), size=int(count)):
        atoms = frames[int(pick)].copy()
        deformation = np.eye(3) + np.tril(rng.uniform(-max_strain, max_strain, (3, 3)))
        atoms.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
        atoms.info.update(config_type="strained")
        copies.append(atoms)
    return copies


def sample_configurations(trajectories: Sequence[dict], settings: Mapping) -> list[Atoms]:
    """MD snapshots of every trajectory plus rattled and strained copies, per ``settings``.

    Each trajectory is a dict with ``symbols``, ``positions`` (unwrapped, frames x atoms x 3), ``cells``
    and ``info`` (kept on every frame, e.g. the temperature).
    """
    message = validate_sampling(settings)
    if message:
        raise SamplingError(message)
    merged = {**SAMPLING_DEFAULTS, **settings}
    rng = np.random.default_rng(int(merged["seed"]))
    frames: list[Atoms] = []
    for trajectory in trajectories:
        frames += trajectory_frames(
            trajectory["symbols"],
            np.asarray(trajectory["positions"]),
            np.asarray(trajectory["cells"]),
            every=merged["every"],
            skip=merged["skip"],
            max_frames=merged["max_frames_per_trajectory"],
            info=trajectory.get("info"),
        )
    if not frames:
        raise SamplingError("the trajectories gave no frames with these settings (skip/every too large?)")
    n_md = len(frames)
    frames += rattled_copies(frames[:n_md], round(merged["rattle_fraction"] * n_md), merged["rattle_sigma_A"], rng)
    frames += strained_copies(frames[:n_md], round(merged["strain_fraction"] * n_md), merged["max_strain"], rng)
    return frames
