"""Single-point labelling (``lifdiff-label`` / ``lifdiff.label``) and ``EvaluationWorkChain``.

- Classical labels through the CalcJob equal the shipped test labels, which ``scripts/make_tiny_models.py``
  made with the same LAMMPS procedure (now :mod:`aiida_lifdiff.engines.lammps_labels`).
- MACE and DeePMD labels equal the models' own ASE calculators frame by frame.
- The evaluation of the tiny models reproduces the errors ``make_tiny_models.py`` recorded in
  ``tests/data/models/manifest.json``; Tosi-Fumi on its own labels gives zero error.
- Bad inputs are refused before submission; atoms on top of each other give non-finite labels -> 320.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node

from aiida_lifdiff.analysis.errors import label_errors
from aiida_lifdiff.calculations.label import LifdiffLabelCalculation
from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.datasets import frame_labels, read_extxyz
from aiida_lifdiff.runner import label as runner_label
from aiida_lifdiff.workflows.evaluation import EvaluationWorkChain

pytest.importorskip("mace", reason="labelling tests need the `ml` extra (mace-torch)")

import torch  # noqa: E402
from helpers_mace import one_torch_thread  # noqa: E402, F401 (autouse fixture)

MODELS = Path(__file__).parent / "data" / "models"
TEST_FILE = MODELS / "lif-classical-test.extxyz"
MACE_FILE = MODELS / "tiny-mace.model"
DEEPMD_FILE = MODELS / "tiny-deepmd.pb"

pytestmark = pytest.mark.lammps


@pytest.fixture(scope="module")
def label_code(aiida_profile):
    from aiida_lifdiff.codes import ensure_label_code, ensure_localhost_computer

    return ensure_label_code(ensure_localhost_computer())


@pytest.fixture(scope="module")
def reference_frames():
    return read_extxyz(TEST_FILE)


@pytest.fixture(scope="module")
def test_set(aiida_profile):
    return DatasetData.from_extxyz(TEST_FILE, source="tiny-model test set (Tosi-Fumi labels)").store()


@pytest.fixture(scope="module")
def few_frames(aiida_profile, reference_frames):
    """One frame of every kind and size: 65-atom md/rattled/strained, 64-atom perfect, 217-atom md."""
    chosen, seen = [], set()
    for index, atoms in enumerate(reference_frames):
        key = (atoms.info["config_type"], len(atoms))
        if key not in seen:
            seen.add(key)
            chosen.append(index)
    node = DatasetData([reference_frames[i] for i in chosen], source="one test frame per kind").store()
    node.label = "few frames"
    return chosen, node


@pytest.fixture(scope="module")
def tosi_fumi_lif(aiida_profile):
    return PotentialData.get_or_create(PotentialData.tosi_fumi_lif())


@pytest.fixture(scope="module")
def tiny_mace(aiida_profile):
    return PotentialData.get_or_create(PotentialData.from_model_file("mace", MACE_FILE, label="tiny MACE"))


@pytest.fixture(scope="module")
def tiny_deepmd(aiida_profile):
    pytest.importorskip("deepmd", reason="DeePMD labelling needs deepmd-kit")
    return PotentialData.get_or_create(PotentialData.from_model_file("deepmd", DEEPMD_FILE, label="tiny DeePMD"))


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((MODELS / "manifest.json").read_text())


def run_label(code, potential, frames, **parameters):
    builder = LifdiffLabelCalculation.get_builder()
    builder.code = code
    builder.potential = potential
    builder.frames = frames
    if parameters:
        builder.parameters = orm.Dict(parameters)
    builder.metadata.options.max_wallclock_seconds = 600
    return run_get_node(builder)


def _labels(frames) -> list[dict]:
    return [frame_labels(atoms) for atoms in frames]


# ------------------------------------------------------------------------------------- classical


def test_classical_labels_reproduce_the_shipped_labels(label_code, tosi_fumi_lif, test_set, reference_frames):
    results, node = run_label(label_code, tosi_fumi_lif, test_set)
    assert node.is_finished_ok, node.exit_message
    labelled = results["dataset"].get_frames()
    assert len(labelled) == len(reference_frames) == 68

    summary = results["results"].get_dict()
    assert summary["exit_code"] == 0
    assert summary["model"]["kind"] == "classical"
    assert summary["model"]["kspace_accuracy"] == 1e-7 and summary["model"]["cutoff_A"] == 8.0
    assert summary["versions"]["lammps"]
    assert summary["stress"] is True

    # Positions are rounded to 1e-8 A in the extxyz; MD and perfect frames came from LAMMPS dumps already at
    # that precision and are reproduced to the last printed digit, rattled/strained ones to the rounding.
    exact = [i for i, a in enumerate(reference_frames) if a.info["config_type"] in ("md", "perfect")]
    assert len(exact) > 40
    for index, (reference, mine) in enumerate(zip(_labels(reference_frames), _labels(labelled))):
        atol_e, atol_f = (1e-9, 1e-9) if index in exact else (2e-6, 1e-6)
        assert mine["energy"] == pytest.approx(reference["energy"], abs=atol_e), index
        np.testing.assert_allclose(mine["forces"], reference["forces"], rtol=0, atol=atol_f, err_msg=str(index))
        np.testing.assert_allclose(mine["stress"], reference["stress"], rtol=0, atol=1e-8, err_msg=str(index))
    for reference, mine in zip(reference_frames, labelled):
        np.testing.assert_array_equal(mine.positions, reference.positions)
        assert mine.info["config_type"] == reference.info["config_type"]
        assert mine.get_chemical_symbols() == reference.get_chemical_symbols()

    dataset = results["dataset"]
    assert dataset.source == (
        f"tiny-model test set (Tosi-Fumi labels); labelled by Tosi-Fumi LiF (classical, sha256 "
        f"{tosi_fumi_lif.sha256[:12]})"
    )
    assert dataset.base.attributes.get("config_types") == test_set.base.attributes.get("config_types")


# ------------------------------------------------------------------------------------------ MACE


def test_mace_labels_equal_mace_calculator(label_code, tiny_mace, few_frames, reference_frames):
    from aiida_lifdiff.potentials.mace import mace_calculator

    indices, frames = few_frames
    # batch_size 2: three model calls, one with a 64- and a 217-atom frame together, the last one partial.
    results, node = run_label(label_code, tiny_mace, frames, dtype="float64", batch_size=2)
    assert node.is_finished_ok, node.exit_message
    assert results["results"]["model"]["sha256"] == tiny_mace.sha256
    labelled = results["dataset"].get_frames()
    calculator = mace_calculator(MACE_FILE, device="cpu", dtype="float64")
    for index, mine in zip(indices, labelled):
        atoms = reference_frames[index].copy()
        atoms.calc = calculator
        assert mine.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(mine.get_forces(), atoms.get_forces(), rtol=0, atol=1e-8)
        np.testing.assert_allclose(mine.get_stress(), atoms.get_stress(), rtol=0, atol=1e-9)
        # Not the reference labels: the model's own (a tiny model is off by tens of meV/A).
        assert not np.allclose(mine.get_forces(), reference_frames[index].get_forces(), atol=1e-3)


# ---------------------------------------------------------------------------------------- DeePMD


def test_deepmd_labels_equal_deepmd_calculator(label_code, tiny_deepmd, few_frames, reference_frames):
    from aiida_lifdiff.potentials.deepmd import deepmd_calculator

    indices, frames = few_frames
    results, node = run_label(label_code, tiny_deepmd, frames)
    assert node.is_finished_ok, node.exit_message
    assert results["results"]["model"]["factory"] == "aiida_lifdiff.potentials.deepmd:deepmd_calculator"
    labelled = results["dataset"].get_frames()
    calculator = deepmd_calculator(DEEPMD_FILE)
    for index, mine in zip(indices, labelled):
        atoms = reference_frames[index].copy()
        atoms.calc = calculator
        assert mine.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(mine.get_forces(), atoms.get_forces(), rtol=0, atol=1e-8)
        np.testing.assert_allclose(mine.get_stress(), atoms.get_stress(), rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------ evaluation


def run_evaluation(code, potential, dataset, **parameters):
    builder = EvaluationWorkChain.get_builder()
    builder.potential = potential
    builder.dataset = dataset
    builder.label.code = code
    if parameters:
        builder.label.parameters = orm.Dict(parameters)
    return run_get_node(builder)


def _pooled(groups: list[dict]) -> tuple[float, float]:
    """Energy and force RMSE over several manifest groups (frames and force components as weights)."""
    sizes = {"test 65 atoms": 65, "test 64 atoms": 64, "test 217 atoms": 217}
    frames = sum(g["n_frames"] for g in groups.values())
    components = sum(3 * sizes[name] * g["n_frames"] for name, g in groups.items())
    energy = np.sqrt(sum(g["n_frames"] * g["energy_rmse_meV_per_atom"] ** 2 for g in groups.values()) / frames)
    force = np.sqrt(
        sum(3 * sizes[name] * g["n_frames"] * g["force_rmse_meV_per_A"] ** 2 for name, g in groups.items()) / components
    )
    return float(energy), float(force)


@pytest.mark.parametrize(
    "model, parameters",
    [("mace", {"dtype": "float32", "batch_size": 8}), ("deepmd", {})],
)
def test_evaluation_reproduces_recorded_model_errors(
    request, label_code, test_set, reference_frames, manifest, model, parameters
):
    # The manifest's errors came from MACECalculator in float32 and DeepPot.eval, per test group.
    potential = request.getfixturevalue(f"tiny_{model}")
    results, node = run_evaluation(label_code, potential, test_set, **parameters)
    assert node.is_finished_ok, node.exit_message
    recorded = manifest["report"][f"{model}_errors"]
    predictions = results["predictions"].get_frames()

    for size in (65, 64, 217):
        chosen = [i for i, a in enumerate(reference_frames) if len(a) == size]
        mine = label_errors([reference_frames[i] for i in chosen], [predictions[i] for i in chosen])
        theirs = recorded[f"test {size} atoms"]
        assert mine["n_frames"] == theirs["n_frames"]
        # The manifest rounds to 3 decimals (meV/atom), 2 (force RMSE) and 1 (max force error).
        for key, tolerance in (
            ("energy_rmse_meV_per_atom", 0.002),
            ("energy_mean_error_meV_per_atom", 0.002),
            ("energy_rmse_offset_removed_meV_per_atom", 0.002),
            ("force_rmse_meV_per_A", 0.02),
            ("force_max_abs_error_meV_per_A", 0.1),
            ("force_rms_label_meV_per_A", 0.1),
        ):
            assert mine[key] == pytest.approx(theirs[key], abs=tolerance), (size, key)

    errors = results["errors"].get_dict()
    energy, force = _pooled({name: recorded[name] for name in ("test 65 atoms", "test 64 atoms", "test 217 atoms")})
    assert errors["n_frames"] == 68
    assert errors["energy_rmse_meV_per_atom"] == pytest.approx(energy, abs=0.003)
    assert errors["force_rmse_meV_per_A"] == pytest.approx(force, abs=0.02)
    assert errors["stress"] is True and errors["stress_rmse_meV_per_A3"] > 0
    assert errors["reference_source"] == test_set.source

    # Provenance: the errors come from compare_labels of the reference and the CalcJob's predictions.
    compare = results["errors"].base.links.get_incoming(link_type=LinkType.CREATE).one().node
    assert compare.process_label == "compare_labels"
    inputs = {link.link_label: link.node.uuid for link in compare.base.links.get_incoming().all()}
    assert inputs["reference"] == test_set.uuid
    assert inputs["predicted"] == results["predictions"].uuid
    calc = [n for n in node.called if n.process_label == "LifdiffLabelCalculation"][0]
    assert calc.outputs.dataset.uuid == results["predictions"].uuid
    with results["parity_plot"].open(mode="rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_evaluation_of_tosi_fumi_on_its_own_labels_is_zero(label_code, tosi_fumi_lif, test_set):
    results, node = run_evaluation(label_code, tosi_fumi_lif, test_set)
    assert node.is_finished_ok, node.exit_message
    errors = results["errors"].get_dict()
    assert errors["n_frames"] == 68
    # Residuals of 1e-8 A position rounding in the extxyz (see the classical test): micro-meV.
    assert errors["energy_rmse_meV_per_atom"] < 1e-4
    assert errors["force_rmse_meV_per_A"] < 1e-3
    assert errors["force_max_abs_error_meV_per_A"] < 2e-3
    assert errors["stress_rmse_meV_per_A3"] < 1e-5


# ------------------------------------------------------------------------------------ bad inputs


def _process_count() -> int:
    return orm.QueryBuilder().append(orm.ProcessNode).count()


def test_potential_not_covering_the_dataset_is_refused_before_submission(label_code, test_set):
    nacl = PotentialData.from_classical(
        {
            "name": "toy NaCl",
            "species": ["Na", "Cl"],
            "charges": {"Na": 1.0, "Cl": -1.0},
            "pairs": {
                pair: {"A": 0.2, "rho": 0.3, "sigma": 2.0, "C": 1.0, "D": -1.0} for pair in ("Na-Na", "Na-Cl", "Cl-Cl")
            },
        }
    )
    before = _process_count()
    with pytest.raises(ValueError, match=r"potential 'toy NaCl' \(classical\) covers \['Cl', 'Na'\].*\['F', 'Li'\]"):
        run_label(label_code, nacl, test_set)
    with pytest.raises(ValueError, match="covers"):
        run_evaluation(label_code, nacl, test_set)
    assert _process_count() == before
    assert not nacl.is_stored


def test_dataset_with_an_extra_element_is_refused_before_submission(label_code, tosi_fumi_lif, reference_frames):
    frame = reference_frames[0].copy()
    frame.symbols[-1] = "Na"
    dataset = DatasetData([frame], source="sodium-doped")
    before = _process_count()
    with pytest.raises(ValueError, match=r"covers \['F', 'Li'\].*contains \['F', 'Li', 'Na'\].*\['Na'\]"):
        run_label(label_code, tosi_fumi_lif, dataset)
    assert _process_count() == before
    assert not dataset.is_stored


def test_unlabelled_reference_and_bad_parameters_are_refused(label_code, tosi_fumi_lif, reference_frames):
    bare = reference_frames[0].copy()
    bare.calc = None
    with pytest.raises(ValueError, match="the reference of an evaluation needs energy and forces"):
        run_evaluation(label_code, tosi_fumi_lif, DatasetData([bare]))
    with pytest.raises(ValueError, match="unknown label parameters"):
        run_label(label_code, tosi_fumi_lif, DatasetData([bare]), timestep_fs=1.0)


def test_atoms_on_top_of_each_other_give_non_finite_labels(label_code, tosi_fumi_lif, reference_frames):
    good = reference_frames[0].copy()
    crushed = reference_frames[1].copy()
    crushed.positions[1] = crushed.positions[0]  # Li and F on the same spot: Coulomb and Born terms diverge
    frames = DatasetData([good, crushed, good], source="one crushed frame")
    results, node = run_label(label_code, tosi_fumi_lif, frames)
    assert node.exit_status == 320, node.exit_message
    assert "1 of 3 frame(s) could not be labelled: 1 (non-finite" in node.exit_message
    assert "dataset" not in results
    summary = results["results"].get_dict()
    assert [f["index"] for f in summary["failed_frames"]] == [1]
    assert summary["output"] is None
    assert "labelled.extxyz" not in node.outputs.retrieved.base.repository.list_object_names()


# ------------------------------------------------------------------------- the program directly


def _write_input(folder: Path, **data) -> Path:
    path = folder / "input.json"
    path.write_text(json.dumps(data))
    return path


def test_runner_exit_codes_for_bad_input(tmp_path, reference_frames):
    from aiida_lifdiff.datasets import write_extxyz

    sodium = reference_frames[0].copy()
    sodium.symbols[3] = "Na"
    write_extxyz([reference_frames[0], sodium], tmp_path / "frames.extxyz")
    cases = {
        "unknown kind": ({"kind": "lammps"}, "frames.extxyz", "'model.kind' must be one of"),
        "missing frames": ({"kind": "mace", "path": str(MACE_FILE)}, "nothing.extxyz", "does not exist"),
        "missing model": ({"kind": "mace", "path": "nothing.model"}, "frames.extxyz", "nothing.model"),
        "species (mace)": ({"kind": "mace", "path": str(MACE_FILE)}, "frames.extxyz", r"\['Na'\].*first in frame 1"),
        "species (ase)": (
            {"kind": "ase", "factory": "ase.calculators.emt:EMT", "species": ["F", "Li"]},
            "frames.extxyz",
            r"frames contain \['Na'\].*covers only \['F', 'Li'\]",
        ),
    }
    for name, (model, frames, message) in cases.items():
        folder = tmp_path / name.replace(" ", "_").replace("(", "").replace(")", "")
        folder.mkdir()
        code = runner_label.main([str(_write_input(tmp_path, model=model, frames=frames)), "--output-dir", str(folder)])
        summary = json.loads((folder / "summary.json").read_text())
        assert code == summary["exit_code"] == 2, name
        assert re.search(message, summary["message"]), (name, summary["message"])
        assert not (folder / "labelled.extxyz").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_runner_refuses_cuda_without_cuda(tmp_path, reference_frames):
    from aiida_lifdiff.datasets import write_extxyz

    write_extxyz(reference_frames[:1], tmp_path / "frames.extxyz")
    path = _write_input(tmp_path, model={"kind": "mace", "path": str(MACE_FILE)}, frames="frames.extxyz", device="cuda")
    assert runner_label.main([str(path), "--output-dir", str(tmp_path)]) == 3
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["exit_code"] == 3 and "CUDA" in summary["message"]
