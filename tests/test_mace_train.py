"""``lifdiff.mace_train``: real ``mace_run_train`` runs (tiny, CPU, offline) and the checks made before submission.

The new reference ("Tosi-Fumi + Morse") is the shipped Tosi-Fumi labels plus an ASE Morse term on every pair
(epsilon 10 meV, r0 2.8 A, smoothly cut off between 3.3 and 4.2 A, i.e. inside the models' 4.5 A cutoff). It
changes the forces by ~0.18 eV/A RMS (the Tosi-Fumi forces themselves are ~0.39 eV/A RMS) and the energy by
~50 meV/atom, so the shipped foundation (trained on Tosi-Fumi alone) is clearly wrong on it and fine-tuning has
something to learn.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

pytest.importorskip("mace", reason="MACE training tests need the `mace` extra (mace-torch)")

from ase.calculators.morse import MorsePotential  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from helpers_mace import one_torch_thread  # noqa: E402, F401 (autouse fixture)

from aiida_lifdiff.calculations.mace_train import LifdiffMaceTrainCalculation  # noqa: E402
from aiida_lifdiff.data.dataset import DatasetData  # noqa: E402
from aiida_lifdiff.data.potential import PotentialData  # noqa: E402
from aiida_lifdiff.training import mace as mace_training  # noqa: E402

MODELS = Path(__file__).parent / "data" / "models"
#: Isolated-atom energies of the shipped data (tests/data/models/manifest.json).
E0S = {"Li": -3.84631, "F": -6.961454}
#: Small, fast fine-tuning settings (each run ~25 s on one CPU thread).
FINETUNE_FLAGS = {
    "max_num_epochs": 8,
    "eval_interval": 2,
    "lr": 0.005,
    "batch_size": 5,
    "valid_batch_size": 10,
    "seed": 3,
}


def morse_relabel(frames):
    """The frames with Tosi-Fumi + Morse labels (energy, forces, stress summed)."""
    morse = MorsePotential(epsilon=0.01, r0=2.8, rho0=4.0, rcut1=3.3 / 2.8, rcut2=4.2 / 2.8)
    relabelled = []
    for frame in frames:
        extra = frame.copy()
        extra.calc = morse
        new = frame.copy()
        new.calc = SinglePointCalculator(
            new,
            energy=frame.get_potential_energy() + extra.get_potential_energy(),
            forces=frame.get_forces() + extra.get_forces(),
            stress=frame.get_stress() + extra.get_stress(),
        )
        relabelled.append(new)
    return relabelled


def rmse(model_path, frames) -> tuple[float, float]:
    """(energy RMSE in meV/atom, force RMSE in meV/A) of the MACE model in ``model_path`` against ``frames``."""
    from aiida_lifdiff.potentials.mace import mace_calculator

    calculator = mace_calculator(model_path, device="cpu", dtype="float64")
    de, df = [], []
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calculator
        de.append((atoms.get_potential_energy() - frame.get_potential_energy()) / len(frame))
        df.append((atoms.get_forces() - frame.get_forces()).ravel())
    return 1e3 * math.sqrt(np.mean(np.square(de))), 1e3 * math.sqrt(np.mean(np.square(np.concatenate(df))))


@pytest.fixture(scope="module")
def code(aiida_profile):
    from aiida_lifdiff.codes import ensure_localhost_computer, ensure_mace_train_code

    return ensure_mace_train_code(ensure_localhost_computer())


@pytest.fixture(scope="module")
def foundation(aiida_profile):
    node = PotentialData.from_model_file(
        "mace", MODELS / "tiny-mace.model", label="tiny-mace", lineage={"trained_on": "Tosi-Fumi LiF"}
    )
    return PotentialData.get_or_create(node)


@pytest.fixture(scope="module")
def data(aiida_profile):
    """Train (40), valid (10) and test (15, held out) frames with the new labels; a replay set of old labels."""
    train_file = DatasetData.from_extxyz(MODELS / "lif-classical-train.extxyz").get_frames()
    test_file = DatasetData.from_extxyz(MODELS / "lif-classical-test.extxyz").get_frames()
    order = np.random.default_rng(0).permutation(len(train_file))
    small_test = [frame for frame in test_file if len(frame) == 65][:15]
    source = "tests/data/models frames relabelled: Tosi-Fumi + Morse(eps 0.01 eV, r0 2.8 A, cut 3.3-4.2 A)"
    nodes = {
        "train": DatasetData(morse_relabel([train_file[i] for i in order[:40]]), source=source),
        "valid": DatasetData(morse_relabel([train_file[i] for i in order[40:50]]), source=source),
        "test": DatasetData(morse_relabel(small_test), source=source),
        "replay": DatasetData([train_file[i] for i in order[200:230]], source="Tosi-Fumi labels (foundation data)"),
    }
    for name, node in nodes.items():
        node.label = f"lif-{name}"
        node.store()
    return nodes


def builder_for(code, mode, parameters, **inputs):
    builder = LifdiffMaceTrainCalculation.get_builder()
    builder.code = code
    builder.mode = orm.Str(mode)
    builder.parameters = parameters if isinstance(parameters, orm.Dict) else orm.Dict(parameters)
    builder.metadata.options.max_wallclock_seconds = 900
    for name, node in inputs.items():
        builder[name] = node
    return builder


@pytest.fixture(scope="module")
def naive_finetune(code, foundation, data):
    results, node = run_get_node(
        builder_for(
            code,
            "naive_finetune",
            FINETUNE_FLAGS,
            train=data["train"],
            valid=data["valid"],
            test=data["test"],
            foundation=foundation,
        )
    )
    return results, node


# ----------------------------------------------------------------------------------------- real training


def test_naive_finetune_beats_the_foundation_on_new_data(naive_finetune, foundation, data):
    results, node = naive_finetune
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    test_frames = data["test"].get_frames()
    with foundation.as_path() as path:
        e_foundation, f_foundation = rmse(path, test_frames)
    with results["model"].as_path() as path:
        e_tuned, f_tuned = rmse(path, test_frames)
    print(f"foundation: E {e_foundation:.2f} meV/atom, F {f_foundation:.1f} meV/A")
    print(f"fine-tuned: E {e_tuned:.2f} meV/atom, F {f_tuned:.1f} meV/A")
    # The Morse term is ~180 meV/A of force: the foundation misses it, the fine-tuned model learns most of it.
    assert f_foundation > 150.0
    assert f_tuned < f_foundation / 3.0
    assert e_tuned < e_foundation / 3.0

    errors = results["errors"].get_dict()
    print("parsed errors:", {k: errors[k] for k in ("train", "valid", "test", "wall_time_s", "training_time_s")})
    # mace's own test table (0.1 meV resolution, float32) agrees with the evaluation above.
    assert errors["test"]["rmse_f_meV_per_A"] == pytest.approx(f_tuned, abs=1.0)
    assert errors["test"]["rmse_e_meV_per_atom"] == pytest.approx(e_tuned, abs=0.5)
    assert errors["test"]["n_frames"] == 15
    assert errors["valid"]["rmse_f_meV_per_A"] < f_foundation / 3.0
    assert errors["wall_time_s"] > 0 and errors["training_time_s"] > 0
    assert errors["mace_version"] == "0.3.16"

    curves = results["learning_curves"]
    epochs = curves.get_array("epoch")
    assert list(epochs) == [-1, 0, 2, 4, 6]
    rmse_f = curves.get_array("rmse_f")
    # The first evaluation (before training) is the foundation on the validation set.
    assert rmse_f[0] * 1e3 > 150.0 and rmse_f[-1] < rmse_f[0] / 3.0
    assert len(curves.get_array("train_loss")) == FINETUNE_FLAGS["max_num_epochs"]

    # The log and the curves are kept; the model file only passed through (it is stored once, as the output).
    retrieved = set(node.outputs.retrieved.base.repository.list_object_names())
    assert {"mace_run-3.log", "mace_run-3_train.txt", "mace.err"} <= retrieved
    assert not any(name.endswith(".model") for name in retrieved)


def test_model_lineage_and_provenance(naive_finetune, foundation, data):
    results, node = naive_finetune
    model = results["model"]
    assert model.kind == "mace" and model.is_stored
    assert model.creator.uuid == node.uuid
    creator_inputs = model.creator.inputs
    assert creator_inputs.foundation.uuid == foundation.uuid
    assert creator_inputs.train.uuid == data["train"].uuid
    assert isinstance(creator_inputs.train, DatasetData)

    lineage = model.lineage
    assert lineage["mode"] == "naive_finetune"
    assert lineage["foundation"]["uuid"] == foundation.uuid
    assert lineage["foundation"]["sha256"] == foundation.sha256
    assert lineage["datasets"]["train"] == {
        "uuid": data["train"].uuid,
        "label": "lif-train",
        "n_frames": 40,
        "source": data["train"].source,
        "sha256": data["train"].sha256,
    }
    assert set(lineage["datasets"]) == {"train", "valid", "test"}
    assert lineage["flags"]["multiheads_finetuning"] is False
    assert lineage["flags"]["E0s"] == "foundation"
    assert lineage["flags"]["max_num_epochs"] == 8
    assert lineage["flags"]["save_cpu"] is True
    # The architecture is the foundation's (mace copies it), not the default flags'.
    assert model.model_info["r_max"] == foundation.model_info["r_max"]
    for key in ("hidden_irreps", "num_interactions", "correlation"):
        assert model.model_info[key] == foundation.model_info[key]
    assert model.sha256 != foundation.sha256


def test_scratch_training_gives_a_loadable_model(code, data):
    flags = {
        "hidden_irreps": "8x0e",
        "MLP_irreps": "8x0e",
        "radial_MLP": "[16,16]",
        "max_num_epochs": 4,
        "eval_interval": 2,
        "E0s": E0S,
        "seed": 5,
    }
    results, node = run_get_node(builder_for(code, "scratch", flags, train=data["train"]))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    model = results["model"]
    assert model.lineage["foundation"] is None
    assert model.lineage["flags"]["E0s"] == "{3: -3.84631, 9: -6.961454}"
    assert model.model_info["channels"] == 8 and sorted(model.model_info["species"]) == ["F", "Li"]
    with model.as_path() as path:
        energy, force = rmse(path, data["test"].get_frames())
    print(f"scratch (4 epochs): E {energy:.2f} meV/atom, F {force:.1f} meV/A")
    assert math.isfinite(energy) and math.isfinite(force)
    errors = results["errors"].get_dict()
    # No validation input: mace held out valid_fraction (10 %) of the 40 frames.
    assert "valid" in errors and "test" not in errors
    # Four epochs of a tiny model learn little, but they do learn: the validation force error falls.
    rmse_f = results["learning_curves"].get_array("rmse_f")
    assert rmse_f[-1] < rmse_f[0]


def test_multihead_finetune_with_a_local_replay_set(code, foundation, data):
    flags = dict(FINETUNE_FLAGS, max_num_epochs=6, force_mh_ft_lr=True)
    results, node = run_get_node(
        builder_for(
            code,
            "multihead_finetune",
            flags,
            train=data["train"],
            valid=data["valid"],
            test=data["test"],
            foundation=foundation,
            replay=data["replay"],
        )
    )
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    model = results["model"]
    assert set(model.model_info["heads"]) == {"Default", "pt_head"}
    assert model.lineage["datasets"]["replay"]["uuid"] == data["replay"].uuid
    assert results["errors"]["multihead"] is True
    assert "pt_head__rmse_f" in results["learning_curves"].get_arraynames()
    with foundation.as_path() as path:
        _, f_foundation = rmse(path, data["test"].get_frames())
    with model.as_path() as path:
        _, f_tuned = rmse(path, data["test"].get_frames())
    print(f"multihead: F {f_foundation:.1f} -> {f_tuned:.1f} meV/A")
    assert f_tuned < f_foundation / 3.0


def test_flags_mace_refuses_give_invalid_input(code, data):
    """An unknown flag passes our checks (mace has ~170) but mace's argparse refuses it: exit code 302."""
    flags = {"E0s": E0S, "no_such_flag_of_mace": 1}
    _, node = run_get_node(builder_for(code, "scratch", flags, train=data["train"]))
    assert node.exit_status == LifdiffMaceTrainCalculation.exit_codes.ERROR_INVALID_INPUT.status
    assert "no_such_flag_of_mace" in node.exit_message


