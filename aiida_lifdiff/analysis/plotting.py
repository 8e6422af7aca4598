"""PNG figures for the Arrhenius fit and MSD curves (headless: Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .arrhenius import K_B_EV_K, ArrheniusResult, arrhenius_extrapolate

__all__ = ["plot_arrhenius", "plot_arrhenius_overlay", "plot_barrier_profiles", "plot_msd"]


def _pyplot():
    import matplotlib

    # Selected at call time, not import time, so importing the package never changes the backend of an
    # interactive session; Agg works on compute nodes and daemons without a display.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, ax, title: str, path: str | os.PathLike[str]) -> Path:
    """Title and legend, then the PNG written to ``path``: the finish every figure of the project shares."""
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=150)
    return out


def _save_arrhenius_figure(fig, ax, title: str, path: str | os.PathLike[str]) -> Path:
    """Log D against 1000/T: axes and labels, then :func:`_save_figure`."""
    ax.set_yscale("log")
    ax.set_xlabel("1000 / T (1/K)")
    ax.set_ylabel("D (cm$^2$/s)")
    return _save_figure(fig, ax, title, path)


def plot_arrhenius(
    result: ArrheniusResult,
    path: str | os.PathLike[str],
    title: str = "",
    extra_points: Sequence[tuple[float, float, float, str]] | None = None,
) -> Path:
    """Arrhenius plot: D (log scale) versus 1000/T with error bars and the fitted line.

    Args:
        result: the fit to draw; its points are drawn filled.
        path: output PNG file.
        title: figure title.
        extra_points: ``(T_K, D, D_err, label)`` for temperatures left out of the fit (e.g. not
            diffusive), drawn hollow; D in the unit of the fit.

    Returns:
        The path written.
    """
    plt = _pyplot()
    temps = np.asarray(result.temperatures_K, dtype=float)
    d = np.asarray(result.D_cm2_s, dtype=float)
    d_err = np.asarray(result.D_err_cm2_s, dtype=float)
    extras = list(extra_points or [])

    all_t = np.concatenate([temps, [float(p[0]) for p in extras]])
    t_line = np.linspace(all_t.min() * 0.97, all_t.max() * 1.03, 200)
    d_line, d_line_err = arrhenius_extrapolate(result, t_line)

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    try:
        ax.errorbar(1000.0 / temps, d, yerr=d_err, fmt="o", color="C0", capsize=3, label="MD (fitted)")
        fit_label = f"fit: $E_a$ = {result.Ea_eV:.3f} $\\pm$ {result.Ea_err_eV:.3f} eV"
        ax.plot(1000.0 / t_line, d_line, "-", color="C1", label=fit_label)
        ax.fill_between(1000.0 / t_line, d_line - d_line_err, d_line + d_line_err, color="C1", alpha=0.2, lw=0)
        for i, (t_k, d_k, err_k, label) in enumerate(extras):
            ax.errorbar(
                [1000.0 / float(t_k)],
                [float(d_k)],
                yerr=[float(err_k)],
                fmt="o",
                mfc="none",
                color=f"C{2 + i % 7}",
                capsize=3,
                label=str(label),
            )
        return _save_arrhenius_figure(fig, ax, title, path)
    finally:
        plt.close(fig)


def plot_msd(
    lag_times_ps: np.ndarray,
    msd: np.ndarray,
    msd_err: np.ndarray,
    fit_window_ps: tuple[float, float],
    D: float,
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """MSD versus lag time with its error band, the fit window and the line of slope 6 D.

    Args:
        lag_times_ps: lags in ps.
        msd: MSD in A^2.
        msd_err: standard error of the MSD in A^2.
        fit_window_ps: ``(start, end)`` of the fitted lag range in ps.
        D: diffusivity in A^2/ps; the line's intercept is chosen to match the MSD in the window.
        path: output PNG file.
        title: figure title.

    Returns:
        The path written.
    """
    plt = _pyplot()
    t = np.asarray(lag_times_ps, dtype=float)
    y = np.asarray(msd, dtype=float)
    y_err = np.asarray(msd_err, dtype=float)
    lo, hi = (float(v) for v in fit_window_ps)
    window = (t >= lo) & (t <= hi)
    # The estimator fits slope and offset per block; with the slope fixed, the least-squares offset
    # is the mean residual, which puts the line where the data are.
    offset = float(np.mean(y[window] - 6.0 * D * t[window])) if np.any(window) else 0.0

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    try:
        ax.plot(t, y, color="C0", label="MSD")
        ax.fill_between(t, y - y_err, y + y_err, color="C0", alpha=0.25, lw=0)
        ax.axvspan(lo, hi, color="0.85", zorder=0, label="fit window")
        t_fit = np.linspace(lo, hi, 50)
        ax.plot(t_fit, 6.0 * D * t_fit + offset, "--", color="C1", label=f"6Dt, D = {D:.3g} A$^2$/ps")
        ax.set_xlabel("lag time (ps)")
        ax.set_ylabel("MSD (A$^2$)")
        out = _save_figure(fig, ax, title, path)
    finally:
        plt.close(fig)
    return out


def plot_arrhenius_overlay(
    rows: Sequence[dict],
    path: str | os.PathLike[str],
    reference: str | None = None,
    title: str = "",
) -> Path:
    """Several potentials' D(T) with error bars and fitted lines on one Arrhenius plot.

    Args:
        rows: comparison rows (:func:`aiida_lifdiff.analysis.comparison.comparison_row`): ``name``, ``D_T``
            points (``temperature_K``, ``D_cm2_s``, ``D_err_cm2_s``, ``diffusive``) and, for a successful fit,
            ``Ea_eV``, ``Ea_compare_err_eV`` and ``D0_cm2_s``. Points without a diffusive regime are drawn
            hollow (they were not fitted); a potential without a fit gets points and no line.
        path: output PNG file.
        reference: name of the reference potential, drawn in black.
        title: figure title.

    Returns:
        The path written.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    try:
        colour_index = 0
        for row in rows:
            if row["name"] == reference:
                colour = "k"
            else:
                colour = f"C{colour_index % 10}"
                colour_index += 1
            points = [p for p in row.get("D_T", []) if p.get("D_cm2_s") is not None and p["D_cm2_s"] > 0]
            label = row["name"]
            if row.get("fit_ok"):
                label += f": {row['Ea_eV']:.3f} $\\pm$ {row.get('Ea_compare_err_eV', row['Ea_err_eV']):.3f} eV"
            else:
                label += ": no fit"
            for diffusive, marker_face in ((True, colour), (False, "none")):
                chosen = [p for p in points if bool(p.get("diffusive", True)) == diffusive]
                if not chosen:
                    continue
                ax.errorbar(
                    [1000.0 / p["temperature_K"] for p in chosen],
                    [p["D_cm2_s"] for p in chosen],
                    yerr=[p.get("D_err_cm2_s") or 0.0 for p in chosen],
                    fmt="o",
                    mfc=marker_face,
                    color=colour,
                    capsize=3,
                    label=label,
                )
                label = None  # one legend entry per potential
            if row.get("fit_ok") and points:
                temperatures = np.array([p["temperature_K"] for p in points], dtype=float)
                t_line = np.linspace(temperatures.min() * 0.97, temperatures.max() * 1.03, 100)
                d_line = row["D0_cm2_s"] * np.exp(-row["Ea_eV"] / (K_B_EV_K * t_line))
                ax.plot(1000.0 / t_line, d_line, "-", color=colour, lw=1.2)
        return _save_arrhenius_figure(fig, ax, title, path)
    finally:
        plt.close(fig)


