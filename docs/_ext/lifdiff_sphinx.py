"""Sphinx glue for the process reference, on top of aiida-core's ``aiida.sphinxext``.

aiida-core 2.9.4 ships the directives ``aiida-process``, ``aiida-workchain`` and ``aiida-calcjob`` (ports with
their help, and the outline of a work chain) but no ``aiida-calcfunction`` and nothing for exit codes. This
extension adds both, and leaves aiida-core's generic ``metadata`` inputs out of nested namespaces (see
:func:`_without_nested_metadata`):

* ``aiida-calcfunction``: aiida-core's process directive applied to a process function (a calcfunction has a
  ``spec()`` like any process), labelled ``calcfunction``;
* ``aiida-exit-codes``: a table of every exit code of a process's spec (status, label, message), inherited ones
  included, as ``verdi plugin list`` shows them.

It also reads the click help texts of the CLI (written for a terminal, not as reStructuredText) the way a
terminal shows them: a lone ``*`` (``figures/*.png``) is literal, and `single backticks` become code.

The directives also work without a configured AiiDA profile: :func:`load_docs_profile` loads a temporary
in-memory profile (``core.sqlite_temp``) before the first directive asks for one.
"""

from __future__ import annotations

import inspect
import re

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective


def load_docs_profile() -> None:
    """Load a throw-away in-memory profile unless one is loaded already; nothing is written to any config."""
    from aiida.manage import get_manager
    from aiida.storage.sqlite_temp import SqliteTempBackend

    manager = get_manager()
    if manager.get_profile() is None:
        manager.load_profile(SqliteTempBackend.create_profile("lifdiff-docs"), allow_switch=True)


def _process(path: str):
    """The process class or process function at ``module.name``."""
    from aiida.common.utils import get_object_from_string

    return get_object_from_string(path)


class ExitCodesDirective(SphinxDirective):
    """``.. aiida-exit-codes:: ClassName`` with ``:module:``: the exit codes of a process as a table."""

    required_arguments = 1
    option_spec = {"module": directives.unchanged_required}

    def run(self):
        process = _process(f"{self.options['module']}.{self.arguments[0]}")
        exit_codes = sorted(process.spec().exit_codes.items(), key=lambda item: item[1].status)
        if not exit_codes:
            return [nodes.paragraph(text="No exit codes.")]

        table = nodes.table(classes=["aiida-exit-codes"])
        group = nodes.tgroup(cols=3)
        table += group
        for width in (10, 35, 55):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        head += self._row(["status", "label", "message"], header=True)
        body = nodes.tbody()
        group += body
        for label, code in exit_codes:
            body += self._row([str(code.status), label, code.message])
        title = nodes.paragraph()
        title += nodes.strong(text="Exit codes:")
        return [title, table]

    @staticmethod
    def _row(cells: list[str], header: bool = False) -> nodes.row:
        row = nodes.row()
        for index, text in enumerate(cells):
            entry = nodes.entry()
            paragraph = nodes.paragraph()
            if index == 1 and not header:
                paragraph += nodes.literal(text=text)
            else:
                paragraph += nodes.Text(text)
            entry += paragraph
            row += entry
        return row


_SINGLE_BACKTICKS = re.compile(r"(?<![`:\\])`([^`]+)`(?![`_])")


def _plain_help(app, ctx, lines: list[str]) -> None:
    """sphinx-click hook: terminal help text -> reStructuredText that renders the same."""
    for index, line in enumerate(lines):
        if line.lstrip().startswith(".. "):
            continue
        line = re.sub(r"(?<![*\\])\*(?!\*)", r"\\*", line)
        lines[index] = _SINGLE_BACKTICKS.sub(r"``\1``", line)


_INLINE_CODE = re.compile(r"(:[\w:]+:`~?[^`]+`|``[^`]+``)")


