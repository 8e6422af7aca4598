"""A whole benchmark study from its YAML: data generation, MACE and DeePMD training, diffusion for all three.

The setting is deliberately tiny (the 9-atom cell, 2 ps runs) so that it runs in CI; what is tested is that
every piece is wired: the classical reference starts at once, the trained models join when ready, runner-only
MD settings reach only the runner, and the summary has one honest row per potential (an Ea with its error,
or the reason there is none).
"""

from __future__ import annotations

import pytest
from aiida.engine import run_get_node

from aiida_lifdiff.queries import arrhenius_results, training_lineage
from aiida_lifdiff.study import build_builder, load_study

pytest.importorskip("mace", reason="the benchmark test trains a MACE model")
pytest.importorskip("deepmd", reason="the benchmark test trains a DeePMD model")

from helpers_mace import one_torch_thread  # noqa: E402,F401  (autouse fixture)

STUDY = """
name: tiny-benchmark
protocol: quick
structure: {repeat: 1}
temperatures_K: [700.0, 900.0, 1100.0]
seeds: [5]
md: {timestep_fs: 2.0, production_ps: 2.0, equilibration_ps: 0.2, frame_interval_fs: 50.0,
     dtype: float32}
analysis: {n_blocks: 2}
potentials:
  reference: {kind: classical, model: tosi-fumi-lif}
  mace: {kind: mace, train: {flags: {max_num_epochs: 3, start_swa: 2, batch_size: 4}}}
  deepmd: {kind: deepmd, train: {settings: {numb_steps: 400, decay_steps: 100}}}
training:
  sampler: reference
  labeller: reference
  data:
    temperatures_K: [600.0, 1000.0]
    md_settings: {production_ps: 1.0, equilibration_ps: 0.2}
"""


@pytest.fixture(scope="module")
def all_codes(aiida_profile):
    from aiida_lifdiff import codes

    computer = codes.ensure_localhost_computer()
    for ensure in (
        codes.ensure_lammps_code,
        codes.ensure_runner_code,
        codes.ensure_label_code,
        codes.ensure_mace_train_code,
        codes.ensure_dp_code,
    ):
        ensure(computer)


def test_benchmark_study_trains_and_compares(all_codes, tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY)
    study = load_study(path)
    results, node = run_get_node(build_builder(study))
    # 452 (no Ea for some potential) is an honest outcome of 2 ps runs; anything else is a failure.
    assert node.exit_status in (0, 452), node.exit_message

    dataset = results["dataset"]
    assert dataset.n_frames == 2 * 10 + 2 * 2 + 2 * 2  # MD frames + 20 % rattled + 20 % strained
    assert set(results["models"]) == {"mace", "deepmd"}
    for name in ("mace", "deepmd"):
        lineage = training_lineage(results["models"][name])
        assert lineage["dataset_uuid"] == dataset.uuid
        assert lineage["train_frames"] + lineage["valid_frames"] + lineage["test_frames"] == dataset.n_frames
        errors = results["test_errors"][name].get_dict()
        assert errors["n_frames"] == lineage["test_frames"] and errors["force_rmse_meV_per_A"] > 0

    rows = results["summary"]["rows"]
    assert set(rows) == {"reference", "mace", "deepmd"}
    for name, row in rows.items():
        assert row["kind"] == {"reference": "classical", "mace": "mace", "deepmd": "deepmd"}[name]
        if row["fit_ok"]:
            assert row["Ea_err_eV"] > 0
        else:
            assert row["reason"], f"{name}: no Ea and no reason"
    assert (node.exit_status == 0) == all(row["fit_ok"] for row in rows.values())

    # Runner settings went to the MACE runs only; LAMMPS runs had them stripped, not refused.
    diffusions = {c.inputs.potential.kind: c for c in node.called if c.process_label == "DiffusionWorkChain"}
    assert diffusions["mace"].inputs.md_settings["dtype"] == "float32"
    assert "dtype" not in diffusions["classical"].inputs.md_settings.get_dict()
    # The reference did not wait for the training: it started before the first training calculation.
    first_training = min(
        c.ctime for c in node.called if c.process_label in ("FineTuneWorkChain", "DeepmdTrainWorkChain")
    )
    assert diffusions["classical"].ctime < first_training

    # `aiida-lifdiff results` finds the three rows of the study, with the training set of the trained ones.
    table = {row["kind"]: row for row in arrhenius_results(label="tiny-benchmark")}
    assert len(table) == 3
    trained = [row for row in table.values() if row["kind"] != "classical"]
    assert all(row["train_frames"] == training_lineage(row["potential_uuid"])["train_frames"] for row in trained)

    # The CLI prints the same study: every potential's D(T), the trained models' errors, the Ea table.
    from click.testing import CliRunner

    from aiida_lifdiff.cli.main import cli

    shown = CliRunner().invoke(cli, ["show", str(node.pk), "--output", str(tmp_path / "out")])
    assert shown.exit_code == 0, shown.output
    for text in ("== trained models", "== activation energies", "reference", "mace", "deepmd"):
        assert text in shown.output
    assert (tmp_path / "out" / f"benchmark-{node.pk}.json").is_file()
    listed = CliRunner().invoke(cli, ["results", "--label", "tiny-benchmark"])
    assert listed.exit_code == 0 and "trained on" in listed.output and " frames" in listed.output, listed.output