def test_a_run_that_fails_reports_the_missing_model_with_the_reason(code, data):
    """Mixed channel counts pass our checks but fail mace's own (an assertion): exit code 300 with its error."""
    flags = {"E0s": E0S, "hidden_irreps": "8x0e+4x1o"}
    _, node = run_get_node(builder_for(code, "scratch", flags, train=data["train"]))
    assert node.exit_status == LifdiffMaceTrainCalculation.exit_codes.ERROR_MISSING_MODEL.status
    print("exit message:", node.exit_message)
    assert "AssertionError" in node.exit_message


# ----------------------------------------------------------------------------------------- refused before submission


@pytest.mark.parametrize(
    ("mode", "parameters", "with_replay", "match"),
    [
        ("naive_finetune", {"foundation_model": "medium-mpa-0"}, False, "name mace-torch downloads"),
        ("naive_finetune", {"foundation_model": "small"}, False, "foundation_model"),
        ("multihead_finetune", {"pt_train_file": "mp"}, True, "downloaded by mace-torch"),
        ("multihead_finetune", {"pt_train_file": "omat"}, True, "pt_train_file"),
        ("multihead_finetune", {}, False, "silently switches multihead fine-tuning off"),
        ("multihead_finetune", {"E0s": "average"}, True, "E0s=average"),
        ("naive_finetune", {"train_file": "elsewhere.xyz"}, False, "train_file"),
        ("naive_finetune", {"heads": "{'mp': {'train_file': 'mp'}}"}, False, "heads"),
        ("naive_finetune", {"max_num_epochs": [1, 2]}, False, "values must be"),
        ("naive_finetune", {"wandb": True}, False, "network"),
        ("scratch", {"E0s": E0S}, False, "do not pass a foundation"),
        ("naive_finetune", {"E0s": "{3: -3.84631}"}, False, "no energy for F"),
        ("naive_finetune", {"E0s": "e0s.json"}, False, "json file"),
    ],
)
def test_download_and_conflicting_settings_are_refused_before_submission(
    code, foundation, data, mode, parameters, with_replay, match
):
    """Flag-only problems are refused when the builder's port is set; the others when the process is created."""
    before = orm.QueryBuilder().append(orm.CalcJobNode).count()
    inputs = {"train": data["train"], "foundation": foundation}
    if with_replay:
        inputs["replay"] = data["replay"]
    parameters = orm.Dict(parameters)
    with pytest.raises(ValueError, match=match):
        run_get_node(builder_for(code, mode, parameters, **inputs))
    assert orm.QueryBuilder().append(orm.CalcJobNode).count() == before
    assert not parameters.is_stored