def plot_barrier_profiles(
    profiles: Sequence[tuple[str, dict[str, np.ndarray], dict[str, bool]]],
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """NEB energy profiles: one panel per path, one line per potential (so several potentials overlay).

    Args:
        profiles: ``(label, arrays, converged)`` per potential; ``arrays`` holds ``<path>_reaction_coordinate_A``
            and ``<path>_energies_eV`` (relative to the initial end point) as the barrier parser stores them,
            ``converged`` maps path names to whether that NEB converged (unconverged bands are drawn dashed).
        path: output PNG file.
        title: figure title.
    """
    plt = _pyplot()
    suffix = "_energies_eV"
    names = sorted({key[: -len(suffix)] for _, arrays, _ in profiles for key in arrays if key.endswith(suffix)})
    if not names:
        raise ValueError("no energy profile to draw")
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.6), squeeze=False, sharey=True)
    try:
        for index, name in enumerate(names):
            ax = axes[0][index]
            for colour, (label, arrays, converged) in enumerate(profiles):
                energies = arrays.get(f"{name}{suffix}")
                if energies is None:
                    continue
                coordinate = arrays.get(f"{name}_reaction_coordinate_A", np.arange(len(energies)))
                ok = bool(converged.get(name, False))
                ax.plot(
                    coordinate,
                    energies,
                    "o-" if ok else "o--",
                    color=f"C{colour % 10}",
                    ms=3,
                    label=f"{label}: {np.max(energies):.3f} eV" + ("" if ok else " (not converged)"),
                )
            ax.set_title(name.replace("_", " "), fontsize="medium")
            ax.set_xlabel("reaction coordinate (A)")
            if index == 0:
                ax.set_ylabel("E - E(initial) (eV)")
            if index < len(names) - 1:
                ax.legend(fontsize="x-small")
        if title:
            fig.suptitle(title)
        # The panels keep their own titles (the paths); the figure's goes above them.
        return _save_figure(fig, axes[0][-1], "", path)
    finally:
        plt.close(fig)
