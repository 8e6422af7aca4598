"""`aiida-lifdiff export`: a real study's archive, figures and tables, and the archive read back elsewhere.

The round trip runs a tiny classical DiffusionWorkChain (real LAMMPS, about half a minute), exports it,
imports the archive into a brand-new profile in another process (its own AIIDA_PATH, `verdi presto`, no
services) and asks that profile's `aiida-lifdiff results`: every value, UUID and lineage field must be the
ones of the source, only the pks differ. The comparison tables of a benchmark are checked on a synthetic
benchmark (the graph of benchmarks/query_scale.py), since the work chain that writes them is not in yet.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from aiida import orm
from aiida.engine import run_get_node
from click.testing import CliRunner

from aiida_lifdiff.cli.main import cli
from aiida_lifdiff.export import ExportError, export_study, load_study_node
from aiida_lifdiff.queries import DIFFUSION_PROCESS_TYPE, arrhenius_results
from aiida_lifdiff.study import build_builder, load_study

REPO = Path(__file__).resolve().parents[1]
TINY_STUDY = Path(__file__).parent / "data" / "tiny_study.yaml"
BIN = Path(sys.executable).parent
PNG = b"\x89PNG\r\n\x1a\n"

#: Keys of a results row that belong to one database (pks); everything else must survive an export/import.
LOCAL_KEYS = ("pk", "benchmark_pk")


@pytest.fixture(scope="module")
def study(lammps_code):
    _, node = run_get_node(build_builder(load_study(TINY_STUDY)))
    assert node.is_finished_ok, node.exit_message
    return node


def _run(*command, env):
    done = subprocess.run([str(part) for part in command], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.lammps
def test_export_writes_archive_figures_and_tables(study, tmp_path):
    out = tmp_path / "export"
    result = CliRunner().invoke(cli, ["export", study.uuid, str(out)])
    assert result.exit_code == 0, result.output
    assert f"DiffusionWorkChain<{study.pk}>" in result.output

    archive = out / "tiny-test.aiida"
    assert archive.is_file() and archive.stat().st_size > 10_000
    figures = sorted(path.name for path in (out / "figures").iterdir())
    assert figures == ["arrhenius_plot.png"]
    content = (out / "figures" / "arrhenius_plot.png").read_bytes()
    assert content[:8] == PNG and content == study.outputs.arrhenius_plot.get_content(mode="rb")

    arrhenius = study.outputs.arrhenius.get_dict()
    record = arrhenius[arrhenius["primary_mode"]]
    [row] = list(csv.DictReader((out / "results.csv").open()))
    assert row["study_uuid"] == study.uuid and row["arrhenius_uuid"] == study.outputs.arrhenius.uuid
    assert float(row["Ea_eV"]) == record["Ea_eV"] and float(row["Ea_err_eV"]) == record["Ea_err_eV"]
    assert float(row["D300_cm2_s"]) == record["D300_cm2_s"]
    assert row["n_atoms"] == "65" and row["repeat"] == "2" and row["n_seeds"] == "2"
    assert row["temperatures_K"] == "500.0;650.0;800.0" and float(row["production_ps"]) == 20.0
    assert row["kind"] == "classical" and row["potential"] == "Tosi-Fumi LiF" and row["status"] == "ok"

    [json_row] = json.loads((out / "results.json").read_text())
    assert json_row["Ea_eV"] == record["Ea_eV"] and json_row["potential_uuid"] == study.inputs.potential.uuid

    tex = (out / "results.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and "tiny-test" in tex and study.uuid in tex
    [line] = [line for line in tex.split(r"\midrule")[1].split(r"\bottomrule")[0].splitlines() if line.strip()]
    cells = line.rstrip(" \\").split(" & ")
    assert cells[6] == f"${record['Ea_eV']:.3f} \\pm {record['Ea_err_eV']:.3f}$"
    assert re.fullmatch(r"\$\(\d\.\d\d \\pm \d+\.\d\d\) \\times 10\^\{-?\d+\}\$", cells[7]), cells[7]
    assert not (out / "comparison.csv").exists()  # a DiffusionWorkChain has no comparison

    # An existing archive is not overwritten by accident.
    again = CliRunner().invoke(cli, ["export", study.uuid, str(out)])
    assert again.exit_code != 0 and "exists" in again.output
    assert CliRunner().invoke(cli, ["export", study.uuid, str(out), "--overwrite"]).exit_code == 0


@pytest.mark.lammps
def test_archive_round_trip_gives_the_same_results_in_a_fresh_profile(study, tmp_path):
    done = export_study(study, tmp_path / "export")
    source = [
        {k: v for k, v in row.items() if k not in LOCAL_KEYS}
        for row in json.loads(json.dumps(arrhenius_results(study_uuids=[study.uuid])))
    ]
    assert len(source) == 1

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIIDA")}
    env["AIIDA_PATH"] = str(tmp_path / "fresh")
    profile = "lifdiff-import"
    _run(BIN / "verdi", "presto", "--profile-name", profile, "--no-broker", env=env)
    _run(BIN / "verdi", "-p", profile, "archive", "import", done["archive"], env=env)
    imported = json.loads(_run(BIN / "aiida-lifdiff", "-p", profile, "results", "--format", "json", env=env))
    assert len(imported) == 1
    assert [{k: v for k, v in row.items() if k not in LOCAL_KEYS} for row in imported] == source
    # Lineage and numbers, spelled out (the equality above covers them; these say what matters).
    row = imported[0]
    assert row["study_uuid"] == study.uuid and row["arrhenius_uuid"] == study.outputs.arrhenius.uuid
    assert row["potential_uuid"] == study.inputs.potential.uuid and row["n_atoms"] == 65
    assert row["Ea_eV"] == source[0]["Ea_eV"] and row["Ea_err_eV"] == source[0]["Ea_err_eV"]

    # The provenance came along: the fit leads back to the LAMMPS runs, their code and the potential's hash.
    lineage = _run(BIN / "aiida-lifdiff", "-p", profile, "lineage", study.outputs.arrhenius.uuid, env=env)
    assert "LifdiffLammpsCalculation" in lineage and "code lammps@localhost" in lineage
    assert study.inputs.potential.sha256[:12] in lineage and "prepare_lammps_md" in lineage


@pytest.mark.lammps
def test_study_is_found_by_label_and_refused_when_not_a_study(study):
    newest = (
        orm.QueryBuilder()
        .append(orm.WorkflowNode, filters={"label": "tiny-test", "process_type": DIFFUSION_PROCESS_TYPE}, project="*")
        .order_by({orm.WorkflowNode: {"ctime": "desc"}})
        .first(flat=True)
    )
    assert load_study_node("tiny-test").uuid == newest.uuid
    assert load_study_node(str(study.pk)).uuid == study.uuid
    assert load_study_node(study.uuid[:8]).uuid == study.uuid
    with pytest.raises(ExportError, match="not a BenchmarkWorkChain or DiffusionWorkChain"):
        load_study_node(study.inputs.potential.uuid)
    with pytest.raises(ExportError, match="no node"):
        load_study_node("no-such-study")


def test_benchmark_export_writes_the_comparison_tables(aiida_profile, tmp_path):
    spec = importlib.util.spec_from_file_location("query_scale", REPO / "benchmarks" / "query_scale.py")
    query_scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(query_scale)
    truth = query_scale.build_synthetic_studies(3, prefix="export_test")  # one benchmark of three potentials
    comparison = truth[0]["comparison"]
    assert truth[0]["benchmark_uuid"] and len({row["benchmark_uuid"] for row in truth}) == 1

    done = export_study("export_test-bench-0000", tmp_path / "bench")
    assert done["study"].uuid == truth[0]["benchmark_uuid"]
    assert done["archive"].is_file()
    # The synthetic plots are nodes without files: reported, not fatal.
    assert done["figures"] == [] and len(done["missing_figures"]) == sum(row["fit_ok"] for row in truth)

    rows = list(csv.DictReader((tmp_path / "bench" / "results.csv").open()))
    assert {row["study_uuid"] for row in rows} == {row["study_uuid"] for row in truth}
    assert all(row["benchmark_uuid"] == truth[0]["benchmark_uuid"] for row in rows)

    shown = list(csv.DictReader(io.StringIO((tmp_path / "bench" / "comparison.csv").read_text())))
    assert [row["potential"] for row in shown][0] == comparison["reference"]
    assert {row["potential"] for row in shown} == set(comparison["rows"])
    for row in shown:
        expected = comparison["rows"][row["potential"]]
        assert row["kind"] == expected["kind"]
        if "Ea_eV" in expected:
            assert float(row["Ea_eV"]) == expected["Ea_eV"]
        if "delta_Ea_eV" in expected:
            assert float(row["delta_Ea_eV"]) == expected["delta_Ea_eV"]
        for point in expected["D_T"]:
            assert float(row[f"D_{point['temperature_K']:g}K_cm2_s"]) == point["D_cm2_s"]
    tex = (tmp_path / "bench" / "comparison.tex").read_text()
    body = [line for line in tex.split(r"\midrule")[1].split(r"\bottomrule")[0].splitlines() if line.strip()]
    assert len(body) == len(comparison["rows"]) and "(ref.)" in body[0]