def test_fine_tuning_without_foundation_and_scratch_without_e0s_are_refused(code, data):
    before = orm.QueryBuilder().append(orm.CalcJobNode).count()
    with pytest.raises(ValueError, match="needs a foundation"):
        run_get_node(builder_for(code, "naive_finetune", {}, train=data["train"]))
    with pytest.raises(ValueError, match="needs E0s"):
        run_get_node(builder_for(code, "scratch", {}, train=data["train"]))
    with pytest.raises(ValueError, match="mode must be one of"):
        run_get_node(builder_for(code, "finetune", {}, train=data["train"]))
    assert orm.QueryBuilder().append(orm.CalcJobNode).count() == before


# ----------------------------------------------------------------------------------------- pure helpers


def test_switch_table_matches_mace_argparse():
    """SWITCHES must list exactly mace's value-less arguments, or an argument would be written wrongly."""
    import argparse

    from mace.tools.arg_parser import build_default_arg_parser

    switches = {}
    for action in build_default_arg_parser()._actions:
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            for option in action.option_strings:
                switches[option.lstrip("-")] = isinstance(action, argparse._StoreTrueAction) or option.startswith(
                    "--disallow"
                )
    assert switches == mace_training.SWITCHES


def test_arguments_and_output_names():
    flags = mace_training.training_flags({"swa": True, "start_swa": 3, "E0s": {"3": -1.0, "F": -2.0}}, "scratch")
    arguments = mace_training.mace_train_arguments(flags, {"train_file": "train.extxyz", "test_file": "test.extxyz"})
    assert arguments[:3] == ["--name=mace", "--train_file=train.extxyz", "--test_file=test.extxyz"]
    assert "--swa" in arguments and "--ema" in arguments and "--save_cpu" in arguments
    assert "--plot=False" in arguments and "--E0s={3: -1.0, 9: -2.0}" in arguments
    assert not any(argument.startswith("--multiheads_finetuning") for argument in arguments)
    naive = mace_training.training_flags({}, "naive_finetune")
    assert "--multiheads_finetuning=False" in mace_training.mace_train_arguments(naive, {})
    with pytest.raises(ValueError, match="set by the CalcJob"):
        mace_training.mace_train_arguments({"work_dir": "x"}, {})
    assert mace_training.output_files({"seed": 3}) == {
        "model": "mace.model",
        "model_stagetwo": "mace_stagetwo.model",
        "log": "logs/mace_run-3.log",
        "results": "results/mace_run-3_train.txt",
    }
    assert mace_training.final_model_file(["mace.model", "mace_stagetwo.model"]) == "mace_stagetwo.model"
    assert mace_training.final_model_file(["mace_compiled.model"]) is None


