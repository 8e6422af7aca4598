"""Trajectory preprocessing and mean-squared displacement (MSD) kernels.

Conventions: positions in Angstrom, arrays shaped ``(n_frames, n_atoms, 3)``, cells with the lattice
vectors as rows. Nothing here knows about time; the caller attaches the frame spacing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft

__all__ = [
    "msd_fft",
    "msd_fft_per_particle",
    "remove_drift",
    "summed_displacement",
    "unwrap",
]


def _as_trajectory(x: np.ndarray, name: str = "positions") -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{name} must have shape (n_frames, n_atoms, 3); got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must contain at least one frame and one atom; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def _as_indices(indices: Sequence[int], n_atoms: int, name: str) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of atom indices; got {indices!r}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{name} must contain integers; got dtype {idx.dtype}")
    if idx.min() < 0 or idx.max() >= n_atoms:
        raise ValueError(
            f"{name} must lie in [0, {n_atoms - 1}] for a trajectory with {n_atoms} atoms; "
            f"got min {idx.min()}, max {idx.max()}"
        )
    if np.unique(idx).size != idx.size:
        raise ValueError(f"{name} contains duplicate atom indices")
    return idx


def unwrap(positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Undo periodic wrapping of a trajectory in a fixed (possibly triclinic) cell.

    Consecutive frames are linked by the minimum-image convention in fractional coordinates, so the
    trajectory must be sampled finely enough that no atom moves by half a cell vector or more (in
    fractional terms, ``|delta s_i| < 0.5`` along every lattice direction) between two stored frames.
    A coarser sampling silently produces wrong jumps; nothing can detect that after the fact.

    Args:
        positions: wrapped Cartesian positions, shape ``(n_frames, n_atoms, 3)``, Angstrom.
        cell: lattice vectors as rows, shape ``(3, 3)``, Angstrom. The cell must be constant (NVT/NVE).

    Returns:
        Unwrapped Cartesian positions with the same shape; frame 0 is left unchanged.
    """
    pos = _as_trajectory(positions)
    cell_arr = np.asarray(cell, dtype=float)
    if cell_arr.shape != (3, 3):
        raise ValueError(f"cell must be a (3, 3) matrix with lattice vectors as rows; got shape {cell_arr.shape}")
    if abs(np.linalg.det(cell_arr)) < 1e-12:
        raise ValueError("cell is singular (zero volume); expected three linearly independent lattice vectors")

    # Working in fractional coordinates makes the image shift an integer per lattice vector, which is
    # what makes the scheme valid for skewed cells where Cartesian rounding would not be.
    frac = pos @ np.linalg.inv(cell_arr)
    steps = np.diff(frac, axis=0)
    steps -= np.round(steps)
    unwrapped = np.empty_like(frac)
    unwrapped[0] = frac[0]
    np.cumsum(steps, axis=0, out=unwrapped[1:])
    unwrapped[1:] += frac[0]
    return unwrapped @ cell_arr


def remove_drift(positions: np.ndarray, reference_indices: Sequence[int] | None) -> np.ndarray:
    """Remove the rigid drift of a reference sub-lattice from every atom.

    The drift at frame ``t`` is the mean displacement (relative to frame 0) of the reference atoms; it
    is subtracted from all atoms, mobile ones included.

    Args:
        positions: unwrapped positions, shape ``(n_frames, n_atoms, 3)``.
        reference_indices: atoms defining the frame of reference (e.g. the F framework); ``None`` uses
            all atoms.

    Returns:
        Drift-corrected positions (a new array).
    """
    pos = _as_trajectory(positions)
    if reference_indices is None:
        ref = np.arange(pos.shape[1])
    else:
        ref = _as_indices(reference_indices, pos.shape[1], "reference_indices")
    # An unweighted mean is the centre of mass here because the reference is meant to be a single
    # species; for a mixed reference it is only an approximation to the true centre-of-mass drift.
    drift = (pos[:, ref, :] - pos[0, ref, :]).mean(axis=1)
    return pos - drift[:, None, :]


def msd_fft_per_particle(x: np.ndarray) -> np.ndarray:
    """MSD of every particle for every lag, averaged over all time origins, in O(N log N).

    ``MSD_i(m) = 1/(N-m) sum_k |x_i(k+m) - x_i(k)|^2`` is split as ``S1(m) - 2 S2(m)``: ``S1`` collects
    the squared norms and is obtained from running sums, ``S2`` is the position autocorrelation,
    obtained by FFT with zero padding to at least ``2N`` so that the circular correlation equals the
    linear one.

    Args:
        x: unwrapped positions, shape ``(n_frames, n_particles, 3)``.

    Returns:
        Array ``(n_frames, n_particles)``; row ``m`` is the MSD at lag ``m`` frames (row 0 is zero).
    """
    arr = _as_trajectory(x, "x")
    n = arr.shape[0]
    # The MSD is invariant to a per-particle constant shift; centring cuts the cancellation between the
    # two large terms S1 and 2*S2 when absolute coordinates are big compared with displacements.
    arr = arr - arr.mean(axis=0)

    n_fft = scipy.fft.next_fast_len(2 * n, real=True)
    spectrum = scipy.fft.rfft(arr, n=n_fft, axis=0)
    autocorr = scipy.fft.irfft(spectrum * spectrum.conj(), n=n_fft, axis=0)[:n].sum(axis=-1)
    n_origins = (n - np.arange(n))[:, None].astype(float)
    s2 = autocorr / n_origins

    sq = np.einsum("tpd,tpd->tp", arr, arr)
    total = sq.sum(axis=0)
    # head[m] = sum_{k<m} |x(k)|^2 and tail[m] = sum_{k<m} |x(N-1-k)|^2 are the terms that drop out of
    # the origin sum as the lag grows.
    head = np.zeros_like(sq)
    tail = np.zeros_like(sq)
    if n > 1:
        head[1:] = np.cumsum(sq[:-1], axis=0)
        tail[1:] = np.cumsum(sq[::-1][:-1], axis=0)
    s1 = (2.0 * total - head - tail) / n_origins

    msd = s1 - 2.0 * s2
    msd[0] = 0.0
    return msd


def msd_fft(x: np.ndarray) -> np.ndarray:
    """Particle-averaged MSD for every lag ``0..n_frames-1`` over all time origins (FFT algorithm).

    Args:
        x: unwrapped positions, shape ``(n_frames, n_particles, 3)``.

    Returns:
        Array ``(n_frames,)`` in the squared unit of ``x``.
    """
    return msd_fft_per_particle(x).mean(axis=1)


def summed_displacement(x: np.ndarray, indices: Sequence[int]) -> np.ndarray:
    """Sum over the selected atoms of their displacement from frame 0.

    For the atoms involved in one defect (e.g. the Li that take part in an interstitialcy hop) this is
    the collective coordinate of the defect: ``msd_fft`` of it divided by 6 t is the defect diffusivity.

    Args:
        x: unwrapped positions, shape ``(n_frames, n_atoms, 3)``.
        indices: atoms to sum over.

    Returns:
        Array ``(n_frames, 1, 3)`` so that it can be passed directly to :func:`msd_fft`.
    """
    arr = _as_trajectory(x, "x")
    idx = _as_indices(indices, arr.shape[1], "indices")
    disp = (arr[:, idx, :] - arr[0, idx, :]).sum(axis=1)
    return disp[:, None, :]
