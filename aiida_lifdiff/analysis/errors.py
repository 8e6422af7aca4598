"""Errors of predicted labels against reference labels, and their parity plot (no AiiDA imports).

Both sides are lists of ``ase.Atoms`` carrying labels the way :mod:`aiida_lifdiff.datasets` holds them
(a ``SinglePointCalculator`` with ``energy`` in eV, ``forces`` in eV/A, optionally ``stress`` in
eV/A^3). Frame ``i`` of the prediction must be frame ``i`` of the reference: same elements in the same
order, same cell, same positions (up to lattice translations) within :data:`POSITION_TOLERANCE_A`.

Definitions (the ones ``scripts/make_tiny_models.py`` used for the numbers in
``tests/data/models/README.md``):

- energy: per frame ``(E_pred - E_ref) / n_atoms``; RMSE, MAE, mean (the bias) and the RMSE after
  removing that mean (the spread, which is what a constant per-atom offset cannot explain), in meV/atom;
- forces: every Cartesian component of every atom is one sample; RMSE, MAE and max ``|error|`` in meV/A,
  and the RMS of the reference components (the scale the errors compare with);
- stress: the 6 Voigt components of every frame are samples; RMSE and MAE in meV/A^3 (1 meV/A^3 =
  0.1602 GPa), only when every frame of both sides has stress.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from aiida_lifdiff.datasets import frame_labels

__all__ = ["POSITION_TOLERANCE_A", "label_errors", "parity_overlay", "parity_plot"]

#: Largest position (and cell) difference, in A, for two frames to count as the same structure.
POSITION_TOLERANCE_A = 1e-6


def _labels(frames: Sequence[Atoms], side: str) -> list[dict]:
    out = []
    for index, atoms in enumerate(frames):
        labels = frame_labels(atoms)
        missing = [key for key in ("energy", "forces") if key not in labels]
        if missing:
            raise ValueError(f"{side} frame {index} has no {' and no '.join(missing)} label")
        if np.shape(labels["forces"]) != (len(atoms), 3):
            raise ValueError(
                f"{side} frame {index}: forces of shape {np.shape(labels['forces'])} for {len(atoms)} atoms"
            )
        out.append(labels)
    return out


def _check_correspondence(reference: Sequence[Atoms], predicted: Sequence[Atoms]) -> None:
    if len(reference) != len(predicted):
        raise ValueError(f"{len(reference)} reference frames but {len(predicted)} predicted frames")
    if not reference:
        raise ValueError("no frames to compare")
    for index, (ref, pred) in enumerate(zip(reference, predicted)):
        if ref.get_chemical_symbols() != pred.get_chemical_symbols():
            raise ValueError(
                f"frame {index}: different atoms ({ref.get_chemical_formula()} with {len(ref)} atoms in the reference, "
                f"{pred.get_chemical_formula()} with {len(pred)} predicted): the datasets do not correspond"
            )
        cell_difference = float(np.abs(ref.cell.array - pred.cell.array).max())
        if cell_difference > POSITION_TOLERANCE_A:
            raise ValueError(
                f"frame {index}: cells differ by up to {cell_difference:.3g} A (> {POSITION_TOLERANCE_A:g} A): "
                "the datasets do not correspond"
            )
        difference = pred.positions - ref.positions
        periodic = np.asarray(ref.pbc, dtype=bool)
        if periodic.any():
            # The same structure may be wrapped differently: compare modulo lattice translations.
            fractional = np.linalg.solve(ref.cell.array.T, difference.T).T
            fractional[:, periodic] -= np.round(fractional[:, periodic])
            difference = fractional @ ref.cell.array
        largest = float(np.sqrt((difference**2).sum(axis=1)).max())
        if largest > POSITION_TOLERANCE_A:
            atom = int(np.argmax((difference**2).sum(axis=1)))
            raise ValueError(
                f"frame {index}: atom {atom} is {largest:.3g} A away from its reference position "
                f"(> {POSITION_TOLERANCE_A:g} A): the datasets do not correspond"
            )


def label_errors(reference_frames: Sequence[Atoms], predicted_frames: Sequence[Atoms]) -> dict:
    """Energy, force and (when both have it) stress errors of ``predicted_frames`` against the reference.

    Raises ValueError when the frames do not correspond (count, elements, cell, positions) or a frame lacks
    energy or forces. Returns plain floats and ints (JSON-ready): ``n_frames``, ``n_atoms``,
    ``n_force_components``, ``energy_{rmse,mae,mean_error,rmse_offset_removed,max_abs_error}_meV_per_atom``,
    ``force_{rmse,mae,max_abs_error,rms_label}_meV_per_A``, ``stress`` (bool) and, with it,
    ``n_stress_components`` and ``stress_{rmse,mae}_meV_per_A3``.
    """
    reference_frames, predicted_frames = list(reference_frames), list(predicted_frames)
    _check_correspondence(reference_frames, predicted_frames)
    reference = _labels(reference_frames, "reference")
    predicted = _labels(predicted_frames, "predicted")
    n_atoms = np.array([len(atoms) for atoms in reference_frames], dtype=float)
    energy_error = np.array([p["energy"] - r["energy"] for r, p in zip(reference, predicted)]) / n_atoms
    force_error = np.concatenate([(p["forces"] - r["forces"]).ravel() for r, p in zip(reference, predicted)])
    force_reference = np.concatenate([r["forces"].ravel() for r in reference])
    milli = 1e3
    result: dict = {
        "n_frames": len(reference),
        "n_atoms": int(n_atoms.sum()),
        "n_force_components": int(force_error.size),
        "energy_rmse_meV_per_atom": milli * float(np.sqrt(np.mean(energy_error**2))),
        "energy_mae_meV_per_atom": milli * float(np.mean(np.abs(energy_error))),
        "energy_mean_error_meV_per_atom": milli * float(np.mean(energy_error)),
        "energy_rmse_offset_removed_meV_per_atom": milli * float(np.std(energy_error)),
        "energy_max_abs_error_meV_per_atom": milli * float(np.max(np.abs(energy_error))),
        "force_rmse_meV_per_A": milli * float(np.sqrt(np.mean(force_error**2))),
        "force_mae_meV_per_A": milli * float(np.mean(np.abs(force_error))),
        "force_max_abs_error_meV_per_A": milli * float(np.max(np.abs(force_error))),
        "force_rms_label_meV_per_A": milli * float(np.sqrt(np.mean(force_reference**2))),
        "stress": False,
    }
    if all("stress" in r for r in reference) and all("stress" in p for p in predicted):
        stress_error = np.concatenate(
            [np.asarray(p["stress"]).ravel() - np.asarray(r["stress"]).ravel() for r, p in zip(reference, predicted)]
        )
        result.update(
            stress=True,
            n_stress_components=int(stress_error.size),
            stress_rmse_meV_per_A3=milli * float(np.sqrt(np.mean(stress_error**2))),
            stress_mae_meV_per_A3=milli * float(np.mean(np.abs(stress_error))),
        )
    return result


def _pyplot():
    import matplotlib

    # Selected at call time (see plotting.py): Agg works on compute nodes and daemons without a display.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _square_parity_axes(ax, unit: str) -> None:
    """Equal, shared limits on both axes with the y = x line drawn under the points, and axis labels."""
    low, high = ax.get_xlim()
    low, high = min(low, ax.get_ylim()[0]), max(high, ax.get_ylim()[1])
    ax.plot([low, high], [low, high], "-", color="0.3", lw=0.8, zorder=0)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel(f"reference ({unit})")
    ax.set_ylabel(f"predicted ({unit})")


def parity_plot(
    reference_frames: Sequence[Atoms],
    predicted_frames: Sequence[Atoms],
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """PNG with two parity panels: energy per atom (eV/atom) and force components (eV/A).

    Points are coloured by the frames' ``config_type`` (when present); each panel shows its RMSE from
    :func:`label_errors`, which also checks that the frames correspond. Returns the path written.
    """
    reference_frames, predicted_frames = list(reference_frames), list(predicted_frames)
    errors = label_errors(reference_frames, predicted_frames)
    reference = _labels(reference_frames, "reference")
    predicted = _labels(predicted_frames, "predicted")
    groups = [str(atoms.info.get("config_type", "frames")) for atoms in reference_frames]
    names = list(dict.fromkeys(groups))

    plt = _pyplot()
    fig, (ax_e, ax_f) = plt.subplots(1, 2, figsize=(10.0, 4.4))
    try:
        for colour, name in enumerate(names):
            chosen = [i for i, group in enumerate(groups) if group == name]
            e_ref = [reference[i]["energy"] / len(reference_frames[i]) for i in chosen]
            e_pred = [predicted[i]["energy"] / len(reference_frames[i]) for i in chosen]
            f_ref = np.concatenate([reference[i]["forces"].ravel() for i in chosen])
            f_pred = np.concatenate([predicted[i]["forces"].ravel() for i in chosen])
            label = f"{name} ({len(chosen)})" if len(names) > 1 else None
            ax_e.plot(e_ref, e_pred, "o", ms=4, alpha=0.8, color=f"C{colour % 10}", label=label)
            ax_f.plot(f_ref, f_pred, ".", ms=2, alpha=0.5, color=f"C{colour % 10}", label=label)
        for ax, unit, rmse in (
            (ax_e, "eV/atom", f"RMSE {errors['energy_rmse_meV_per_atom']:.3g} meV/atom"),
            (ax_f, "eV/$\\AA$", f"RMSE {errors['force_rmse_meV_per_A']:.3g} meV/$\\AA$"),
        ):
            _square_parity_axes(ax, unit)
            ax.text(0.04, 0.94, rmse, transform=ax.transAxes, va="top")
        ax_e.set_title(f"energy ({errors['n_frames']} frames)")
        ax_f.set_title(f"force components ({errors['n_force_components']})")
        if len(names) > 1:
            ax_f.legend(fontsize="small", loc="lower right", markerscale=4)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=150)
    finally:
        plt.close(fig)
    return out


def parity_overlay(
    reference_frames: Sequence[Atoms],
    predictions: dict[str, Sequence[Atoms]],
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """PNG with energy and force parity panels of several potentials on the same reference frames.

    Each potential gets one colour and its RMSE in the legend (from :func:`label_errors`, which also checks
    that its frames correspond to the reference). Returns the path written.
    """
    reference_frames = list(reference_frames)
    reference = _labels(reference_frames, "reference")
    e_ref = np.array([r["energy"] / len(a) for r, a in zip(reference, reference_frames)])
    f_ref = np.concatenate([r["forces"].ravel() for r in reference])

    plt = _pyplot()
    fig, (ax_e, ax_f) = plt.subplots(1, 2, figsize=(10.0, 4.6))
    try:
        for colour, (name, frames) in enumerate(predictions.items()):
            frames = list(frames)
            errors = label_errors(reference_frames, frames)
            predicted = _labels(frames, "predicted")
            e_pred = np.array([p["energy"] / len(a) for p, a in zip(predicted, frames)])
            f_pred = np.concatenate([p["forces"].ravel() for p in predicted])
            style = {"color": f"C{colour % 10}", "alpha": 0.6}
            ax_e.plot(e_ref, e_pred, "o", ms=3, label=f"{name}: {errors['energy_rmse_meV_per_atom']:.3g}", **style)
            ax_f.plot(f_ref, f_pred, ".", ms=2, label=f"{name}: {errors['force_rmse_meV_per_A']:.3g}", **style)
        for ax, unit, legend in (
            (ax_e, "eV/atom", "RMSE (meV/atom)"),
            (ax_f, "eV/$\\AA$", "RMSE (meV/$\\AA$)"),
        ):
            _square_parity_axes(ax, unit)
            ax.legend(fontsize="small", title=legend, title_fontsize="small", markerscale=3, loc="upper left")
        ax_e.set_title(f"energy ({len(reference_frames)} frames)")
        ax_f.set_title(f"force components ({f_ref.size})")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=150)
    finally:
        plt.close(fig)
    return out
