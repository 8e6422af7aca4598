"""Universal potentials whose weights ship in their wheels: CHGNet (main venv) and SevenNet-0 (.venv-sevenn).

- ``PotentialData.from_universal`` stores the installed weight file, with package, version, model, environment
  and sha256 (equal to the installed file's); unknown or not-installed models are refused before any node.
- CHGNet labels through ``LifdiffLabelCalculation`` equal CHGNet's own calculator; a short ``lifdiff-md`` run.
- SevenNet-0 labels through the sevenn-environment code (a real run in .venv-sevenn) equal SevenNet run directly
  in that venv; a SevenNet potential with a main-environment code is refused before submission.
- Studies: CHGNet as a zero-shot candidate, and CHGNet as the labeller of the generated training data.

CPU cost (2 shared cores, 1 thread): CHGNet ~0.3 s and SevenNet-0 ~0.4 s per call on the 9-atom cell, ~2-3 s on
65 atoms, so everything here runs on the 9-atom cell.
"""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.potentials import file_sha256
from aiida_lifdiff.potentials.universal import (
    UNIVERSAL_FACTORY,
    UniversalModelUnavailable,
    default_environment_python,
    get_universal_model,
)
from aiida_lifdiff.structures import build_lif_supercell

pytest.importorskip("chgnet", reason="universal potential tests need chgnet (the `ml` extra)")

import torch  # noqa: E402

DATA = Path(__file__).parent / "data"
SEVENN_PYTHON = default_environment_python("sevenn")
needs_sevenn = pytest.mark.skipif(
    not Path(SEVENN_PYTHON).is_file(), reason=f"no SevenNet environment at {SEVENN_PYTHON} (make venv-sevenn)"
)


@pytest.fixture(autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _node_count() -> int:
    return orm.QueryBuilder().append(orm.Node).count()


def _process_count() -> int:
    return orm.QueryBuilder().append(orm.ProcessNode).count()


@pytest.fixture(scope="module")
def computer(aiida_profile):
    from aiida_lifdiff.codes import ensure_localhost_computer

    return ensure_localhost_computer()


@pytest.fixture(scope="module")
def label_code(computer):
    from aiida_lifdiff.codes import ensure_label_code

    return ensure_label_code(computer)


@pytest.fixture(scope="module")
def sevenn_codes(computer):
    from aiida_lifdiff.codes import ensure_environment_codes

    codes, _ = ensure_environment_codes(computer, "sevenn")
    return {code.label: code for code in codes}


@pytest.fixture(scope="module")
def chgnet(aiida_profile):
    return PotentialData.get_or_create(PotentialData.from_universal("chgnet"))


@pytest.fixture(scope="module")
def sevennet(aiida_profile):
    return PotentialData.get_or_create(PotentialData.from_universal("sevennet-0"))


@pytest.fixture(scope="module")
def frames(aiida_profile):
    """Three rattled 9-atom cells (8 LiF + interstitial Li), one of them strained."""
    rng = np.random.default_rng(7)
    atoms_list = []
    for index in range(3):
        atoms = build_lif_supercell(repeat=1)
        if index == 2:
            atoms.set_cell(atoms.cell * 1.02, scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        atoms_list.append(atoms)
    node = DatasetData(atoms_list, source="rattled 9-atom LiF + Li_i").store()
    return atoms_list, node


def run_label(code, potential, frames_node):
    from aiida_lifdiff.calculations.label import LifdiffLabelCalculation

    builder = LifdiffLabelCalculation.get_builder()
    builder.code = code
    builder.potential = potential
    builder.frames = frames_node
    builder.metadata.options.max_wallclock_seconds = 600
    return run_get_node(builder)


# ---------------------------------------------------------------------------------------- registry, provenance


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("mace-mpa-0", r"MACE foundation model.*downloaded.*\{kind: mace, path: FILE\}"),
        ("7net-mf-ompa", r"do not ship inside the sevenn wheel.*pre-place it at"),
        ("chgnet-0.1.0", r"not a CHGNet model shipped in chgnet 0\.4\.2"),
        ("nequip-whatever", r"would have to be downloaded.*Built-in universal models \(offline\): chgnet"),
    ],
)
def test_models_whose_weights_are_not_installed_are_refused_before_anything_is_stored(aiida_profile, name, message):
    before = _node_count()
    with pytest.raises(UniversalModelUnavailable, match=message):
        PotentialData.from_universal(name)
    assert _node_count() == before


