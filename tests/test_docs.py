"""The Sphinx site builds with warnings as errors, and its process reference covers every entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_process_reference_lists_every_entry_point():
    sys.path.insert(0, str(DOCS))
    try:
        import make_reference
    finally:
        sys.path.remove(str(DOCS))
    assert make_reference.check() == [], "run `python docs/make_reference.py` and commit docs/reference/processes.md"


def test_the_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="the docs extra is not installed (pip install -e '.[docs]')")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    pages = {p.relative_to(tmp_path / "html").as_posix() for p in (tmp_path / "html").rglob("*.html")}
    assert {"index.html", "lab.html", "reference/processes.html", "reference/cli.html"} <= pages
    processes = (tmp_path / "html" / "reference" / "processes.html").read_text()
    for name in ("DiffusionWorkChain", "BenchmarkWorkChain", "MdWorkChain", "LifdiffLammpsCalculation"):
        assert name in processes
    assert "setup slurm" in (tmp_path / "html" / "reference" / "cli.html").read_text().replace("-", " ")
