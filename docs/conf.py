"""Sphinx configuration of the aiida-lifdiff documentation.

Build (warnings are errors):
    .venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

Needs the ``docs`` extra (``pip install -e '.[docs]'``); no AiiDA profile, database or service is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS))

import make_reference  # noqa: E402

import aiida_lifdiff  # noqa: E402

# The process reference is generated from setup.cfg's entry points; rewrite it (only when it changed) so a build
# can never show a stale list. `python docs/make_reference.py --check` tells CI whether the committed page is current.
make_reference.write()

project = "aiida-lifdiff"
author = "the aiida-lifdiff authors"
copyright = "the aiida-lifdiff authors"  # noqa: A001
release = aiida_lifdiff.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_click",
    "lifdiff_sphinx",  # docs/_ext: aiida.sphinxext + aiida-calcfunction + aiida-exit-codes
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]

# MyST: keep the plain Markdown files readable on GitHub; relative links between them become cross-references.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Docstrings: reStructuredText with :param: fields, a few with Google-style sections.
napoleon_google_docstring = True
napoleon_numpy_docstring = True
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# The analysis package imports numpy/scipy/matplotlib only; nothing to mock.

html_theme = "furo"
html_title = f"aiida-lifdiff {release}"
html_static_path: list[str] = []

nitpicky = False
# Help texts and docstrings name command-line flags (`dp --tf`, `--pt_train_file`): keep `--` and quotes as typed.
smartquotes = False