def test_registry_paths_and_aliases():
    assert get_universal_model("CHGNet-0.3.0").name == "chgnet"
    assert get_universal_model("7net-0").name == "sevennet-0"
    assert get_universal_model("chgnet").environment == "main"
    assert get_universal_model("sevennet-0").environment == "sevenn"


def test_from_universal_records_the_installed_chgnet_weights(chgnet):
    import chgnet as chgnet_package

    installed = Path(chgnet_package.__file__).parent / "pretrained" / "0.3.0" / "chgnet_0.3.0_e29f68s314m37.pth.tar"
    info = chgnet.model_info
    assert chgnet.kind == "universal"
    assert info["package"] == "chgnet" and info["package_version"] == metadata.version("chgnet") == "0.4.2"
    assert info["model"] == "chgnet" and info["package_model"] == "0.3.0" and info["environment"] == "main"
    assert Path(info["source_path"]) == installed.resolve()
    assert info["weights_sha256"] == chgnet.sha256 == file_sha256(installed)
    assert {"Li", "F"} <= set(chgnet.species) and len(chgnet.species) == 94
    # The node holds the file itself: a job uses exactly these bytes.
    with chgnet.open(mode="rb") as handle:
        assert handle.read() == installed.read_bytes()
    # Importing it again reuses the node.
    assert PotentialData.get_or_create(PotentialData.from_universal("chgnet-0.3.0")).pk == chgnet.pk


@needs_sevenn
def test_from_universal_finds_sevennet_through_its_environment(sevennet):
    info = sevennet.model_info
    assert info["package"] == "sevenn" and info["package_version"] == "0.13.0" and info["model"] == "sevennet-0"
    assert info["environment"] == "sevenn"
    assert info["source_path"].startswith(str(Path(SEVENN_PYTHON).parents[1]))
    assert info["source_path"].endswith("SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth")
    assert info["weights_sha256"] == sevennet.sha256 == file_sha256(info["source_path"])
    assert {"Li", "F"} <= set(sevennet.species) and len(sevennet.species) == 89


def test_the_runner_model_entry_is_the_ase_factory_on_the_stored_file(chgnet, tmp_path):
    from aiida.common.folders import Folder

    from aiida_lifdiff.calculations.model_spec import runner_model

    model, copies = runner_model(chgnet, Folder(str(tmp_path)))
    assert model["kind"] == "ase" and model["factory"] == UNIVERSAL_FACTORY
    assert model["kwargs"] == {"model": "chgnet", "path": chgnet.filename}
    assert copies == [(chgnet.uuid, chgnet.filename, chgnet.filename)]


# ---------------------------------------------------------------------------------------- CHGNet jobs


