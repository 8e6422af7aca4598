"""Synthetic unwrapped trajectories with an analytically known diffusion coefficient (pure numpy).

Used by the tests and the benchmark of the diffusivity estimators. Each trajectory has ``n_mobile`` mobile
atoms (indices ``0..n_mobile-1``) followed by framework atoms that only vibrate around fixed sites. Kinds:

- ``gaussian``: the mobile atoms perform independent Gaussian random walks (no vibration of their own);
- ``thermal``: as ``gaussian``, plus i.i.d. Gaussian vibration of every atom around its walk position or
  site in every frame (a vibrational plateau of ``6 vibration^2`` in the MSD);
- ``drift``: as ``thermal``, plus a uniform drift of the whole cell at a random velocity (removed by
  passing the framework atoms as ``reference_indices``);
- ``hopping``: every mobile atom jumps by ``jump_length`` along one of the six cubic directions at the
  times of a Poisson process of rate ``6 D / jump_length^2``, plus vibration as in ``thermal``.

The tracer diffusivity of every kind is ``D`` exactly (for hopping, ``rate * jump_length^2 / 6``); the
collective diffusivity of the summed displacement of the independent mobile atoms is ``n_mobile * D``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["WALK_KINDS", "SyntheticWalks", "synthetic_walks"]

WALK_KINDS = ("gaussian", "thermal", "drift", "hopping")

_CUBIC_DIRECTIONS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)


@dataclass(frozen=True)
class SyntheticWalks:
    """Replicas ``(n_frames, n_atoms, 3)`` in Angstrom, their frame times (ps) and the true diffusivities."""

    trajectories: list[np.ndarray]
    times_ps: np.ndarray
    mobile_indices: np.ndarray
    framework_indices: np.ndarray
    D_tracer_A2_ps: float
    D_collective_A2_ps: float
    kind: str


def synthetic_walks(
    kind: str,
    rng: np.random.Generator,
    n_replicas: int = 1,
    n_frames: int = 2000,
    n_atoms: int = 36,
    n_mobile: int = 4,
    dt_ps: float = 0.01,
    D_A2_ps: float = 1.33,
    vibration_A: float = 0.3,
    jump_length_A: float = 2.0,
    drift_speed_A_ps: float = 2.0,
    cell_length_A: float = 12.0,
) -> SyntheticWalks:
    """Generate ``n_replicas`` independent trajectories of one kind (see the module docstring).

    ``vibration_A`` is the standard deviation per Cartesian component of the i.i.d. vibration (framework
    atoms always vibrate; mobile atoms do so except in ``gaussian``). ``drift_speed_A_ps`` is the speed of
    the uniform drift of ``drift`` (random direction per replica).
    """
    if kind not in WALK_KINDS:
        raise ValueError(f"kind must be one of {WALK_KINDS}; got {kind!r}")
    if not 0 < n_mobile < n_atoms:
        raise ValueError(f"need 0 < n_mobile < n_atoms; got n_mobile={n_mobile}, n_atoms={n_atoms}")
    times = np.arange(n_frames) * dt_ps
    n_framework = n_atoms - n_mobile
    trajs = []
    for _ in range(n_replicas):
        start = rng.uniform(0.0, cell_length_A, size=(1, n_mobile, 3))
        if kind == "hopping":
            rate = 6.0 * D_A2_ps / jump_length_A**2
            n_hops = rng.poisson(rate * dt_ps, size=(n_frames - 1) * n_mobile)
            directions = _CUBIC_DIRECTIONS[rng.integers(0, 6, size=int(n_hops.sum()))]
            slot = np.repeat(np.arange(n_hops.size), n_hops)
            steps = np.zeros((n_hops.size, 3))
            np.add.at(steps, slot, jump_length_A * directions)
            steps = steps.reshape(n_frames - 1, n_mobile, 3)
        else:
            steps = rng.normal(scale=np.sqrt(2.0 * D_A2_ps * dt_ps), size=(n_frames - 1, n_mobile, 3))
        mobile = np.concatenate([start, start + np.cumsum(steps, axis=0)], axis=0)
        sites = rng.uniform(0.0, cell_length_A, size=(1, n_framework, 3))
        pos = np.concatenate([mobile, np.broadcast_to(sites, (n_frames, n_framework, 3))], axis=1)
        noise = rng.normal(scale=vibration_A, size=pos.shape)
        if kind == "gaussian":
            noise[:, :n_mobile] = 0.0
        pos = pos + noise
        if kind == "drift":
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            pos = pos + (drift_speed_A_ps * times)[:, None, None] * direction
        trajs.append(pos)
    return SyntheticWalks(
        trajectories=trajs,
        times_ps=times,
        mobile_indices=np.arange(n_mobile),
        framework_indices=np.arange(n_mobile, n_atoms),
        D_tracer_A2_ps=float(D_A2_ps),
        D_collective_A2_ps=float(n_mobile * D_A2_ps),
        kind=kind,
    )
