"""`aiida-lifdiff results` and `lineage` on a graph with a known answer, and the table formatting alone.

The graph is the synthetic one of ``benchmarks/query_scale.py`` (the node and link pattern of real studies:
shared potentials, models trained from split datasets, studies inside benchmarks, failed fits), so every
filter has an exact expected answer. The tables tests at the end need no database.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aiida_lifdiff import tables

REPO = Path(__file__).resolve().parents[1]
PREFIX = "qry_test"  # an underscore, so the LaTeX escaping is exercised
N_STUDIES = 30


def _query_scale():
    spec = importlib.util.spec_from_file_location("query_scale", REPO / "benchmarks" / "query_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def truth(aiida_profile):
    """The synthetic studies, by study UUID, with what their rows must say."""
    rows = _query_scale().build_synthetic_studies(N_STUDIES, prefix=PREFIX)
    return {row["study_uuid"]: row for row in rows}


def _results(**filters):
    from aiida_lifdiff.queries import arrhenius_results

    return arrhenius_results(label=filters.pop("label", PREFIX), **filters)


# ---------------------------------------------------------------------------------------------- rows


def test_every_row_carries_its_lineage(truth):
    from aiida_lifdiff.queries import training_lineage

    rows = _results()
    assert len(rows) == N_STUDIES
    assert {row["study_uuid"] for row in rows} == set(truth)
    # Newest first: the synthetic studies are created a minute apart in index order.
    assert [truth[row["study_uuid"]]["index"] for row in rows] == sorted(range(N_STUDIES), reverse=True)

    kinds = set()
    for row in rows:
        expected = truth[row["study_uuid"]]
        kinds.add(expected["kind"])
        assert row["study"] == expected["label"]
        assert row["potential"] == expected["potential"]
        assert row["kind"] == expected["kind"]
        assert row["potential_uuid"] == expected["potential_uuid"]
        assert row["arrhenius_uuid"] == expected["arrhenius_uuid"]
        assert row["benchmark_uuid"] == expected["benchmark_uuid"]
        assert row["foundation"] == expected["foundation"]
        assert row["train_frames"] == expected["train_frames"]
        assert row["train_source"] == expected["train_source"]
        assert row["n_atoms"] == expected["n_atoms"] and row["repeat"] == expected["repeat"]
        assert row["n_atoms"] == 8 * expected["repeat"] ** 3 + 1  # rock salt + one interstitial Li
        assert row["temperatures_K"] == expected["temperatures_K"]
        assert row["n_temperatures"] == len(expected["temperatures_K"])
        assert row["n_seeds"] == expected["n_seeds"]
        assert row["production_ps"] == expected["production_ps"]
        assert row["timestep_fs"] == expected["timestep_fs"]
        assert row["exit_status"] == expected["exit_status"]
        if expected["fit_ok"]:
            assert row["status"] == "ok"
            assert row["Ea_eV"] == expected["Ea_eV"] and row["Ea_err_eV"] == expected["Ea_err_eV"]
            assert row["D300_cm2_s"] == expected["D300_cm2_s"]
            assert row["n_fit_temperatures"] == row["n_temperatures"]
        else:
            assert row["status"].startswith("failed (421): only 0 of")
            assert row["Ea_eV"] is None and row["D300_cm2_s"] is None and row["chi2_dof"] is None
        if expected["train_frames"] is not None:
            # The bulk lineage equals the one-potential lookup other code uses, and it reaches the whole dataset.
            lineage = training_lineage(row["potential_uuid"])
            assert row["train_frames"] == lineage["train_frames"]
            assert row["dataset_uuid"] == lineage["dataset_uuid"]
            assert lineage["train_frames"] + lineage["valid_frames"] + lineage["test_frames"] == row["dataset_frames"]
            assert row["trainer"] in ("LifdiffMaceTrainCalculation", "LifdiffDeepmdTrainCalculation")
        else:
            assert row["training_uuid"] is None and row["dataset_uuid"] is None
    assert kinds == {"classical", "mace", "deepmd"}
    assert any(row["benchmark_uuid"] for row in rows) and not all(row["benchmark_uuid"] for row in rows)
    assert any(row["status"] != "ok" for row in rows)


def _expected(truth, predicate) -> set[str]:
    return {uuid for uuid, row in truth.items() if predicate(row)}


FILTERS = [
    ({"potential_kind": "classical"}, lambda r: r["kind"] == "classical"),
    ({"potential_kind": "deepmd"}, lambda r: r["kind"] == "deepmd"),
    ({"label": f"{PREFIX}-bench"}, lambda r: r["benchmark_uuid"] is not None),
    ({"potential": "(FT MEDIUM"}, lambda r: "(ft medium" in r["potential"]),  # case ignored
    ({"foundation": "medium-mpa-0"}, lambda r: r["foundation"] == "medium-mpa-0"),
    ({"foundation": "small"}, lambda r: r["foundation"] == "small"),
    ({"train_source": "mace medium-mpa-0 md"}, lambda r: (r["train_source"] or "").startswith("MACE medium-mpa-0 MD")),
    ({"min_train_frames": 100}, lambda r: r["train_frames"] is not None and r["train_frames"] >= 100),
    ({"max_train_frames": 80}, lambda r: r["train_frames"] is not None and r["train_frames"] <= 80),
    ({"min_train_frames": 100, "max_train_frames": 200}, lambda r: r["train_frames"] in (160,)),
    ({"atoms": 217}, lambda r: r["n_atoms"] == 217),
    ({"atoms": 9}, lambda r: r["n_atoms"] == 9),
    ({"min_temperatures": 5}, lambda r: len(r["temperatures_K"]) >= 5),
    (
        {"potential_kind": "mace", "atoms": 65, "min_temperatures": 4},
        lambda r: r["kind"] == "mace" and r["n_atoms"] == 65 and len(r["temperatures_K"]) >= 4,
    ),
]


@pytest.mark.parametrize(("filters", "predicate"), FILTERS, ids=[str(f) for f, _ in FILTERS])
def test_each_filter_returns_exactly_the_expected_rows(truth, filters, predicate):
    expected = _expected(truth, predicate)
    assert 0 < len(expected) < len(truth), "the synthetic graph must make this filter mean something"
    assert {row["study_uuid"] for row in _results(**filters)} == expected


def test_study_uuids_restrict_the_rows(truth):
    some = sorted(truth)[:4]
    assert {row["study_uuid"] for row in _results(label=None, study_uuids=some)} == set(some)
    assert _results(label=None, study_uuids=[]) == []


# ---------------------------------------------------------------------------------------------- CLI


def _cli(*arguments):
    from click.testing import CliRunner

    from aiida_lifdiff.cli.main import cli

    result = CliRunner().invoke(cli, list(arguments))
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_csv_and_json_carry_the_uuids_and_full_precision(truth):
    rows = _results()
    parsed = list(csv.DictReader(io.StringIO(_cli("results", "--label", PREFIX, "--format", "csv"))))
    assert [row["study_uuid"] for row in parsed] == [row["study_uuid"] for row in rows]
    for shown, row in zip(parsed, rows):
        assert shown["arrhenius_uuid"] == row["arrhenius_uuid"] and shown["potential_uuid"] == row["potential_uuid"]
        assert shown["benchmark_uuid"] == (row["benchmark_uuid"] or "")
        assert (float(shown["Ea_eV"]) if shown["Ea_eV"] else None) == row["Ea_eV"]
        assert [float(t) for t in shown["temperatures_K"].split(";")] == row["temperatures_K"]
    assert json.loads(_cli("results", "--label", PREFIX, "--format", "json")) == json.loads(tables.to_json(rows))
    filtered = json.loads(_cli("results", "--label", PREFIX, "--kind", "mace", "--atoms", "65", "--format", "json"))
    assert {row["study_uuid"] for row in filtered} == _expected(
        truth, lambda r: r["kind"] == "mace" and r["n_atoms"] == 65
    )
    assert "no Arrhenius results match these filters" in _cli("results", "--label", PREFIX, "--atoms", "3")


def _latex_body(text: str) -> list[list[str]]:
    """The cells of each data line of a booktabs tabular (between \\midrule and \\bottomrule)."""
    assert text.count(r"\begin{tabular}") == 1 and text.count(r"\end{tabular}") == 1
    header, body = text.split(r"\midrule")
    body = body.split(r"\bottomrule")[0]
    assert r"\toprule" in header
    columns = re.search(r"\\begin\{tabular\}\{([lcr]+)\}", text).group(1)
    lines = [line.strip() for line in body.strip().splitlines() if line.strip()]
    assert all(line.endswith(r"\\") for line in lines)
    cells = [[cell.strip() for cell in line[:-2].split(" & ")] for line in lines]
    assert all(len(row) == len(columns) for row in cells)
    return cells


def test_cli_latex_is_a_booktabs_tabular_with_one_line_per_result(truth):
    rows = _results()
    text = _cli("results", "--label", PREFIX, "--format", "latex")
    cells = _latex_body(text)
    assert len(cells) == len(rows)
    assert r"\caption{" in text and "per-defect" in text and "eV" in text
    for line, row in zip(cells, rows):
        assert line[0] == row["potential"].replace("_", r"\_")
        assert "_" not in line[0].replace(r"\_", "")
        assert line[3] == str(row["n_atoms"])
        if row["Ea_eV"] is None:
            assert line[6] == "no fit" and line[7] == "--"
            continue
        ea = re.fullmatch(r"\$(\d+\.\d{3}) \\pm (\d+\.\d{3})\$", line[6])
        assert ea, line[6]
        assert float(ea.group(1)) == pytest.approx(row["Ea_eV"], abs=5e-4)
        assert float(ea.group(2)) == pytest.approx(row["Ea_err_eV"], abs=5e-4)
        d300 = re.fullmatch(r"\$\((\d\.\d\d) \\pm (\d+\.\d\d)\) \\times 10\^\{(-?\d+)\}\$", line[7])
        assert d300, line[7]
        value = float(d300.group(1)) * 10 ** int(d300.group(3))
        assert value == pytest.approx(row["D300_cm2_s"], rel=6e-3)
        assert line[9] == r"\texttt{" + row["study_uuid"][:8] + "}"


def test_cli_table_shows_lineage_columns(truth):
    output = _cli("results", "--label", f"{PREFIX}-bench", "--foundation", "medium")
    expected = [r for r in truth.values() if r["benchmark_uuid"] and r["foundation"] == "medium-mpa-0"]
    lines = output.strip().splitlines()
    assert len(lines) == 2 + len(expected)  # header, rule, one line per result
    for header in ("potential", "foundation", "trained on", "atoms", "T (K)", "MD per T", "Ea (eV)", "chi2/dof"):
        assert header in lines[0]
    for row in expected:
        [line] = [line for line in lines if row["study_uuid"][:8] in line]
        assert f"{row['n_atoms']} ({row['repeat']}x{row['repeat']}x{row['repeat']})" in line
        assert "medium-mpa-0" in line
        if row["train_frames"]:
            assert f"{row['train_frames']} frames" in line
        if row["fit_ok"]:
            assert f"{row['Ea_eV']:.3f} +- {row['Ea_err_eV']:.3f}" in line


# ---------------------------------------------------------------------------------------------- lineage


def _walk(entry):
    yield entry
    for child in entry["children"]:
        yield from _walk(child)


def test_lineage_of_a_trained_model_result_reaches_the_dataset_and_code_versions(truth):
    from aiida import orm

    from aiida_lifdiff import __version__
    from aiida_lifdiff.queries import provenance_tree, tree_lines

    expected = next(r for r in truth.values() if r["fit_ok"] and r["kind"] == "deepmd" and r["n_seeds"] > 1)
    tree = provenance_tree(expected["arrhenius_uuid"])
    entries = list(_walk(tree))
    shown = [e for e in entries if not e["seen"]]
    assert len({e["pk"] for e in shown}) == len(shown), "a node is expanded once"
    labels = [e["details"].get("process_label") for e in shown]
    for process in (
        "fit_arrhenius",
        "compute_diffusivity",
        "LifdiffLammpsCalculation",
        "prepare_lammps_md",
        "LifdiffDeepmdTrainCalculation",
        "split_dataset",
        "create_lif_supercell",
    ):
        assert process in labels, process
    for entry in shown:
        if "process_label" in entry["details"]:
            assert entry["details"]["version"]["plugin"] == __version__
    calc = next(e for e in shown if e["details"].get("process_label") == "LifdiffLammpsCalculation")
    assert calc["details"]["code"] == "synthetic-lammps@localhost"
    assert "never runs" in calc["details"]["code_description"]
    potential = next(e for e in shown if e["node_type"] == "PotentialData")
    assert potential["uuid"] == expected["potential_uuid"] and len(potential["details"]["sha256"]) == 64
    dataset = next(e for e in shown if e["node_type"] == "DatasetData" and "split" not in e["details"])
    assert dataset["details"]["n_frames"] == orm.load_node(dataset["uuid"]).n_frames
    # Fan-out: one temperature and one replica are followed, the others are counted.
    fit = next(e for e in shown if e["details"].get("process_label") == "fit_arrhenius")
    [temperatures] = [c for c in fit["collapsed"] if c["made_by"] == "compute_diffusivity"]
    assert temperatures["count"] == len(expected["temperatures_K"]) - 1
    compute = next(e for e in shown if e["details"].get("process_label") == "compute_diffusivity")
    [replicas] = compute["collapsed"]
    assert replicas["node_type"] == "TrajectoryData" and replicas["count"] == expected["n_seeds"] - 1
    # Readable: a full study stays within a screen or two.
    text = tree_lines(tree)
    assert 15 < len(text) < 80
    assert any("aiida-core" in line and "LifdiffLammpsCalculation" in line for line in text)


def test_lineage_cli_from_a_benchmark_and_from_a_study(truth):
    bench = next(r for r in truth.values() if r["benchmark_uuid"])
    members = [r for r in truth.values() if r["benchmark_uuid"] == bench["benchmark_uuid"]]
    output = _cli("lineage", bench["benchmark_uuid"])
    assert output.startswith("BenchmarkWorkChain<")
    assert "=> result comparison" in output
    for member in members:
        assert member["arrhenius_uuid"][:8] in output
    study = _cli("lineage", bench["study_uuid"][:13])
    assert study.startswith("DiffusionWorkChain<") and "=> result arrhenius" in study
    tree = json.loads(_cli("lineage", bench["arrhenius_uuid"], "--format", "json", "--depth", "2"))
    assert tree["uuid"] == bench["arrhenius_uuid"] and tree["children"][0]["children"]
    assert all(child["truncated"] or not child["children"] for child in tree["children"][0]["children"])

    from click.testing import CliRunner

    from aiida_lifdiff.cli.main import cli

    missing = CliRunner().invoke(cli, ["lineage", "ffffffff-0000"])
    assert missing.exit_code != 0 and "no node" in missing.output

    trained = next(r for r in truth.values() if r["train_frames"] and r["foundation"])
    model = _cli("lineage", trained["potential_uuid"])
    assert model.startswith("PotentialData<") and "<- created by (model) LifdiffMaceTrainCalculation<" in model
    assert "<- foundation: PotentialData<" in model and f"train part, {trained['train_frames']} frames" in model


# ---------------------------------------------------------------------------------------------- tables alone


def test_tables_module_needs_no_aiida():
    code = "import sys, aiida_lifdiff.tables; sys.exit(any(m.split('.')[0] == 'aiida' for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_latex_number_formats():
    assert tables.latex_pm(0.1224, 0.0401) == r"$0.122 \pm 0.040$"
    assert tables.latex_pm(0.1224, None) == "$0.122$"
    assert tables.latex_pm(None, 0.1) == "--" and tables.latex_pm(float("nan"), 0.1) == "--"
    assert tables.latex_scientific(1.234e-7, 4.5e-8) == r"$(1.23 \pm 0.45) \times 10^{-7}$"
    assert tables.latex_scientific(9.996e-8, 1e-9) == r"$(1.00 \pm 0.01) \times 10^{-7}$"  # rounds up a decade
    assert tables.latex_scientific(3.0e-5) == r"$3.00 \times 10^{-5}$"
    assert tables.latex_scientific(None) == "--"
    assert tables.latex_escape("tosi_fumi & 50% #1 {x} $") == r"tosi\_fumi \& 50\% \#1 \{x\} \$"
    assert tables.latex_escape(None) == "--"


ROW = {
    "pk": 7,
    "study": "demo/tosi_fumi",
    "potential": "Tosi-Fumi LiF",
    "kind": "classical",
    "temperatures_K": [500.0, 650.0, 800.0],
    "n_seeds": 2,
    "production_ps": 20.0,
    "timestep_fs": 1.0,
    "n_atoms": 65,
    "repeat": 2,
    "mode": "collective",
    "Ea_eV": 0.1224,
    "Ea_err_eV": 0.0401,
    "D300_cm2_s": 1.234e-7,
    "D300_err_cm2_s": 4.5e-8,
    "chi2_dof": 2.5,
    "status": "ok",
    "study_uuid": "0123456789abcdef",
}


def test_tables_handle_missing_values_and_round_trip():
    sparse = {"study": "x_y", "potential": "p_q", "mode": "tracer", "Ea_eV": float("nan"), "temperatures_K": None}
    text = tables.to_text([ROW, sparse])
    assert "0.122 +- 0.040" in text and "2.50!" in text and "65 (2x2x2)" in text and "2 x 20 ps @ 1 fs" in text
    parsed = list(csv.DictReader(io.StringIO(tables.to_csv([ROW, sparse]))))
    assert float(parsed[0]["Ea_eV"]) == ROW["Ea_eV"] and parsed[0]["temperatures_K"] == "500.0;650.0;800.0"
    assert parsed[1]["D300_cm2_s"] == "" and parsed[1]["Ea_eV"] == "nan"
    assert json.loads(tables.to_json([sparse]))[0]["Ea_eV"] is None  # NaN -> null
    latex = tables.to_latex([ROW, sparse])
    cells = _latex_body(latex)
    assert cells[0][6] == r"$0.122 \pm 0.040$" and cells[0][7] == r"$(1.23 \pm 0.45) \times 10^{-7}$"
    assert cells[0][4] == "500--800 (3)" and cells[0][5] == r"$2 \times 20$ ps"
    assert cells[1][0] == r"p\_q" and cells[1][6] == "no fit"
    assert "per-defect" in latex and "tracer" in latex  # both modes named in the caption
    assert tables.to_csv([]) == "" and _latex_body(tables.to_latex([])) == []


COMPARISON = {
    "reference": "tosi_fumi",
    "primary_mode": "collective",
    "rows": {
        "mace_ft": {
            "kind": "mace",
            "label": "MACE fine_tuned",
            "Ea_eV": 0.15,
            "Ea_err_eV": 0.02,
            "delta_Ea_eV": 0.03,
            "delta_Ea_err_eV": 0.025,
            "delta_sigma": 1.2,
            "eval_energy_rmse_meV_per_atom": 1.234,  # the shared evaluation set wins over the own test split
            "test_energy_rmse_meV_per_atom": 9.9,
            "test_force_rmse_meV_per_A": 45.6,
            "lineage": {"foundation": "medium-mpa-0"},
            "D_T": [
                {"temperature_K": 500.0, "D_cm2_s": 1e-6, "D_err_cm2_s": 1e-7},
                {"temperature_K": 800.0, "D_cm2_s": 1e-5, "D_err_cm2_s": 2e-6},
            ],
        },
        "tosi_fumi": {"kind": "classical", "Ea_eV": 0.12, "Ea_err_eV": 0.01, "D_T": [{"temperature_K": 500.0}]},
        "deepmd": {"name": "deepmd", "kind": "deepmd", "fit_ok": False, "reason": "no diffusive regime", "D_T": []},
    },
}


def test_comparison_tables_put_the_reference_first_and_tolerate_missing_keys():
    rows = tables.comparison_rows(COMPARISON)
    assert [row["potential"] for row in rows] == ["tosi_fumi", "deepmd", "mace_ft"]
    assert rows[0]["reference"] and not rows[2]["reference"]
    assert rows[2]["D_800K_cm2_s"] == 1e-5 and "lineage" not in rows[2]
    parsed = list(csv.DictReader(io.StringIO(tables.comparison_csv(COMPARISON))))
    assert list(parsed[0])[:3] == ["potential", "reference", "kind"]
    assert parsed[2]["delta_sigma"] == "1.2" and parsed[1]["reason"] == "no diffusive regime"
    assert "D_500K_err_cm2_s" in parsed[0] and parsed[0]["D_500K_cm2_s"] == ""
    cells = _latex_body(tables.comparison_latex(COMPARISON))
    assert len(cells) == 3 and len(cells[0]) == 7 + 2
    assert cells[0][0] == "tosi\\_fumi (ref.)" and cells[0][2] == r"$0.120 \pm 0.010$" and cells[0][3] == "--"
    assert cells[2][0] == r"mace\_ft" and cells[2][3] == r"$0.030 \pm 0.025$" and cells[2][4] == "1.2"
    assert cells[2][8] == r"$(1.00 \pm 0.20) \times 10^{-5}$"
    assert tables.comparison_rows({}) == [] and tables.comparison_csv({"rows": {"a": None}}).startswith("potential")
    assert math.isclose(float(parsed[2]["eval_energy_rmse_meV_per_atom"]), 1.234) and "name" not in parsed[1]
    assert cells[2][5] == "1.23" and cells[2][6] == "45.6"  # E RMSE from the evaluation set, F from the test split
