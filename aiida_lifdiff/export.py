"""``aiida-lifdiff export``: one study as files for a paper or a colleague.

:func:`export_study` writes into a folder:

* ``<name>.aiida``: an AiiDA archive of the study with its provenance (``verdi archive import`` reads it into
  any profile; the default traversal rules of :func:`aiida.tools.archive.create_archive` take the study's
  inputs, every process it called, their inputs and outputs, and the creators of those inputs: the
  potentials' training calculations and datasets, the structure, the codes);
* ``figures/*.png``: every PNG the study made (Arrhenius plots, parity plots, ...), named after where they
  come from, e.g. ``arrhenius_plot-tosi_fumi.png`` or ``train_mace-parity_plot.png``;
* ``results.csv``, ``results.tex``, ``results.json``: the rows of ``aiida-lifdiff results`` for this study's
  DiffusionWorkChains (see :mod:`aiida_lifdiff.tables`);
* ``comparison.csv``, ``comparison.tex``: when the study node has a ``comparison`` output.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from pathlib import Path

from aiida import orm
from aiida.common.links import LinkType

from aiida_lifdiff import tables
from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.queries import (
    STUDY_PROCESS_TYPES,
    NodeNotFound,
    arrhenius_results,
    load_node_by_identifier,
    study_diffusions,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ExportError(ValueError):
    """The study cannot be exported (not found, not a study, target exists)."""


def load_study_node(identifier: str | int) -> orm.WorkflowNode:
    """A BenchmarkWorkChain or DiffusionWorkChain from its pk, UUID (prefix) or label (the newest with that label)."""
    try:
        node = load_node_by_identifier(identifier, label_process_types=STUDY_PROCESS_TYPES)
    except NodeNotFound as exception:
        raise ExportError(str(exception)) from exception
    if getattr(node, "process_type", None) not in STUDY_PROCESS_TYPES:
        raise ExportError(
            f"node {identifier} is a {getattr(node, 'process_label', None) or type(node).__name__}, "
            "not a BenchmarkWorkChain or DiffusionWorkChain"
        )
    return node


def safe_name(text: str) -> str:
    """A file name from free text: letters, digits, ``.``, ``_`` and ``-`` only."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return name or "study"


def _is_png(node: orm.Node) -> bool:
    if not isinstance(node, orm.SinglefileData) or isinstance(node, (PotentialData, DatasetData)):
        return False
    if node.filename.lower().endswith(".png"):
        return True
    try:
        with node.open(mode="rb") as handle:
            return handle.read(8) == PNG_MAGIC
    except OSError:
        return False


def study_figures(node: orm.ProcessNode) -> list[tuple[str, orm.SinglefileData]]:
    """Every PNG output of ``node`` and of the processes it called (recursively), with a file name each.

    The name is the path of call-link labels from the study to the process, then the output's link label
    (``__`` of namespaces written ``-``). Breadth first, so a figure a work chain passes on (e.g. a
    benchmark's ``arrhenius_plot.NAME``) is named where it is shown first; each figure is listed once.
    """
    found: list[tuple[str, orm.SinglefileData]] = []
    seen_figures: set[str] = set()
    seen_processes: set[int] = set()
    queue: deque[tuple[orm.ProcessNode, list[str]]] = deque([(node, [])])
    while queue:
        process, path = queue.popleft()
        if process.pk in seen_processes:
            continue
        seen_processes.add(process.pk)
        outputs = process.base.links.get_outgoing(
            node_class=orm.SinglefileData, link_type=(LinkType.CREATE, LinkType.RETURN)
        ).all()
        for link in sorted(outputs, key=lambda link: link.link_label):
            if link.node.uuid in seen_figures or not _is_png(link.node):
                continue
            seen_figures.add(link.node.uuid)
            parts = [*path, link.link_label.replace("__", "-")]
            found.append(("-".join(safe_name(part) for part in parts) + ".png", link.node))
        called = process.base.links.get_outgoing(link_type=(LinkType.CALL_CALC, LinkType.CALL_WORK)).all()
        for link in sorted(called, key=lambda link: (link.node.ctime, link.node.pk)):
            queue.append((link.node, [*path, link.link_label]))
    # Two processes may use the same call label (e.g. each compute_diffusivity): keep every file name unique.
    names: dict[str, int] = {}
    unique = []
    for name, figure in found:
        count = names.get(name, 0)
        names[name] = count + 1
        unique.append((name if count == 0 else f"{name[:-4]}-{count + 1}.png", figure))
    return unique


