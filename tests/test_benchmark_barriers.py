"""A benchmark with barriers: each potential at its own lattice, static barriers beside Ea, overlay figure.

Tosi-Fumi (reference) against the shipped tiny DeePMD model, which was trained on Tosi-Fumi labels near
4.03 A and puts the crystal at a smaller lattice constant (3.97 A) than the reference (4.01 A): the rows must
show both, and the barrier differences, from the study's own relaxation and NEB nodes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiida.engine import run_get_node

from aiida_lifdiff.study import build_builder, load_study

pytest.importorskip("deepmd", reason="the candidate is a DeePMD model")

MODEL = Path(__file__).parent / "data" / "models" / "tiny-deepmd.pb"
STUDY = f"""
name: barrier-benchmark
protocol: quick
structure: {{repeat: 1}}
temperatures_K: [700.0, 900.0, 1100.0]
seeds: [5]
md: {{timestep_fs: 2.0, production_ps: 2.0, equilibration_ps: 0.2, frame_interval_fs: 50.0}}
analysis: {{n_blocks: 2}}
reference: tosi_fumi
potentials:
  tosi_fumi: {{kind: classical, model: tosi-fumi-lif}}
  deepmd: {{kind: deepmd, path: {MODEL}}}
barriers: {{repeat: 2, paths: [knockoff_collinear, direct]}}
"""


def test_rows_have_each_potentials_a0_and_barriers(lammps_code, tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY)
    results, node = run_get_node(build_builder(load_study(path)))
    # 452 (no Ea from 2 ps runs) is honest here; the static part is what this test is about.
    assert node.exit_status in (0, 452), node.exit_message
    rows = results["comparison"]["rows"]
    reference, candidate = rows["tosi_fumi"], rows["deepmd"]
    assert reference["a0_A"] == pytest.approx(4.0096, abs=0.002)
    assert candidate["a0_A"] == pytest.approx(3.974, abs=0.01)
    assert candidate["delta_a0_A"] == pytest.approx(candidate["a0_A"] - reference["a0_A"])
    for row in (reference, candidate):
        assert row["barrier_knockoff_collinear_converged"] and row["barrier_direct_converged"]
        assert row["barrier_knockoff_collinear_eV"] < row["barrier_direct_eV"]
        assert "barrier_knockoff_noncollinear_eV" not in row  # not asked for
    delta = candidate["barrier_knockoff_collinear_eV"] - reference["barrier_knockoff_collinear_eV"]
    assert candidate["delta_barrier_knockoff_collinear_eV"] == pytest.approx(delta)
    assert "delta_barrier_knockoff_collinear_eV" not in reference
    # Each potential's MD cell is its own lattice (repeat 1: the cell edge is a0).
    for name in ("tosi_fumi", "deepmd"):
        lattice = results["lattice"][name]
        assert lattice["a0_A"] == pytest.approx(rows[name]["a0_A"])
        diffusion = next(
            c for c in node.called if c.label.endswith(f"/{name}") and c.process_label == "DiffusionWorkChain"
        )
        assert diffusion.outputs.structure.cell[0][0] == pytest.approx(lattice["a0_A"], rel=1e-9)
    with results["barrier_overlay"].open(mode="rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"

    from click.testing import CliRunner

    from aiida_lifdiff.cli.main import cli

    shown = CliRunner().invoke(cli, ["show", str(node.pk), "--output", str(tmp_path / "out")])
    assert shown.exit_code == 0, shown.output
    assert "== lattice constant and static migration barriers" in shown.output
    assert (tmp_path / "out" / f"benchmark-{node.pk}-barrier_overlay.png").is_file()
    listed = CliRunner().invoke(cli, ["results", "--label", "barrier-benchmark", "--format", "csv"])
    assert listed.exit_code == 0 and "a0_A" in listed.output.splitlines()[0], listed.output


STATIC_ONLY = f"""
name: static-only-benchmark
protocol: quick
structure: {{repeat: 1}}
temperatures_K: [700.0, 900.0, 1100.0]
seeds: [5]
md: {{timestep_fs: 2.0, production_ps: 2.0, equilibration_ps: 0.2, frame_interval_fs: 50.0}}
analysis: {{n_blocks: 2}}
reference: tosi_fumi
potentials:
  tosi_fumi: {{kind: classical, model: tosi-fumi-lif}}
  deepmd: {{kind: deepmd, path: {MODEL}, md: false}}
barriers: {{repeat: 2, paths: [knockoff_collinear]}}
"""


def test_a_static_only_potential_gets_a0_and_barriers_and_says_why_it_has_no_ea(lammps_code, tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(STATIC_ONLY)
    study = load_study(path)
    builder = build_builder(study)
    assert builder.static_only.get_list() == ["deepmd"]
    _, node = run_get_node(builder)
    assert node.exit_status in (0, 452), node.exit_message
    assert not [c for c in node.called if c.label.endswith("/deepmd") and c.process_label == "DiffusionWorkChain"]
    row = node.outputs.comparison["rows"]["deepmd"]
    assert row["static_only"] and "static_only" in row["reason"] and not row["fit_ok"]
    # No MD, so no lattice relaxation of its own: a0 comes from the barrier run's E(V).
    assert row["a0_A"] == pytest.approx(3.974, abs=0.01) and row["barrier_knockoff_collinear_converged"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("  tosi_fumi: {kind: classical, model: tosi-fumi-lif, md: false}", "must run MD"),
        ("  tosi_fumi: {kind: classical, model: tosi-fumi-lif, md: maybe}", "md"),
    ],
)
def test_static_only_refusals(tmp_path, change, message):
    from aiida_lifdiff.study import StudyError

    text = STATIC_ONLY.replace("  tosi_fumi: {kind: classical, model: tosi-fumi-lif}", change)
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(StudyError, match=message):
        load_study(path)
