"""DatasetData: extxyz and DeePMD round trips keep every label; splits are seeded, disjoint and tracked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from aiida import orm

from aiida_lifdiff import datasets
from aiida_lifdiff.data.dataset import DatasetData
from aiida_lifdiff.workflows.functions.datasets import merge_datasets, split_dataset, validate_split

MODELS = Path(__file__).parent / "data" / "models"
TEST_FILE = MODELS / "lif-classical-test.extxyz"


def _labels_by_key(frames):
    """Frames keyed by their sorted symbols and rounded positions, so grouped exports can be compared."""
    keyed = {}
    for atoms in frames:
        key = (tuple(atoms.get_chemical_symbols()), tuple(np.round(atoms.positions, 6).ravel()))
        keyed[key] = datasets.frame_labels(atoms)
    return keyed


def _assert_same_labels(first, second):
    a, b = _labels_by_key(first), _labels_by_key(second)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key]["energy"] == pytest.approx(b[key]["energy"], abs=1e-9)
        np.testing.assert_allclose(a[key]["forces"], b[key]["forces"], atol=1e-9)
        np.testing.assert_allclose(a[key]["stress"], b[key]["stress"], atol=1e-9)


def test_extxyz_deepmd_round_trip_preserves_every_label(aiida_profile, tmp_path):
    original = DatasetData.from_extxyz(TEST_FILE).store()
    # The test file mixes 64-, 65- and 217-atom frames: three DeePMD systems.
    assert set(original.base.attributes.get("atoms_per_frame")) == {64, 65, 217}
    for fmt in datasets.DEEPMD_FORMATS:
        systems = original.write_deepmd(tmp_path / fmt.replace("/", "_"), fmt=fmt)
        assert len(systems) == 3
        back = DatasetData.from_deepmd(tmp_path / fmt.replace("/", "_"), fmt=fmt).store()
        assert back.n_frames == original.n_frames
        assert back.base.attributes.get("n_atoms_total") == original.base.attributes.get("n_atoms_total")
        assert back.labels == ["energy", "forces", "stress"]
        assert "imported from" in back.source
        _assert_same_labels(original.get_frames(), back.get_frames())
    # And through extxyz again, byte for byte.
    path = original.write_extxyz(tmp_path / "again.extxyz")
    assert DatasetData.from_extxyz(path).sha256 == original.sha256


def test_dataset_attributes_and_bad_input(aiida_profile, tmp_path):
    node = DatasetData.from_extxyz(TEST_FILE, source="Tosi-Fumi test frames")
    assert node.species == ["F", "Li"]
    assert node.labelled
    assert node.source == "Tosi-Fumi test frames"
    assert sum(node.base.attributes.get("config_types").values()) == node.n_frames
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DatasetData.from_extxyz(tmp_path / "missing.extxyz")
    bad = tmp_path / "bad.extxyz"
    bad.write_text("3\nnot an extxyz header\nLi 0 0\n")
    with pytest.raises(datasets.DatasetError, match="cannot read"):
        DatasetData.from_extxyz(bad)
    with pytest.raises(datasets.DatasetError, match="no DeePMD system"):
        DatasetData.from_deepmd(tmp_path)
    frames = node.get_frames()
    frames[1].calc = None
    with pytest.raises(datasets.DatasetError, match="mixed labelling"):
        DatasetData(frames[:3])


def test_split_is_seeded_disjoint_and_recorded(aiida_profile):
    dataset = DatasetData.from_extxyz(TEST_FILE).store()
    fractions = orm.Dict({"train": 0.6, "valid": 0.2, "test": 0.2})
    first = split_dataset(dataset, fractions, orm.Int(5))
    again = split_dataset(dataset, fractions, orm.Int(5))
    other = split_dataset(dataset, fractions, orm.Int(6))
    indices = {name: first[name].base.attributes.get("parent_indices") for name in ("train", "valid", "test")}
    assert sorted(sum(indices.values(), [])) == list(range(dataset.n_frames))
    assert indices["valid"] == again["valid"].base.attributes.get("parent_indices")
    assert indices["valid"] != other["valid"].base.attributes.get("parent_indices")
    assert first["train"].n_frames == dataset.n_frames - 2 * int(0.2 * dataset.n_frames)
    # The graph shows where each part came from.
    assert first["train"].creator.inputs.dataset.uuid == dataset.uuid
    frames = dataset.get_frames()
    test_frames = first["test"].get_frames()
    for index, frame in zip(indices["test"], test_frames):
        np.testing.assert_allclose(frame.positions, frames[index].positions)
    merged = merge_datasets(a=first["train"], b=first["valid"], c=first["test"])
    assert merged.n_frames == dataset.n_frames
    assert validate_split({"train": 0.9, "test": 0.2}) is not None
    assert validate_split({"train": 0.8, "validation": 0.2}) is not None
    assert validate_split({"train": 0.8, "valid": 0.1, "test": 0.1}) is None
    with pytest.raises(datasets.DatasetError, match="too few"):
        datasets.split_indices(3, [0.8, 0.1, 0.1], 0)


def test_cli_import_export_round_trip(aiida_profile, tmp_path):
    from click.testing import CliRunner

    from aiida_lifdiff.cli.main import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["dataset", "import", str(TEST_FILE), "--source", "shipped test frames"])
    assert result.exit_code == 0, result.output
    assert "DatasetData<" in result.output  # stored now, or by an earlier test of this session
    again = runner.invoke(cli, ["dataset", "import", str(TEST_FILE)])
    assert "already stored" in again.output
    pk = result.output.split("DatasetData<")[1].split(">")[0]
    result = runner.invoke(cli, ["dataset", "export", pk, str(tmp_path / "npy"), "--format", "deepmd/npy"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["dataset", "import", str(tmp_path / "npy"), "--format", "deepmd/npy"])
    assert result.exit_code == 0 and "DatasetData<" in result.output, result.output
    back = orm.load_node(int(result.output.split("DatasetData<")[1].split(">")[0]))
    _assert_same_labels(DatasetData.from_extxyz(TEST_FILE).get_frames(), back.get_frames())
    listing = runner.invoke(cli, ["dataset", "list"])
    assert "lif-classical-test" in listing.output and "energy,forces,stress" in listing.output
    (tmp_path / "empty").mkdir()
    bad = runner.invoke(cli, ["dataset", "import", str(tmp_path / "empty"), "--format", "deepmd/raw"])
    assert bad.exit_code == 1 and "no DeePMD system" in bad.output
    wrong = runner.invoke(cli, ["dataset", "import", str(tmp_path / "npy"), "--format", "deepmd/raw"])
    assert wrong.exit_code == 1 and "cannot read" in wrong.output