def study_caption(node: orm.WorkflowNode, rows: list[dict]) -> str:
    """The LaTeX caption of results.tex: the study, the mode, the units and what the ID column is."""
    modes = tables.modes_caption(row.get("mode") for row in rows)
    name = node.label or f"{node.process_label} {node.pk}"
    return (
        f"Study {tables.latex_escape(name)}: activation energy $E_a$ and diffusivity extrapolated to 300~K of "
        f"interstitial Li in LiF from weighted Arrhenius fits of the {tables.latex_escape(modes)} diffusivity. "
        r"$E_a$ in eV, $D_{300}$ in cm$^2$\,s$^{-1}$; $\pm$ one standard error of the fit. MD: replicas $\times$ "
        r"production time per temperature. ID: first 8 characters of the UUID of the DiffusionWorkChain in "
        f"the AiiDA archive (study UUID {tables.latex_escape(node.uuid)})."
    )


def export_study(identifier: str | int | orm.WorkflowNode, directory: str | Path, overwrite: bool = False) -> dict:
    """Write the archive, figures and tables of one study into ``directory``; return what was written.

    Returns ``{study, archive, figures: [paths], missing_figures: [text], tables: [paths], rows: n}``
    (``missing_figures``: PNG nodes whose file is not in the repository, e.g. of synthetic test graphs).
    An existing archive is replaced only with ``overwrite``; the directory is created if needed.
    """
    node = identifier if isinstance(identifier, orm.Node) else load_study_node(identifier)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = safe_name(node.label) if node.label else f"{node.process_label}-{node.pk}"

    archive = directory / f"{stem}.aiida"
    if archive.exists() and not overwrite:
        raise ExportError(f"{archive} exists; pass overwrite=True (--overwrite) to replace it")
    from aiida.tools.archive import create_archive

    # create_archive reports its parameters and progress at REPORT level; the caller prints what was written.
    logger = logging.getLogger("aiida.export")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        create_archive([node], filename=archive, overwrite=overwrite)
    finally:
        logger.setLevel(level)

    figures_dir = directory / "figures"
    figures, missing = [], []
    for name, figure in study_figures(node):
        try:
            content = figure.get_content(mode="rb")
        except (OSError, KeyError) as exception:  # a node whose file is not in this profile's repository
            missing.append(f"{name} ({figure.__class__.__name__}<{figure.pk}>: {exception})")
            continue
        figures_dir.mkdir(exist_ok=True)
        path = figures_dir / name
        path.write_bytes(content)
        figures.append(path)

    rows = arrhenius_results(study_uuids=[child.uuid for child in study_diffusions(node)])
    written = []
    for name, text in (
        ("results.csv", tables.to_csv(rows)),
        ("results.tex", tables.to_latex(rows, caption=study_caption(node, rows), label=f"tab:{stem}")),
        ("results.json", tables.to_json(rows)),
    ):
        path = directory / name
        path.write_text(text)
        written.append(path)
    if "comparison" in node.outputs:
        comparison = node.outputs.comparison.get_dict()
        for name, text in (
            ("comparison.csv", tables.comparison_csv(comparison)),
            ("comparison.tex", tables.comparison_latex(comparison, label=f"tab:{stem}-comparison")),
        ):
            path = directory / name
            path.write_text(text)
            written.append(path)
    return {
        "study": node,
        "archive": archive,
        "figures": figures,
        "missing_figures": missing,
        "tables": written,
        "rows": len(rows),
    }
