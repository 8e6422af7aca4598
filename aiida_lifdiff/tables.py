"""Result rows -> text, CSV, JSON and LaTeX tables. Pure formatting: no AiiDA, no database.

The rows are the dicts of :func:`aiida_lifdiff.queries.arrhenius_results` (one per Arrhenius result) and
the flattened rows of a benchmark's ``comparison`` output (:func:`comparison_rows`). Every function
accepts rows with missing keys or ``None`` values and prints a dash for them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence

#: chi^2/dof above which the D points clearly scatter more than their errors (p < ~0.1 for 3-4 dof).
CHI2_WARNING = 2.0

#: Human names of the diffusivity modes, as a caption says them.
MODE_NAMES = {"collective": "per-defect (collective)", "tracer": "Li tracer"}

#: Columns of the CSV of results, in this order (any other key of the rows follows).
RESULT_COLUMNS = (
    "pk",
    "study",
    "potential",
    "kind",
    "foundation",
    "train_frames",
    "valid_frames",
    "test_frames",
    "dataset_frames",
    "train_source",
    "trainer",
    "n_atoms",
    "repeat",
    "a0_A",
    "temperatures_K",
    "n_temperatures",
    "n_fit_temperatures",
    "T_K",
    "production_ps",
    "timestep_fs",
    "n_seeds",
    "mode",
    "Ea_eV",
    "Ea_err_eV",
    "Ea_err_scaled_eV",
    "D0_cm2_s",
    "D0_err_cm2_s",
    "D300_cm2_s",
    "D300_err_cm2_s",
    "D300_factor",
    "chi2_dof",
    "exit_status",
    "status",
    "created",
    "benchmark",
    "benchmark_pk",
    "study_uuid",
    "potential_uuid",
    "arrhenius_uuid",
    "benchmark_uuid",
    "training_uuid",
    "dataset_uuid",
)

LIST_SEPARATOR = ";"


# ---------------------------------------------------------------------------------------------- numbers


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(value, spec: str = ".3g", missing: str = "-") -> str:
    """``value`` formatted with ``spec``, or ``missing`` for None/NaN/non-numbers."""
    return format(value, spec) if _finite(value) else missing


def plus_minus(value, error, spec: str = ".3f", missing: str = "-") -> str:
    """``0.122 +- 0.040`` (plain text), ``0.122`` without an error, ``missing`` without a value."""
    if not _finite(value):
        return missing
    return f"{value:{spec}} +- {error:{spec}}" if _finite(error) else f"{value:{spec}}"


def latex_escape(text) -> str:
    """Text safe inside a LaTeX table cell (``_`` -> ``\\_`` etc.); None -> ``--``."""
    if text is None or text == "":
        return "--"
    replacements = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
    return "".join(replacements.get(char, char) for char in str(text))


def latex_pm(value, error, digits: int = 3) -> str:
    """``$0.122 \\pm 0.040$``; ``$0.122$`` without an error; ``--`` without a value."""
    if not _finite(value):
        return "--"
    if not _finite(error):
        return f"${value:.{digits}f}$"
    return f"${value:.{digits}f} \\pm {error:.{digits}f}$"


def latex_scientific(value, error=None, digits: int = 2) -> str:
    """``$(1.23 \\pm 0.45) \\times 10^{-7}$`` with one exponent for value and error; ``--`` without a value."""
    if not _finite(value):
        return "--"
    if value == 0:
        return "$0$"
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10**exponent
    if round(abs(mantissa), digits) >= 10:  # 9.996e-8 rounds to 10.00: move to the next power
        exponent += 1
        mantissa = value / 10**exponent
    power = f"\\times 10^{{{exponent}}}"
    if _finite(error):
        return f"$({mantissa:.{digits}f} \\pm {error / 10**exponent:.{digits}f}) {power}$"
    return f"${mantissa:.{digits}f} {power}$"


# ---------------------------------------------------------------------------------------------- results


def _ordered_keys(rows: Sequence[dict], preferred: Sequence[str]) -> list[str]:
    keys = [key for key in preferred if any(key in row for row in rows)]
    for row in rows:
        keys.extend(key for key in row if key not in keys)
    return keys


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return LIST_SEPARATOR.join(_csv_value(item) for item in value)
    if isinstance(value, float):
        return repr(value)  # full precision: the CSV is for further analysis
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def to_csv(rows: Sequence[dict], columns: Sequence[str] = RESULT_COLUMNS) -> str:
    """CSV with a header; lists joined by ``;``, None empty, floats at full precision."""
    if not rows:
        return ""
    keys = _ordered_keys(rows, columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(row.get(key)) for key in keys})
    return buffer.getvalue()


def _json_clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_clean(item) for item in value]
    return value


def to_json(rows: Sequence[dict]) -> str:
    """The rows as a JSON list (NaN -> null, so any JSON reader takes it)."""
    return json.dumps(_json_clean(list(rows)), indent=2)


def cell_text(row: dict) -> str:
    """Atoms of the MD cell, with the supercell repeat when known: ``65 (2x2x2)``."""
    n_atoms = row.get("n_atoms")
    if n_atoms is None:
        return "-"
    repeat = row.get("repeat")
    if repeat is None:
        return str(n_atoms)
    if isinstance(repeat, (list, tuple)):
        repeat = "x".join(str(r) for r in repeat)
    else:
        repeat = f"{repeat}x{repeat}x{repeat}"
    return f"{n_atoms} ({repeat})"


def temperatures_text(row: dict, dash: str = "-") -> str:
    """``500-800 (3)``: the range and count of the temperatures the study ran."""
    temperatures = [t for t in row.get("temperatures_K") or [] if _finite(t)]
    if not temperatures:
        return row.get("T_K") or "-"
    return f"{min(temperatures):.0f}{dash}{max(temperatures):.0f} ({len(temperatures)})"


def md_text(row: dict) -> str:
    """``2 x 20 ps @ 1 fs``: replicas x production time per temperature, and the timestep."""
    seeds, production, timestep = row.get("n_seeds"), row.get("production_ps"), row.get("timestep_fs")
    if production is None:
        return "-"
    text = f"{seeds} x {production:g} ps" if seeds else f"{production:g} ps"
    return text + (f" @ {timestep:g} fs" if timestep is not None else "")


def training_text(row: dict, width: int = 32) -> str:
    """``256 frames: <source>`` for a model trained in the database, else ``-``."""
    frames = row.get("train_frames")
    if frames is None:
        return "-"
    source = row.get("train_source") or ""
    if len(source) > width:
        source = source[: width - 3] + "..."
    return f"{frames} frames" + (f": {source}" if source else "")


def status_short(row: dict) -> str:
    status = row.get("status") or "-"
    return status if len(status) <= 60 else status[:57] + "..."


TABLE_HEADERS = (
    "PK",
    "study",
    "potential",
    "kind",
    "foundation",
    "trained on",
    "atoms",
    "a0 (A)",
    "T (K)",
    "MD per T",
    "Ea (eV)",
    "D300 (cm2/s)",
    "chi2/dof",
    "status",
    "UUID",
)


def to_text(rows: Sequence[dict], chi2_warning: float = CHI2_WARNING) -> str:
    """The terminal table of ``aiida-lifdiff results`` (tabulate); chi2/dof above ``chi2_warning`` gets a ``!``."""
    from tabulate import tabulate

    table = []
    for row in rows:
        chi2 = row.get("chi2_dof")
        chi2_text = number(chi2, ".2f") + ("!" if _finite(chi2) and chi2 > chi2_warning else "")
        d300 = row.get("D300_cm2_s")
        d300_text = "-"
        if _finite(d300):
            factor, error = row.get("D300_factor"), row.get("D300_err_cm2_s")
            if _finite(factor):
                d300_text = f"{d300:.2e} x/ {factor:.2g}"
            else:
                d300_text = f"{d300:.2e}" + (f" +- {error:.1e}" if _finite(error) else "")
        table.append(
            [
                row.get("pk"),
                row.get("study") or "",
                row.get("potential") or "",
                row.get("kind") or "",
                row.get("foundation") or "-",
                training_text(row),
                cell_text(row),
                number(row.get("a0_A"), ".3f"),
                temperatures_text(row),
                md_text(row),
                plus_minus(row.get("Ea_eV"), row.get("Ea_err_eV")),
                d300_text,
                chi2_text,
                status_short(row),
                (row.get("study_uuid") or "")[:8],
            ]
        )
    return tabulate(table, headers=TABLE_HEADERS)


def modes_caption(modes: Iterable[str]) -> str:
    names = [MODE_NAMES.get(mode, mode) for mode in sorted({m for m in modes if m})]
    return " and ".join(names) if names else "Li"


def to_latex(rows: Sequence[dict], caption: str | None = None, label: str = "tab:lifdiff-arrhenius") -> str:
    """A booktabs ``table`` ready for a paper: one line per result, values with their standard errors.

    Needs ``\\usepackage{booktabs}``. Text is escaped (``_`` -> ``\\_``); Ea as ``$0.122 \\pm 0.040$``, D(300 K)
    as ``$(1.2 \\pm 0.3) \\times 10^{-7}$``; the ID column is the first 8 characters of the study's UUID.
    """
    if caption is None:
        modes = modes_caption(row.get("mode") for row in rows)
        caption = (
            f"Activation energy $E_a$ and diffusivity extrapolated to 300~K of interstitial Li in LiF, from "
            f"weighted Arrhenius fits of the {latex_escape(modes)} diffusivity. $E_a$ in eV, $D_{{300}}$ in "
            r"cm$^2$\,s$^{-1}$; $\pm$ one standard error of the fit. MD: replicas $\times$ production time per "
            r"temperature. ID: first 8 characters of the UUID of the DiffusionWorkChain (AiiDA provenance)."
        )
    header = [
        "Potential",
        "Kind",
        "Training set",
        "Atoms",
        r"$T$ (K)",
        "MD",
        r"$E_a$ (eV)",
        r"$D_{300}$ (cm$^2$\,s$^{-1}$)",
        r"$\chi^2/\nu$",
        "ID",
    ]
    lines = [
        r"\begin{table}",
        r"\centering",
        f"\\caption{{{caption}}}",
        f"\\label{{{label}}}",
        r"\begin{tabular}{lllrlllllc}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    for row in rows:
        frames = row.get("train_frames")
        seeds, production = row.get("n_seeds"), row.get("production_ps")
        md = "--"
        if production is not None:
            md = f"${seeds} \\times {production:g}$ ps" if seeds else f"${production:g}$ ps"
        fit_ok = _finite(row.get("Ea_eV"))
        cells = [
            latex_escape(row.get("potential")),
            latex_escape(row.get("kind")),
            f"{frames}" if frames is not None else "--",
            str(row["n_atoms"]) if row.get("n_atoms") is not None else "--",
            temperatures_text(row, dash="--"),
            md,
            latex_pm(row.get("Ea_eV"), row.get("Ea_err_eV")) if fit_ok else "no fit",
            latex_scientific(row.get("D300_cm2_s"), row.get("D300_err_cm2_s")),
            f"{row['chi2_dof']:.2f}" if _finite(row.get("chi2_dof")) else "--",
            r"\texttt{" + latex_escape((row.get("study_uuid") or "")[:8]) + "}",
        ]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- comparison

#: Columns of the comparison CSV, in this order (any other scalar key of the rows follows, then D(T)).
COMPARISON_COLUMNS = (
    "potential",
    "reference",
    "kind",
    "label",
    "fit_ok",
    "Ea_eV",
    "Ea_err_eV",
    "delta_Ea_eV",
    "delta_Ea_err_eV",
    "delta_sigma",
    "D300_cm2_s",
    "D300_err_cm2_s",
    "chi2_dof",
    "a0_A",
    "a0_relaxed",
    "delta_a0_A",
    "barrier_knockoff_collinear_eV",
    "delta_barrier_knockoff_collinear_eV",
    "barrier_knockoff_noncollinear_eV",
    "delta_barrier_knockoff_noncollinear_eV",
    "barrier_direct_eV",
    "delta_barrier_direct_eV",
    "energy_rmse_meV_per_atom",
    "force_rmse_meV_per_A",
    "eval_energy_rmse_meV_per_atom",
    "eval_force_rmse_meV_per_A",
    "test_energy_rmse_meV_per_atom",
    "test_force_rmse_meV_per_A",
    "foundation",
    "train_frames",
    "train_source",
    "reason",
)

#: Where a row's energy and force errors are read from, first found wins: the shared evaluation set (the same
#: frames for every potential), a plain key, a trained model's own test split.
ENERGY_ERROR_KEYS = ("eval_energy_rmse_meV_per_atom", "energy_rmse_meV_per_atom", "test_energy_rmse_meV_per_atom")
FORCE_ERROR_KEYS = ("eval_force_rmse_meV_per_A", "force_rmse_meV_per_A", "test_force_rmse_meV_per_A")


def _first(row: dict, keys: Sequence[str]):
    return next((row[key] for key in keys if _finite(row.get(key))), None)


def _temperature_key(temperature) -> str:
    return f"{float(temperature):g}"


def comparison_rows(comparison: dict) -> list[dict]:
    """Flat rows of a benchmark's ``comparison`` output, one per potential, reference first.

    ``comparison`` is ``{"reference": name or None, "primary_mode": str, "rows": {name: {scalar keys...,
    "D_T": [{temperature_K, D_cm2_s, D_err_cm2_s}, ...]}}}``. Scalars are kept as they are; each
    ``D_T`` entry becomes the columns ``D_<T>K_cm2_s`` and ``D_<T>K_err_cm2_s``. Nested values other than
    ``D_T`` (e.g. a lineage dict) are left out, and ``name``/``is_reference`` become ``potential``/``reference``;
    missing keys are simply absent.
    """
    reference = comparison.get("reference")
    rows = []
    for name, entry in (comparison.get("rows") or {}).items():
        entry = entry or {}
        row = {"potential": name, "reference": bool(entry.get("is_reference", name == reference))}
        for key, value in entry.items():
            if key in ("D_T", "name", "is_reference") or isinstance(value, (dict, list, tuple)):
                continue
            row[key] = value
        for point in entry.get("D_T") or []:
            temperature = point.get("temperature_K")
            if temperature is None:
                continue
            key = _temperature_key(temperature)
            row[f"D_{key}K_cm2_s"] = point.get("D_cm2_s")
            row[f"D_{key}K_err_cm2_s"] = point.get("D_err_cm2_s")
        rows.append(row)
    rows.sort(key=lambda r: (not r["reference"], r["potential"]))
    return rows


def comparison_temperatures(comparison: dict) -> list[float]:
    """Every temperature that appears in some row's ``D_T``, sorted."""
    found = set()
    for entry in (comparison.get("rows") or {}).values():
        for point in (entry or {}).get("D_T") or []:
            if _finite(point.get("temperature_K")):
                found.add(float(point["temperature_K"]))
    return sorted(found)


