"""Training data, fine-tuning and DeePMD training as work chains: real LAMMPS, MACE and DeePMD, full provenance.

The "new data" of the fine-tuning test comes from a *softened* Born-Mayer-Huggins potential for LiF (the Li-F
repulsion prefactor A scaled by 0.8): the shipped tiny MACE foundation was trained on Tosi-Fumi labels, so
it is wrong on these by a known, systematic amount that fine-tuning must remove.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.potentials.classical import tosi_fumi_lif
from aiida_lifdiff.queries import training_lineage
from aiida_lifdiff.workflows.functions.structures import create_lif_supercell

pytest.importorskip("mace", reason="training tests need the `ml` extra")
pytest.importorskip("deepmd", reason="training tests need the `ml` extra")

from helpers_mace import one_torch_thread  # noqa: E402,F401  (autouse fixture)

MODELS = Path(__file__).parent / "data" / "models"


@pytest.fixture(scope="module")
def codes(aiida_profile):
    from aiida_lifdiff import codes

    computer = codes.ensure_localhost_computer()
    return {
        "lammps": codes.ensure_lammps_code(computer),
        "runner": codes.ensure_runner_code(computer),
        "label": codes.ensure_label_code(computer),
        "mace": codes.ensure_mace_train_code(computer),
        "dp": codes.ensure_dp_code(computer),
    }


@pytest.fixture(scope="module")
def softened_bmh(aiida_profile):
    parameters = tosi_fumi_lif()
    parameters["name"] = "softened BMH LiF (Li-F A x 0.8)"
    parameters["pairs"]["Li-F"]["A"] *= 0.8
    return PotentialData.get_or_create(PotentialData.from_classical(parameters))


@pytest.fixture(scope="module")
def tosi_fumi_node(aiida_profile):
    return PotentialData.get_or_create(PotentialData.tosi_fumi_lif())


@pytest.fixture(scope="module")
def tiny_mace(aiida_profile):
    return PotentialData.get_or_create(
        PotentialData.from_model_file("mace", MODELS / "tiny-mace.model", label="tiny MACE (Tosi-Fumi)")
    )


def training_data_builder(codes, sampler, labeller, production_ps: float):
    """Tosi-Fumi-sampled frames of the 65-atom cell at 500 and 1000 K, every 100 fs (the first skipped),
    plus 25 % rattled and 25 % strained copies."""
    from aiida_lifdiff.workflows.training_data import TrainingDataWorkChain

    structure = create_lif_supercell(orm.Int(2), orm.Float(4.03), orm.Str("tetrahedral"))
    return TrainingDataWorkChain.get_builder_from_protocol(
        structure,
        sampler=sampler,
        labeller=labeller,
        md_code=codes["lammps"],
        label_code=codes["label"],
        overrides={
            "data": {
                "temperatures_K": [500.0, 1000.0],
                "md_settings": {"production_ps": production_ps, "equilibration_ps": 0.2},
                "sampling": {"skip": 1, "rattle_fraction": 0.25, "strain_fraction": 0.25},
            }
        },
    )


@pytest.fixture(scope="module")
def softened_data(codes, tosi_fumi_node, softened_bmh):
    """Frames sampled by Tosi-Fumi MD at two temperatures, labelled by the softened potential."""

    builder = training_data_builder(codes, tosi_fumi_node, softened_bmh, production_ps=2.0)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    return node


def test_training_data_is_sampled_and_labelled_with_provenance(softened_data, softened_bmh, tosi_fumi_node):
    dataset = softened_data.outputs.dataset
    # 2 temperatures x 20 frames (frame 0 skipped) + 25 % rattled + 25 % strained.
    assert dataset.n_frames == 2 * 20 + 10 + 10
    assert dataset.labelled and dataset.labels == ["energy", "forces", "stress"]
    assert dataset.base.attributes.get("config_types") == {"md": 40, "rattled": 10, "strained": 10}
    assert "softened BMH" in dataset.source and "Tosi-Fumi" in dataset.source
    # The graph: labelled dataset <- label calc (labeller, frames) <- sample_frames <- trajectories <- MD.
    label_calc = dataset.creator
    assert label_calc.inputs.potential.uuid == softened_bmh.uuid
    sampler_fn = label_calc.inputs.frames.creator
    trajectories = [link.node for link in sampler_fn.base.links.get_incoming(node_class=orm.TrajectoryData).all()]
    assert len(trajectories) == 2
    assert {t.base.attributes.get("temperature_K") for t in trajectories} == {500.0, 1000.0}
    md_runs = [c for c in softened_data.called if c.process_label == "MdWorkChain"]
    assert len(md_runs) == 2 and all(md.inputs.potential.uuid == tosi_fumi_node.uuid for md in md_runs)
    # Labels are forces of the softened potential, not Tosi-Fumi: they differ on the same frames.
    frames = dataset.get_frames()
    assert np.abs(frames[0].get_forces()).max() > 0.01


def test_finetuned_mace_beats_its_foundation_and_traces_back(codes, softened_data, tiny_mace):
    from aiida_lifdiff.workflows.finetune import FineTuneWorkChain

    dataset = softened_data.outputs.dataset
    builder = FineTuneWorkChain.get_builder_from_protocol(
        codes["mace"],
        dataset,
        overrides={
            "mace": {
                "split": {"train": 0.7, "valid": 0.1, "test": 0.2},
                "finetune_flags": {"max_num_epochs": 6, "start_swa": 5, "lr": 0.005},
            }
        },
        foundation=tiny_mace,
        evaluation_code=codes["label"],
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    tuned = results["test_errors"].get_dict()
    foundation = results["foundation_test_errors"].get_dict()
    # Both evaluated by our own single points on the same held-out frames.
    assert tuned["n_frames"] == foundation["n_frames"] == results["splits"]["test"].n_frames
    print(
        f"held-out force RMSE: foundation {foundation['force_rmse_meV_per_A']:.1f}, fine-tuned "
        f"{tuned['force_rmse_meV_per_A']:.1f} meV/A; energy {foundation['energy_rmse_meV_per_atom']:.2f} -> "
        f"{tuned['energy_rmse_meV_per_atom']:.2f} meV/atom"
    )
    assert tuned["force_rmse_meV_per_A"] < 0.7 * foundation["force_rmse_meV_per_A"], (tuned, foundation)

    model = results["model"]
    lineage = training_lineage(model)
    assert lineage["train_frames"] == results["splits"]["train"].n_frames
    assert lineage["dataset_frames"] == dataset.n_frames
    assert lineage["dataset_uuid"] == dataset.uuid
    assert "softened BMH" in lineage["train_source"]
    assert lineage["foundation_uuid"] == tiny_mace.uuid
    # Every labelled frame: the train split is a subset of the labelled dataset made by the label calc.
    split_fn = results["splits"]["train"].creator
    assert split_fn.inputs.dataset.uuid == dataset.uuid
    assert dataset.creator.process_label == "LifdiffLabelCalculation"


def test_deepmd_training_workchain(codes, softened_data):
    from aiida_lifdiff.workflows.finetune import DeepmdTrainWorkChain

    dataset = softened_data.outputs.dataset
    builder = DeepmdTrainWorkChain.get_builder_from_protocol(
        codes["dp"],
        dataset,
        overrides={"deepmd": {"settings": {"numb_steps": 1600}, "split": {"train": 0.7, "valid": 0.1, "test": 0.2}}},
        evaluation_code=codes["label"],
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    errors = results["test_errors"].get_dict()
    test_frames = results["splits"]["test"].get_frames()
    force_std = float(np.std(np.concatenate([f.get_forces().ravel() for f in test_frames]))) * 1000.0
    # A model that learned something: RMSE well below the spread of the forces it predicts.
    assert errors["force_rmse_meV_per_A"] < 0.6 * force_std, (errors, force_std)
    lineage = training_lineage(results["model"])
    assert lineage["train_frames"] == results["splits"]["train"].n_frames
    assert results["model"].kind == "deepmd"


def test_training_refuses_unlabelled_data_before_anything_runs(codes, aiida_profile):
    from aiida_lifdiff.workflows.finetune import DeepmdTrainWorkChain

    frames = DatasetData.from_extxyz(MODELS / "lif-classical-test.extxyz").get_frames()[:5]
    for frame in frames:
        frame.calc = None
    unlabelled = DatasetData(frames, source="positions only")
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(ValueError, match="has no energy/force labels"):
        DeepmdTrainWorkChain.get_builder_from_protocol(codes["dp"], unlabelled)
    builder = DeepmdTrainWorkChain.get_builder()
    builder.deepmd.code = codes["dp"]
    with pytest.raises(ValueError, match="has no energy/force labels"):
        run_get_node(builder, dataset=unlabelled)
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before
    assert not unlabelled.is_stored


def test_iterative_mode_samples_with_the_latest_finetuned_model(codes, tosi_fumi_node, softened_bmh, tiny_mace):
    """Two rounds: classical MD -> label -> fine-tune; MD with that model -> label -> append -> fine-tune."""
    from aiida_lifdiff.study import assign_inputs
    from aiida_lifdiff.workflows.finetune import FineTuneWorkChain

    builder = training_data_builder(codes, tosi_fumi_node, softened_bmh, production_ps=1.0)
    builder.iterations = orm.Int(2)
    builder.md.lifdiff_md.code = codes["runner"]
    finetune = FineTuneWorkChain.get_builder_from_protocol(
        codes["mace"],
        None,
        overrides={
            "mace": {
                "split": {"train": 0.8, "valid": 0.2, "test": 0.0},
                "finetune_flags": {"max_num_epochs": 4, "start_swa": 3, "lr": 0.005},
            }
        },
        foundation=tiny_mace,
    )
    assign_inputs(builder.finetune, finetune._inputs(prune=True))
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message

    first, second = results["iteration_datasets"]["iteration_0"], results["iteration_datasets"]["iteration_1"]
    assert first.n_frames == second.n_frames == 2 * 10 + 5 + 5
    assert results["dataset"].n_frames == first.n_frames + second.n_frames
    finetunes = sorted((c for c in node.called if c.process_label == "FineTuneWorkChain"), key=lambda c: c.ctime)
    assert len(finetunes) == 2
    model_0 = finetunes[0].outputs.model
    # Round 1 sampled with the model fine-tuned in round 0 (the MACE runner), and says so in the data.
    md_round_1 = [
        c for c in node.called if c.process_label == "MdWorkChain" and c.inputs.potential.uuid == model_0.uuid
    ]
    assert md_round_1 and all(c.is_finished_ok for c in md_round_1)
    assert "(mace," in second.source and "iteration 1" in second.source
    assert second.creator.inputs.potential.uuid == softened_bmh.uuid  # labelled by the labeller, not the model
    # The final model was trained on everything, and the graph says so.
    assert results["model"].uuid == finetunes[1].outputs.model.uuid
    lineage = training_lineage(results["model"])
    assert lineage["dataset_frames"] == results["dataset"].n_frames
    assert lineage["foundation_uuid"] == tiny_mace.uuid
