"""``lifdiff.deepmd_train``: a real (small) DeePMD-kit training through AiiDA, and what it leaves behind.

One se_e2_a model is trained with ``dp --tf`` on 75 frames of the shipped Tosi-Fumi LiF data (1500 steps, ~20 s
on one CPU thread) and tested with ``dp test`` on the 50 held-out 65-atom frames. The tests check that it learned
something (test force RMSE far below the spread of the forces), that deepmd-kit's ASE calculator reproduces the
parsed ``dp test`` errors with the stored model, the provenance (lineage, links, what the repository keeps),
that bad settings are refused before anything is stored, that a diverging run ends in its own exit code, and the
parsers on the files of that real run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk
from ase.io import read
from ase.neighborlist import neighbor_list

from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.training.deepmd import (
    DEFAULT_SETTINGS,
    deepmd_input,
    lcurve_divergence,
    neighbour_counts,
    neighbour_sel,
    parse_dp_test,
    parse_lcurve,
    parse_train_log,
    validate_deepmd_settings,
)

# The in-process DeePMD calculator below shares the 2 CPU cores with other jobs (see DESIGN.md).
for _variable in ("OMP_NUM_THREADS", "DP_INTRA_OP_PARALLELISM_THREADS", "DP_INTER_OP_PARALLELISM_THREADS"):
    os.environ.setdefault(_variable, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

pytest.importorskip("deepmd", reason="DeePMD training tests need deepmd-kit")

MODELS = Path(__file__).parent / "data" / "models"
STEPS = 1500
#: Small but not trivial: the shipped tiny model's architecture (DEFAULT_SETTINGS), fewer steps and a faster
#: learning-rate decay, and the same reference energies (E0s) as the shipped models (tests/data/models/README.md).
SETTINGS = {
    "numb_steps": STEPS,
    "decay_steps": 100,
    "disp_freq": 100,
    "seed": 3,
    "atom_ener": json.loads((MODELS / "manifest.json").read_text())["data"]["reference_energies"]["e0s"],
}


def calcjob_count() -> int:
    return orm.QueryBuilder().append(orm.CalcJobNode).count()


@pytest.fixture(scope="module")
def dp_code(aiida_profile):
    from aiida_lifdiff.codes import ensure_dp_code, ensure_localhost_computer

    return ensure_dp_code(ensure_localhost_computer())


@pytest.fixture(scope="module")
def datasets(aiida_profile) -> dict[str, DatasetData]:
    """Train: every 4th frame of the shipped training file (md/rattled/strained mixed); valid: 10 others;
    test: every 65-atom frame of the shipped test file."""
    frames = read(MODELS / "lif-classical-train.extxyz", ":")
    test = [atoms for atoms in read(MODELS / "lif-classical-test.extxyz", ":") if len(atoms) == 65]
    nodes = {
        "train": DatasetData(frames[::4], source="tests: every 4th frame of lif-classical-train.extxyz"),
        "valid": DatasetData(frames[1::30], source="tests: every 30th frame from 1 of lif-classical-train.extxyz"),
        "test": DatasetData(test, source="tests: 65-atom frames of lif-classical-test.extxyz"),
    }
    for name, node in nodes.items():
        node.label = f"lif-{name}"
        node.store()
    return nodes


def builder_for(code, datasets, settings, names=("train", "valid", "test")):
    from aiida_lifdiff.calculations.deepmd_train import LifdiffDeepmdTrainCalculation

    builder = LifdiffDeepmdTrainCalculation.get_builder()
    builder.code = code
    for name in names:
        builder[name] = datasets[name]
    builder.parameters = orm.Dict(settings)
    return builder


@pytest.fixture(scope="module")
def trained(dp_code, datasets):
    results, node = run_get_node(builder_for(dp_code, datasets, SETTINGS))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    return results, node


def retrieved_text(node, name: str) -> str:
    return node.outputs.retrieved.base.repository.get_object_content(name)


def test_trained_model_learned_the_forces(trained, datasets):
    results, node = trained
    errors = results["errors"].get_dict()
    test_frames = datasets["test"].get_frames()
    forces = np.concatenate([atoms.get_forces().ravel() for atoms in test_frames])
    energies = np.array([atoms.get_potential_energy() / len(atoms) for atoms in test_frames])
    force_spread = 1e3 * forces.std()
    energy_spread = 1e3 * energies.std()
    print(
        f"\n{STEPS} steps in {errors['train_wall_time_s']:.1f} s ({errors['seconds_per_batch'] * 1e3:.1f} ms/step); "
        f"test ({errors['n_test_frames']} frames): force RMSE {errors['test_force_rmse_meV_per_A']:.1f} meV/A "
        f"(force std {force_spread:.1f}), energy RMSE {errors['test_energy_rmse_meV_per_atom']:.2f} meV/atom "
        f"(energy/atom std {energy_spread:.2f}); lcurve end {errors['lcurve_final']}"
    )
    assert errors["n_test_frames"] == len(test_frames) == 50
    assert errors["test_force_rmse_meV_per_A"] < 0.5 * force_spread
    assert errors["test_energy_rmse_meV_per_atom"] < 0.5 * energy_spread
    assert errors["validation"] == "separate valid dataset"
    assert errors["deepmd_version"].startswith("v3.2")
    # The training set carries stress labels, so dp test also reports virials (not trained: pref_v = 0).
    assert "test_virial_rmse_meV_per_atom" in errors

    lcurve = results["lcurve"]
    assert list(lcurve.get_array("step")) == list(range(0, STEPS + 1, 100))
    assert lcurve.get_array("rmse_f_trn")[-1] < 0.5 * lcurve.get_array("rmse_f_trn")[0]
    assert errors["lcurve_final"]["step"] == STEPS


def test_model_runs_in_deepmd_ase_calculator_at_the_dp_test_error(trained, datasets, tmp_path):
    from aiida_lifdiff.potentials.deepmd import deepmd_calculator

    results, _ = trained
    model = results["model"]
    path = tmp_path / model.filename
    with model.open(mode="rb") as handle:
        path.write_bytes(handle.read())
    calculator = deepmd_calculator(path)
    force_errors, energy_errors = [], []
    for atoms in datasets["test"].get_frames():
        reference_forces, reference_energy = atoms.get_forces(), atoms.get_potential_energy()
        atoms.calc = calculator
        force_errors.append((atoms.get_forces() - reference_forces).ravel())
        energy_errors.append((atoms.get_potential_energy() - reference_energy) / len(atoms))
    force_rmse = 1e3 * np.sqrt(np.mean(np.concatenate(force_errors) ** 2))
    energy_rmse = 1e3 * np.sqrt(np.mean(np.square(energy_errors)))
    errors = results["errors"].get_dict()
    print(
        f"\nASE calculator on the test set: force RMSE {force_rmse:.3f} meV/A, energy RMSE {energy_rmse:.4f} meV/atom"
    )
    # Same model, same frames: only the 7 digits dp test prints separate the two.
    assert force_rmse == pytest.approx(errors["test_force_rmse_meV_per_A"], rel=1e-4)
    assert energy_rmse == pytest.approx(errors["test_energy_rmse_meV_per_atom"], rel=1e-3)


def test_lineage_links_and_repository(trained, datasets):
    results, node = trained
    model = results["model"]
    assert isinstance(model, PotentialData) and model.kind == "deepmd"
    assert model.species == ["F", "Li"] and model.model_info["type_map"] == ["F", "Li"]
    assert model.model_info["rcut"] == DEFAULT_SETTINGS["rcut"] and "path" not in model.model_info
    assert model.creator.uuid == node.uuid
    incoming = {link.link_label: link.node.uuid for link in model.creator.base.links.get_incoming().all()}
    for name in ("train", "valid", "test"):
        assert incoming[name] == datasets[name].uuid

    lineage = model.lineage
    assert lineage["method"] == "deepmd_train" and lineage["calcjob_uuid"] == node.uuid
    for name in ("train", "valid", "test"):
        dataset = datasets[name]
        assert lineage[name] == {
            "uuid": dataset.uuid,
            "n_frames": dataset.n_frames,
            "source": dataset.source,
            "sha256": dataset.sha256,
            "label": dataset.label,
        }
    assert lineage["settings"]["numb_steps"] == STEPS and lineage["settings"]["rcut"] == 4.5
    assert lineage["deepmd_kit_version"].startswith("v3.2")
    assert lineage["deepmd_input"]["model"]["fitting_net"]["atom_ener"] == [
        SETTINGS["atom_ener"]["F"],
        SETTINGS["atom_ener"]["Li"],
    ]
    # sel came from the data: the 75 + 10 + 50 frames' largest neighbour counts, 20 % headroom, multiple of 4.
    frames = [f for name in ("train", "valid", "test") for f in datasets[name].get_frames()]
    assert lineage["sel"] == neighbour_sel(frames, 4.5, ["F", "Li"], margin=1.2)

    # The node keeps input.json; the exported npy systems are not stored twice (the datasets are inputs).
    stored = node.base.repository.list_object_names()
    assert "input.json" in stored and not {"train", "valid", "test"} & set(stored)
    retrieved = set(node.outputs.retrieved.base.repository.list_object_names())
    assert {"lcurve.out", "model.pb", "train.out", "freeze.out", "test.out", "test_detail.f.out"} <= retrieved


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rcut": 4.0, "rcut_smth": 4.0}, "rcut_smth"),
        ({"learning_rate": 0.01}, "unknown DeePMD settings ['learning_rate']"),
        ({"numb_steps": 0}, "numb_steps must be a positive integer"),
        ({"numb_steps": 100, "decay_steps": 200}, "decay_steps (200) must be smaller than numb_steps (100)"),
        ({"numb_steps": 1500, "disp_freq": 200}, "must be a multiple of disp_freq"),
        ({"axis_neuron": 32}, "axis_neuron"),
        ({"type_map": ["Li"]}, "not in the type_map ['Li']"),
        ({"atom_ener": {"Li": -3.8}}, "atom_ener gives ['Li']"),
    ],
)
def test_bad_settings_are_refused_before_submission(dp_code, datasets, settings, message):
    before = calcjob_count()
    with pytest.raises(ValueError) as error:
        run_get_node(builder_for(dp_code, datasets, settings))
    assert message in str(error.value)
    assert calcjob_count() == before, "nothing may be stored for refused inputs"


def test_diverging_training_ends_in_its_exit_code(dp_code, datasets):
    """A learning rate of 1e12 sends the energy bias to ~1e23 eV/atom (Adam keeps it finite: no NaN)."""
    settings = {"numb_steps": 100, "decay_steps": 50, "disp_freq": 10, "start_lr": 1e12, "stop_lr": 1e11}
    results, node = run_get_node(builder_for(dp_code, datasets, settings, names=("train",)))
    assert node.exit_status == 310, node.exit_message
    assert "rmse_e_trn grew from" in node.exit_message
    assert "model" not in results and "lcurve" in results
    assert results["errors"]["validation"] == "training set reused"
    logs = orm.Log.collection.get_logs_for(node)
    assert any("training set is reused" in log.message for log in logs)
    columns = {name: results["lcurve"].get_array(name) for name in results["lcurve"].get_arraynames()}
    assert lcurve_divergence(columns) is not None


def test_parsers_on_the_files_of_the_real_run(trained):
    _, node = trained
    columns = parse_lcurve(retrieved_text(node, "lcurve.out"))
    assert set(columns) == {
        "step",
        "rmse_val",
        "rmse_trn",
        "rmse_e_val",
        "rmse_e_trn",
        "rmse_f_val",
        "rmse_f_trn",
        "lr",
    }
    assert columns["step"].dtype == np.int64 and columns["step"][-1] == STEPS
    assert lcurve_divergence(columns) is None
    # A line cut short by a killed job is dropped, not an error.
    truncated = parse_lcurve(retrieved_text(node, "lcurve.out") + "   1600  1.0e+00  2.0")
    assert truncated["step"][-1] == STEPS

    test = parse_dp_test(retrieved_text(node, "test.out"))
    # dp's own per-atom detail file (data_fx data_fy data_fz pred_fx pred_fy pred_fz) gives the same force RMSE.
    detail = np.loadtxt(node.outputs.retrieved.base.repository.get_object_content("test_detail.f.out").splitlines())
    force_rmse = 1e3 * np.sqrt(np.mean((detail[:, 3:6] - detail[:, 0:3]) ** 2))
    assert test["force_rmse_meV_per_A"] == pytest.approx(force_rmse, rel=1e-5)
    assert test["n_frames"] == 50 and test["n_systems"] == 1
    (system,) = test["systems"].values()
    assert system["force_rmse_meV_per_A"] == test["force_rmse_meV_per_A"]
    assert test["energy_rmse_meV_per_atom"] < test["energy_rmse_meV"]
    with pytest.raises(ValueError, match="no dp test results"):
        parse_dp_test(retrieved_text(node, "train.out"))

    log = parse_train_log(retrieved_text(node, "train.out"))
    assert log["finished"] and log["error"] is None and log["deepmd_version"].startswith("v3.2")
    assert log["wall_time_s"] > 0 and log["seconds_per_batch"] > 0


def test_settings_helpers_without_a_profile():
    assert validate_deepmd_settings({}) is None
    assert validate_deepmd_settings({"sel": [24, 24], "type_map": ["Li", "F"]}) is None
    assert "sel has 1 entries" in validate_deepmd_settings({"sel": [24], "type_map": ["Li", "F"]})
    assert "batch_size" in validate_deepmd_settings({"batch_size": "many"})
    assert "numb_steps" in validate_deepmd_settings({"numb_steps": True})
    # Perfect rock salt, a = 4.03 A, rcut 4.5: 12 + 6 like neighbours and 6 + 8 unlike ones -> 18 * 1.2 -> 24.
    crystal = bulk("LiF", "rocksalt", a=4.03, cubic=True).repeat(2)
    assert neighbour_sel([crystal], 4.5, ["Li", "F"]) == [24, 24]
    assert neighbour_sel([crystal], 4.5, ["Li", "F", "Na"], margin=1.0) == [20, 20, 4]
    # The counts are ASE's neighbour list's, also for a cutoff beyond half the cell and a skewed (primitive) cell.
    frames = read(MODELS / "lif-classical-test.extxyz", "::10") + [bulk("LiF", "rocksalt", a=4.03)]
    for frame in frames:
        symbols = np.asarray(frame.get_chemical_symbols())
        for rcut in (3.0, 6.5):
            first, second = neighbor_list("ij", frame, rcut)
            expected = {
                element: int(np.bincount(first[symbols[second] == element], minlength=len(frame)).max())
                for element in ("F", "Li")
            }
            assert neighbour_counts(frame, rcut, ["F", "Li"]) == expected
    document = deepmd_input({"atom_ener": {"Li": -1.0, "F": -2.0}}, ["Li", "F"], ["train/a"], ["valid/a"], [24, 24])
    assert document["model"]["fitting_net"]["atom_ener"] == [-1.0, -2.0]
    assert document["training"]["save_freq"] == DEFAULT_SETTINGS["numb_steps"]
    with pytest.raises(ValueError, match="rcut_smth"):
        deepmd_input({"rcut_smth": 5.0}, ["Li", "F"], ["t"], ["v"], [24, 24])