def comparison_csv(comparison: dict) -> str:
    rows = comparison_rows(comparison)
    d_columns = []
    for temperature in comparison_temperatures(comparison):
        key = _temperature_key(temperature)
        d_columns += [f"D_{key}K_cm2_s", f"D_{key}K_err_cm2_s"]
    return to_csv(rows, columns=(*COMPARISON_COLUMNS, *d_columns))


def comparison_latex(comparison: dict, caption: str | None = None, label: str = "tab:lifdiff-comparison") -> str:
    """A booktabs table of the comparison: Ea, its difference to the reference, test errors and D(T)."""
    rows = comparison_rows(comparison)
    temperatures = comparison_temperatures(comparison)
    reference = comparison.get("reference")
    mode = comparison.get("primary_mode")
    if caption is None:
        against = f"the reference, {latex_escape(reference)} (ref.)" if reference else "no reference"
        caption = (
            f"Potentials compared on interstitial Li diffusion in LiF, {latex_escape(modes_caption([mode]))} "
            f"diffusivity. $E_a$ and $\\Delta E_a$ (difference to {against}) in eV with one standard error; "
            r"$\Delta/\sigma$: the difference in units of its combined error; energy (meV/atom) and force (meV/\AA) "
            r"RMSE on the shared evaluation set (else on the model's own test frames); $D(T)$ in cm$^2$\,s$^{-1}$."
        )
    header = [
        "Potential",
        "Kind",
        r"$E_a$ (eV)",
        r"$\Delta E_a$ (eV)",
        r"$\Delta/\sigma$",
        r"$E$ RMSE",
        r"$F$ RMSE",
    ] + [f"$D({t:g}\\,\\mathrm{{K}})$" for t in temperatures]
    lines = [
        r"\begin{table}",
        r"\centering",
        f"\\caption{{{caption}}}",
        f"\\label{{{label}}}",
        r"\begin{tabular}{ll" + "r" * (len(header) - 2) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    for row in rows:
        name = latex_escape(row["potential"])  # the study's short name; the full label is in the CSV
        if row["reference"]:
            name += " (ref.)"
        cells = [
            name,
            latex_escape(row.get("kind")),
            latex_pm(row.get("Ea_eV"), row.get("Ea_err_eV")),
            latex_pm(row.get("delta_Ea_eV"), row.get("delta_Ea_err_eV")),
            f"{row['delta_sigma']:.1f}" if _finite(row.get("delta_sigma")) else "--",
            number(_first(row, ENERGY_ERROR_KEYS), ".2f", missing="--"),
            number(_first(row, FORCE_ERROR_KEYS), ".1f", missing="--"),
        ]
        for temperature in temperatures:
            key = _temperature_key(temperature)
            cells.append(latex_scientific(row.get(f"D_{key}K_cm2_s"), row.get(f"D_{key}K_err_cm2_s")))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