LOG = """\
2026-01-01 10:00:00.000 INFO: MACE version: 0.3.16
2026-01-01 10:00:01.000 INFO: Total number of configurations: train=40, tests=[md_Default: 30, rattled_Default: 10],
2026-01-01 10:00:02.000 INFO: Started training, reporting errors on validation set
2026-01-01 10:00:05.000 INFO: Epoch 0: head: Default, loss=0.1, RMSE_E_per_atom=   1.00 meV, RMSE_F=  20.00 meV / A
2026-01-01 10:00:09.000 INFO: Training complete
2026-01-01 10:00:10.000 INFO: Error-table on TRAIN and VALID:
+---------------+---------------------+------------------+-------------------+
|  config_type  | RMSE E / meV / atom | RMSE F / meV / A | relative F RMSE % |
+---------------+---------------------+------------------+-------------------+
| train_Default |            3.0      |         25.8     |          3.09     |
| valid_Default |            2.5      |         24.5     |          3.24     |
+---------------+---------------------+------------------+-------------------+
2026-01-01 10:00:11.000 INFO: Error-table on TEST:
+-----------------+---------------------+------------------+-------------------+
|   config_type   | RMSE E / meV / atom | RMSE F / meV / A | relative F RMSE % |
+-----------------+---------------------+------------------+-------------------+
|    md_Default   |            1.0      |         10.0     |          2.00     |
| rattled_Default |            3.0      |         30.0     |          3.00     |
+-----------------+---------------------+------------------+-------------------+
2026-01-01 10:00:12.000 INFO: Done
"""


