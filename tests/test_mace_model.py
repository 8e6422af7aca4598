"""MACE model resolution/loading and the batched MACE evaluator (no AiiDA, no network)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from helpers_mace import build_random_mace, one_torch_thread  # noqa: F401 (autouse fixture)

from aiida_lifdiff.potentials import mace as mace_potential
from aiida_lifdiff.potentials.mace import (
    MaceModelUnavailable,
    foundation_cache_path,
    load_mace_model,
    mace_calculator,
    model_info,
    resolve_mace_model,
)
from aiida_lifdiff.runner.models import MaceModel, evaluate_structures
from aiida_lifdiff.structures import build_lif_supercell


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return build_random_mace(tmp_path_factory.mktemp("mace") / "tiny.model", "tiny", seed=0)


@pytest.fixture
def fake_cache(tmp_path, monkeypatch):
    """An empty mace-torch cache, and no MPA-0 copy inside the mace package."""
    from mace.calculators import foundations_models

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(foundations_models, "local_model_path", str(tmp_path / "not-packaged.model"))
    return tmp_path / "xdg" / "mace"


def test_foundation_names_come_from_mace_torch():
    from mace.calculators.foundations_models import mace_mp_urls

    names = mace_potential.FOUNDATION_MODELS
    assert {"small", "medium", "large", "medium-mpa-0"} <= set(names)
    assert names == mace_mp_urls


def test_foundation_model_missing_then_cached(fake_cache, monkeypatch):
    from mace.calculators import foundations_models

    def no_network(*args, **kwargs):
        raise AssertionError("resolve_mace_model must not download unless allowed")

    monkeypatch.setattr(foundations_models, "download_mace_mp_checkpoint", no_network)
    expected = fake_cache / "macempa0mediummodel"
    assert foundation_cache_path("medium-mpa-0") == expected
    with pytest.raises(MaceModelUnavailable) as info:
        resolve_mace_model("medium-mpa-0")
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(expected) in message
    assert foundations_models.mace_mp_urls["medium-mpa-0"] in message
    assert "local model" in message

    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"weights")
    assert resolve_mace_model("medium-mpa-0") == expected
    # mace-torch keeps underscores when it names the cache file.
    assert foundation_cache_path("small").name == "20231210mace128L0_energy_epoch249model"


def test_download_only_when_allowed(fake_cache, monkeypatch):
    from mace.calculators import foundations_models

    calls = []

    def fake_download(name):
        calls.append(name)
        path = foundation_cache_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"downloaded")
        return str(path)

    monkeypatch.setattr(foundations_models, "download_mace_mp_checkpoint", fake_download)
    assert resolve_mace_model("small", allow_download=True) == foundation_cache_path("small")
    assert calls == ["small"]


def test_local_path_and_unknown_name(tiny_model, tmp_path):
    assert resolve_mace_model(tiny_model) == tiny_model
    assert resolve_mace_model(str(tiny_model)) == tiny_model
    with pytest.raises(MaceModelUnavailable, match="not a file and not a foundation model"):
        resolve_mace_model(tmp_path / "missing.model")


def test_model_info(tiny_model):
    info = model_info(tiny_model)
    assert info["species"] == ["Li", "F"]
    assert info["atomic_numbers"] == [3, 9]
    assert info["r_max"] == pytest.approx(4.0)
    assert info["dtype"] == "float64"
    assert info["num_interactions"] == 2
    assert info["channels"] == 16
    assert info["hidden_irreps"] == "16x0e"
    assert info["max_L"] == 0
    assert info["num_parameters"] > 1000
    assert info["sha256"] == hashlib.sha256(tiny_model.read_bytes()).hexdigest()


def test_load_dtype_and_cuda_refusal(tiny_model):
    model = load_mace_model(tiny_model, device="cpu", dtype="float32")
    assert next(model.parameters()).dtype == torch.float32
    assert not any(p.requires_grad for p in model.parameters())
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=r"CUDA requested but torch.cuda.is_available\(\) is False"):
            load_mace_model(tiny_model, device="cuda", dtype="float32")
        with pytest.raises(RuntimeError, match="CUDA requested"):
            mace_calculator(tiny_model, device="cuda", dtype="float32")


def _members() -> list:
    """Two members of different size, rattled, one atom outside the cell."""
    first = build_lif_supercell(2)
    first.rattle(0.15, seed=1)
    second = build_lif_supercell(2, interstitial_site="none")
    second.rattle(0.15, seed=2)
    second.positions[5] -= [0.9, 0.4, 0.2]
    second.positions[7] += second.cell[0]
    return [first, second]


@pytest.mark.parametrize(
    ("dtype", "rtol", "force_atol", "stress_atol"),
    [("float64", 1e-10, 1e-12, 1e-13), ("float32", 1e-5, 1e-5, 1e-6)],
)
def test_batched_equals_single(tiny_model, dtype, rtol, force_atol, stress_atol):
    members = _members()
    model = MaceModel(tiny_model, device="cpu", dtype=dtype)
    batched = evaluate_structures(model, members)
    calculator = mace_calculator(tiny_model, device="cpu", dtype=dtype)
    for atoms, result in zip(members, batched):
        alone = evaluate_structures(model, [atoms])[0]
        atoms = atoms.copy()
        atoms.calc = calculator
        reference = {
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "stress": atoms.get_stress(voigt=False),
        }
        for other in (alone, reference):
            assert result["energy"] == pytest.approx(other["energy"], rel=rtol)
            np.testing.assert_allclose(result["forces"], other["forces"], rtol=rtol, atol=force_atol)
            np.testing.assert_allclose(result["stress"], other["stress"], rtol=rtol, atol=stress_atol)


def test_verlet_list_reuse_and_rebuild_match_fresh_lists(tiny_model):
    members = _members()
    model = MaceModel(tiny_model, device="cpu", dtype="float64", skin=1.0)
    evaluator = model.evaluator(members)
    active = np.ones(2, dtype=bool)
    start = np.concatenate([a.positions for a in members])
    evaluator.evaluate(torch.as_tensor(start), active)
    assert evaluator.timings["rebuilds"] == 2
    rng = np.random.default_rng(3)
    for size, rebuilds in ((0.25, 2), (2.0, 4)):
        moved = start + rng.uniform(-size, size, start.shape) / np.sqrt(3)
        result = evaluator.evaluate(torch.as_tensor(moved), active, compute_stress=True)
        assert evaluator.timings["rebuilds"] == rebuilds
        fresh = []
        for j, atoms in enumerate(members):
            copy = atoms.copy()
            copy.positions = moved[evaluator.ptr[j] : evaluator.ptr[j + 1]]
            fresh.append(copy)
        expected = evaluate_structures(model, fresh)
        for j in range(2):
            assert float(result.energy[j]) == pytest.approx(expected[j]["energy"], rel=1e-12)
            np.testing.assert_allclose(
                result.forces[evaluator.ptr[j] : evaluator.ptr[j + 1]].numpy(), expected[j]["forces"], atol=1e-12
            )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batched_cuda_matches_cpu(tiny_model):
    members = _members()
    cpu = evaluate_structures(MaceModel(tiny_model, device="cpu", dtype="float64"), members)
    gpu = evaluate_structures(MaceModel(tiny_model, device="cuda", dtype="float64"), members)
    for a, b in zip(cpu, gpu):
        assert a["energy"] == pytest.approx(b["energy"], rel=1e-10)
        np.testing.assert_allclose(a["forces"], b["forces"], atol=1e-9)