def test_chgnet_labels_equal_chgnet_calculator(label_code, chgnet, frames):
    from chgnet.model.dynamics import CHGNetCalculator

    atoms_list, node = frames
    results, calculation = run_label(label_code, chgnet, node)
    assert calculation.is_finished_ok, calculation.exit_message
    assert results["results"]["model"]["sha256"] == chgnet.sha256
    # CHGNet's own calculator, by its own (offline: shipped) default model 0.3.0.
    reference = CHGNetCalculator(use_device="cpu")
    for mine, atoms in zip(results["dataset"].get_frames(), atoms_list):
        atoms = atoms.copy()
        atoms.calc = reference
        assert mine.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-5)
        np.testing.assert_allclose(mine.get_forces(), atoms.get_forces(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(mine.get_stress(), atoms.get_stress(), rtol=0, atol=1e-6)


def _short_md(potential, code):
    from aiida_lifdiff.workflows.functions.structures import create_lif_supercell
    from aiida_lifdiff.workflows.md import MdWorkChain

    builder = MdWorkChain.get_builder()
    builder.structure = create_lif_supercell(orm.Int(1), orm.Float(4.03), orm.Str("tetrahedral"))
    builder.potential = potential
    builder.parameters = orm.Dict(
        {
            "timestep_fs": 1.0,
            "n_steps": 6,
            "dump_stride": 3,
            "thermo_stride": 3,
            "members": [{"name": "m0", "temperature_K": 600.0, "seed": 3}],
        }
    )
    builder.lifdiff_md.code = code
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    positions = results["trajectories"]["m0"].get_array("positions")
    assert positions.shape == (3, 9, 3) and np.isfinite(positions).all()
    model = results["results"].get_dict()["model"]
    assert model["factory"] == UNIVERSAL_FACTORY and model["sha256"] == potential.sha256


def test_chgnet_md_through_lifdiff_md(computer, chgnet):
    from aiida_lifdiff.codes import ensure_runner_code

    _short_md(chgnet, ensure_runner_code(computer))


@needs_sevenn
def test_sevennet_md_through_lifdiff_md_of_its_environment(sevenn_codes, sevennet):
    _short_md(sevennet, sevenn_codes["lifdiff-md-sevenn"])


# ---------------------------------------------------------------------------------------- SevenNet jobs

_SEVENN_DIRECT = """
import json, sys
import ase.io
from sevenn.calculator import SevenNetCalculator
calc = SevenNetCalculator(model="7net-0", device="cpu")
out = []
for atoms in ase.io.read(sys.argv[1], index=":"):
    atoms.calc = calc
    out.append({"energy": atoms.get_potential_energy(), "forces": atoms.get_forces().tolist()})
print(json.dumps(out))
"""


@needs_sevenn
def test_sevennet_labels_through_its_environment_equal_sevennet_run_there(sevenn_codes, sevennet, frames, tmp_path):
    import ase.io

    atoms_list, node = frames
    code = sevenn_codes["lifdiff-label-sevenn"]
    assert code.base.extras.get("lifdiff_environment") == "sevenn"
    assert str(code.filepath_executable).startswith(str(Path(SEVENN_PYTHON).parents[1]))
    results, calculation = run_label(code, sevennet, node)
    assert calculation.is_finished_ok, calculation.exit_message
    assert results["results"]["model"]["sha256"] == sevennet.sha256

    # SevenNet by its own name resolution (the shipped file), in its venv, without this plugin.
    path = tmp_path / "frames.extxyz"
    ase.io.write(path, atoms_list, format="extxyz")
    direct = subprocess.run(
        [SEVENN_PYTHON, "-c", _SEVENN_DIRECT, str(path)], capture_output=True, text=True, check=True, timeout=600
    )
    expected = json.loads(direct.stdout.strip().splitlines()[-1])
    for mine, reference in zip(results["dataset"].get_frames(), expected):
        assert mine.get_potential_energy() == pytest.approx(reference["energy"], abs=1e-5)
        np.testing.assert_allclose(mine.get_forces(), reference["forces"], rtol=0, atol=1e-5)


@needs_sevenn
def test_sevennet_with_a_main_environment_code_is_refused_before_submission(computer, label_code, sevennet, frames):
    from aiida_lifdiff.calculations.md import LifdiffMdCalculation
    from aiida_lifdiff.codes import ensure_runner_code
    from aiida_lifdiff.workflows.functions.structures import create_lif_supercell
    from aiida_lifdiff.workflows.md import MdWorkChain

    structure = create_lif_supercell(orm.Int(1), orm.Float(4.03), orm.Str("tetrahedral"))
    runner = ensure_runner_code(computer)
    parameters = orm.Dict(
        {
            "timestep_fs": 1.0,
            "n_steps": 4,
            "dump_stride": 2,
            "thermo_stride": 2,
            "members": [{"name": "m0", "temperature_K": 600.0, "seed": 3}],
        }
    )
    before = _process_count()
    with pytest.raises(ValueError, match=r"needs the 'sevenn' environment.*--environment sevenn"):
        run_label(label_code, sevennet, frames[1])
    builder = LifdiffMdCalculation.get_builder()
    builder.code, builder.structure, builder.potential, builder.parameters = runner, structure, sevennet, parameters
    with pytest.raises(ValueError, match=r"needs the 'sevenn' environment"):
        run_get_node(builder)
    builder = MdWorkChain.get_builder()
    builder.structure, builder.potential, builder.parameters = structure, sevennet, parameters
    builder.lifdiff_md.code = runner
    with pytest.raises(ValueError, match=r"needs the 'sevenn' environment"):
        run_get_node(builder)
    assert _process_count() == before


@needs_sevenn
def test_setup_localhost_environment_sevenn_is_idempotent(aiida_profile, sevenn_codes):
    from click.testing import CliRunner

    from aiida_lifdiff.cli.main import cli

    first = CliRunner().invoke(cli, ["setup", "localhost", "--environment", "sevenn", "--no-caching"])
    assert first.exit_code == 0, first.output
    assert "lifdiff-md-sevenn@localhost" in first.output and "lifdiff-label-sevenn@localhost" in first.output
    again = CliRunner().invoke(cli, ["setup", "localhost", "--environment", "sevenn", "--no-caching"])
    assert again.exit_code == 0, again.output
    labels = [c.label for c in orm.QueryBuilder().append(orm.InstalledCode).all(flat=True)]
    assert labels.count("lifdiff-md-sevenn") == 1
    missing = CliRunner().invoke(
        cli, ["setup", "localhost", "--environment", "sevenn", "--environment-venv", "/nowhere", "--no-caching"]
    )
    assert missing.exit_code != 0 and "make venv-sevenn" in missing.output


# ---------------------------------------------------------------------------------------- studies


def test_universal_potentials_in_study_files(tmp_path):
    from aiida_lifdiff.study import StudyError, load_study

    study = load_study(DATA / "universal_zero_shot.yaml")
    assert study.potentials["chgnet"] == {"kind": "universal", "model": "chgnet"}
    one = tmp_path / "one.yaml"
    one.write_text("potential: {kind: universal, model: 7net-0}\n")
    assert load_study(one).code == "lifdiff-md-sevenn@localhost"
    for text, message in (
        ("potential: {kind: universal}\n", "named by 'model' alone"),
        ("potential: {kind: universal, model: chgnet, path: x.pt}\n", r"not \['path'\]"),
        ("potential: {kind: universal, model: mace-mpa-0}\n", "MACE foundation model"),
    ):
        one.write_text(text)
        with pytest.raises(StudyError, match=message):
            load_study(one)


def _run_study(name: str):
    from aiida_lifdiff.study import build_builder, load_study

    study = load_study(DATA / name)
    results, node = run_get_node(build_builder(study))
    # 452 (no Ea for some potential) is an honest outcome of runs this short; anything else is a failure.
    assert node.exit_status in (0, 452), node.exit_message
    return results, node


@pytest.fixture(scope="module")
def study_codes(computer):
    from aiida_lifdiff import codes

    for ensure in (codes.ensure_lammps_code, codes.ensure_runner_code, codes.ensure_label_code):
        ensure(computer)


def test_chgnet_as_zero_shot_candidate_study(study_codes):
    results, node = _run_study("universal_zero_shot.yaml")
    rows = results["comparison"].get_dict()["rows"]
    assert set(rows) == {"tosi_fumi", "chgnet"} and rows["chgnet"]["kind"] == "universal"
    diffusion = [
        c for c in node.called if c.process_label == "DiffusionWorkChain" and c.inputs.potential.kind == "universal"
    ]
    assert len(diffusion) == 1
    md = [c for c in diffusion[0].called_descendants if c.process_label == "LifdiffMdCalculation"]
    assert md and all(c.inputs.code.label == "lifdiff-md" for c in md)


def test_chgnet_as_labeller_study(study_codes):
    results, node = _run_study("universal_labeller.yaml")
    dataset = results["generated_dataset"]
    labels = [c for c in node.called_descendants if c.process_label == "LifdiffLabelCalculation"]
    assert dataset.n_frames > 4
    assert any(c.inputs.potential.kind == "universal" for c in labels)
    rows = results["comparison"].get_dict()["rows"]
    # CHGNet labelled the evaluation frames itself: its own errors there are zero (to the labels' rounding).
    assert rows["chgnet"]["eval_force_rmse_meV_per_A"] < 1e-2
    assert rows["tosi_fumi"]["eval_force_rmse_meV_per_A"] > 1.0


@needs_sevenn
def test_a_sevennet_study_picks_the_codes_of_its_environment(study_codes, sevenn_codes, computer, tmp_path):
    from aiida_lifdiff.codes import ensure_runner_code
    from aiida_lifdiff.study import build_builder, builder_problem, load_study

    path = tmp_path / "sevennet.yaml"
    path.write_text(
        "structure: {repeat: 1, relax_lattice: false}\n"
        "reference: ref\n"
        "potentials:\n  ref: {kind: classical}\n  seven: {kind: universal, model: 7net-0}\n"
        "training: {sampler: ref, labeller: seven}\n"
        "evaluation: {data: generated, frames: 4}\n"
    )
    builder = build_builder(load_study(path))
    assert builder.environment_codes["sevenn_runner"].label == "lifdiff-md-sevenn"
    assert builder.environment_codes["sevenn_label"].label == "lifdiff-label-sevenn"
    assert builder.training_data.label.code.label == "lifdiff-label-sevenn"
    assert builder.codes.label.label == "lifdiff-label"  # the classical reference's evaluation
    assert builder_problem(builder) is None
    builder.environment_codes["sevenn_runner"] = ensure_runner_code(computer)
    assert "needs the 'sevenn' environment" in builder_problem(builder)
