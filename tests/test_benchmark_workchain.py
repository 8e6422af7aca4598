"""A whole benchmark study from its YAML: data generation, MACE and DeePMD training, diffusion for all three.

The setting is deliberately tiny (the 9-atom cell, 2 ps runs) so that it runs in CI; what is tested is that
every piece is wired: the classical reference starts at once, the trained models join when ready, runner-only
MD settings reach only the runner, and the summary has one honest row per potential (an Ea with its error,
or the reason there is none).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_lifdiff.queries import arrhenius_results, training_lineage
from aiida_lifdiff.study import build_builder, load_study

pytest.importorskip("mace", reason="the benchmark test trains a MACE model")
pytest.importorskip("deepmd", reason="the benchmark test trains a DeePMD model")

from helpers_mace import one_torch_thread  # noqa: E402,F401  (autouse fixture)

STUDY = """
name: tiny-benchmark
protocol: quick
# A fixed lattice: the MACE here trains for 3 epochs (its own a0 is wherever that lands); the own-lattice
# benchmark is tests/test_benchmark_barriers.py.
structure: {repeat: 1, relax_lattice: false}
temperatures_K: [700.0, 900.0, 1100.0]
seeds: [5]
md: {timestep_fs: 2.0, production_ps: 2.0, equilibration_ps: 0.2, frame_interval_fs: 50.0,
     dtype: float32}
analysis: {n_blocks: 2}
reference: reference
potentials:
  reference: {kind: classical, model: tosi-fumi-lif}
  mace: {kind: mace, train: {flags: {max_num_epochs: 3, start_swa: 2, batch_size: 4}}}
  deepmd: {kind: deepmd, train: {frames: 16, settings: {numb_steps: 400, decay_steps: 100}}}
training:
  sampler: reference
  labeller: reference
  data:
    temperatures_K: [600.0, 1000.0]
    md_settings: {production_ps: 1.0, equilibration_ps: 0.2}
evaluation: {data: generated, frames: 6}
"""


def _positions(dataset) -> list[bytes]:
    """A fingerprint per frame (its rounded positions), to check that two datasets share no frame."""
    return [np.round(atoms.positions, 6).tobytes() for atoms in dataset.get_frames()]


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
        codes.ensure_barrier_code,
    ):
        ensure(computer)


def test_benchmark_study_trains_and_compares(all_codes, tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY)
    study = load_study(path)
    results, node = run_get_node(build_builder(study))
    # 452 (no Ea for some potential) is an honest outcome of 2 ps runs; anything else is a failure.
    assert node.exit_status in (0, 452), node.exit_message

    dataset = results["generated_dataset"]
    assert dataset.n_frames == 2 * 10 + 2 * 2 + 2 * 2  # MD frames + 20 % rattled + 20 % strained
    evaluation_set = results["evaluation_set"]
    assert evaluation_set.n_frames == 6
    assert set(results["models"]) == {"mace", "deepmd"}
    for name, frames in (("mace", dataset.n_frames - 6), ("deepmd", 16)):
        lineage = training_lineage(results["models"][name])
        assert lineage["train_frames"] + lineage["valid_frames"] + lineage["test_frames"] == frames
        errors = results["test_errors"][name].get_dict()
        assert errors["n_frames"] == lineage["test_frames"] and errors["force_rmse_meV_per_A"] > 0
        # No model saw an evaluation frame: its training frames trace back to the rest of the dataset only.
        train = orm.load_node(lineage["train_uuid"])
        assert not set(_positions(train)) & set(_positions(evaluation_set))

    comparison = results["comparison"].get_dict()
    rows = comparison["rows"]
    assert comparison["reference"] == "reference" and set(rows) == {"reference", "mace", "deepmd"}
    assert comparison["evaluation_set"]["n_frames"] == 6
    for name, row in rows.items():
        assert row["kind"] == {"reference": "classical", "mace": "mace", "deepmd": "deepmd"}[name]
        assert [p["temperature_K"] for p in row["D_T"]] == [700.0, 900.0, 1100.0]
        assert row["eval_n_frames"] == 6
        if row["fit_ok"]:
            assert row["Ea_compare_err_eV"] >= row["Ea_err_eV"] > 0
        else:
            assert row["reason"], f"{name}: no Ea and no reason"
    # The reference labelled the evaluation set itself: its own errors there are zero (to the labels' rounding).
    assert rows["reference"]["eval_force_rmse_meV_per_A"] < 1e-3
    assert rows["reference"]["eval_energy_rmse_meV_per_atom"] < 1e-3
    for name in ("mace", "deepmd"):
        assert rows[name]["eval_force_rmse_meV_per_A"] > 1.0  # tiny models trained for seconds are not exact
        assert rows[name]["train_frames"] == training_lineage(results["models"][name])["train_frames"]
        if rows[name]["fit_ok"] and rows["reference"]["fit_ok"]:
            delta = rows[name]["Ea_eV"] - rows["reference"]["Ea_eV"]
            combined = math.hypot(rows[name]["Ea_compare_err_eV"], rows["reference"]["Ea_compare_err_eV"])
            assert rows[name]["delta_Ea_eV"] == pytest.approx(delta)
            assert rows[name]["delta_sigma"] == pytest.approx(delta / combined)
        else:
            assert "delta_sigma" not in rows[name]
    assert (node.exit_status == 0) == all(row["fit_ok"] for row in rows.values())
    for figure in ("arrhenius_overlay", "parity_overlay"):
        with results[figure].open(mode="rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"

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