def _docstring_paragraph(text: str) -> nodes.paragraph:
    """A docstring paragraph as text, with ``code`` and :role:`targets` shown as code (not parsed as RST)."""
    paragraph = nodes.paragraph()
    for index, part in enumerate(_INLINE_CODE.split(text)):
        if index % 2 == 0:
            if part:
                paragraph += nodes.Text(part)
        elif part.startswith("``"):
            paragraph += nodes.literal(text=part[2:-2])
        else:
            target = part.split("`")[1]
            paragraph += nodes.literal(text=target[1:].rsplit(".", 1)[-1] if target.startswith("~") else target)
    return paragraph


def _without_nested_metadata(directive_class, keep_top_metadata: bool):
    """A subclass of an aiida-core process directive that leaves out the generic ``metadata`` namespaces.

    Every process and every exposed sub-process namespace carries aiida-core's ``metadata`` inputs (label,
    description, ``call_link_label``, the scheduler ``options`` of a calculation job...). Repeated in every nested
    namespace they bury the plugin's own ports, so only a calculation job keeps its top-level ``metadata`` (where
    its scheduler options are set); everything else is exactly aiida-core's rendering.
    """

    class Directive(directive_class):
        def build_content(self):
            content = super().build_content()
            # aiida-core puts the raw docstring into one paragraph, indentation and all: one per paragraph instead.
            doc = inspect.cleandoc(self.process.__doc__ or "")
            paragraphs = [_docstring_paragraph(" ".join(block.split())) for block in doc.split("\n\n") if block.strip()]
            if content.children and isinstance(content[0], nodes.paragraph):
                content.children[0:1] = paragraphs
                for paragraph in paragraphs:
                    paragraph.parent = content
            return content

        def build_portnamespace_doctree(self, port_namespace):
            keep = keep_top_metadata and port_namespace is self.process_spec.inputs
            ports = {name: port for name, port in port_namespace.items() if name != "metadata" or keep}
            return super().build_portnamespace_doctree(ports)

    Directive.__name__ = directive_class.__name__
    Directive.__doc__ = directive_class.__doc__
    return Directive


def setup(app):
    from aiida.sphinxext.calcjob import AiidaCalcJobDirective
    from aiida.sphinxext.process import AiidaProcessDirective
    from aiida.sphinxext.workchain import AiidaWorkchainDirective

    class CalcFunctionDirective(AiidaProcessDirective):
        """aiida-core's process directive, labelled for a calcfunction, with its Python signature.

        A calcfunction's ports carry no help and ``**kwargs`` make a dynamic namespace, so the signature says
        more than the port list: it is shown first.
        """

        signature = "calcfunction"
        annotation = "calcfunction"

        def build_content(self):
            content = super().build_content()
            paragraph = nodes.paragraph()
            paragraph += nodes.strong(text="Signature: ")
            paragraph += nodes.literal(text=f"{self.class_name}{inspect.signature(self.process)}")
            notes = []
            if self.process_spec.inputs.dynamic:
                notes.append("inputs: any further keyword, as the signature's ** argument")
            if self.process_spec.outputs.dynamic:
                notes.append("outputs: the nodes the function returns")
            if notes:
                paragraph += nodes.Text(f" ({'; '.join(notes)})")
            content.insert(1, paragraph)
            return content

    # aiida-core's directives call load_profile() with no argument: it returns the profile loaded here.
    load_docs_profile()
    app.setup_extension("aiida.sphinxext")
    for name, directive_class, keep_top_metadata in (
        ("aiida-workchain", AiidaWorkchainDirective, False),
        ("aiida-calcjob", AiidaCalcJobDirective, True),
        ("aiida-calcfunction", CalcFunctionDirective, False),
    ):
        directive = _without_nested_metadata(directive_class, keep_top_metadata)
        app.add_directive_to_domain("py", name, directive, override=True)
    app.add_directive_to_domain("py", "aiida-exit-codes", ExitCodesDirective)
    app.setup_extension("sphinx_click")
    for event in ("description", "options", "arguments", "epilog"):
        app.connect(f"sphinx-click-process-{event}", _plain_help)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