def test_error_tables_and_log():
    errors = mace_training.parse_error_tables(LOG)
    assert errors["train"] == {"rmse_e_meV_per_atom": 3.0, "rmse_f_meV_per_A": 25.8, "rel_rmse_f_percent": 3.09}
    assert errors["test_by_config_type"]["rattled"]["n_frames"] == 10
    # Frames of one size: sqrt((30 * 1 + 10 * 9) / 40) meV/atom and sqrt((30 * 100 + 10 * 900) / 40) meV/A.
    assert errors["test"]["rmse_e_meV_per_atom"] == pytest.approx(math.sqrt(3.0))
    assert errors["test"]["rmse_f_meV_per_A"] == pytest.approx(math.sqrt(300.0))
    assert errors["test"]["n_frames"] == 40 and "rel_rmse_f_percent" not in errors["test"]
    weighted = mace_training.parse_error_tables(LOG, atoms_per_config_type={"md": 30 * 65, "rattled": 10 * 217})
    expected = math.sqrt((30 * 65 * 100 + 10 * 217 * 900) / (30 * 65 + 10 * 217))
    assert weighted["test"]["rmse_f_meV_per_A"] == pytest.approx(expected)
    summary = mace_training.parse_log(LOG)
    assert summary["completed"] and summary["training_completed"] and not summary["nan_loss"]
    assert summary["wall_time_s"] == 12.0 and summary["training_time_s"] == 7.0 and summary["last_epoch"] == 0


def test_nan_losses_mean_divergence():
    text = "\n".join(
        [
            '{"loss": 0.5, "rmse_f": 0.2, "mode": "eval", "epoch": null, "head": "Default"}',
            '{"loss": 1.0, "time": 0.1, "mode": "opt", "epoch": 0}',
            '{"loss": NaN, "time": 0.1, "mode": "opt", "epoch": 0}',
            '{"loss": NaN, "rmse_f": NaN, "mode": "eval", "epoch": 0, "head": "Default"}',
            '{"loss": 0.4, "mode": "ev',
        ]
    )
    curves = mace_training.parse_learning_curves(text)
    assert list(curves["Default"]["epoch"]) == [-1, 0]
    assert math.isnan(curves["Default"]["rmse_f"][1]) and math.isnan(curves["train"]["loss"][0])
    assert mace_training.diverged(curves)
    nan_log = "2026-01-01 10:00:05.000 INFO: Epoch 3: head: Default, loss=nan, RMSE_E_per_atom= nan meV"
    assert mace_training.parse_log(nan_log)["nan_loss"]
