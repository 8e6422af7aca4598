"""``label_errors`` and ``parity_plot`` on frames whose errors are known exactly."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from aiida_lifdiff.analysis.errors import label_errors, parity_plot
from aiida_lifdiff.datasets import labelled_frame


def _frame(rng: np.random.Generator, n_atoms: int, shift: float = 0.0) -> Atoms:
    symbols = ["Li", "F"] * (n_atoms // 2) + ["Li"] * (n_atoms % 2)
    atoms = Atoms(symbols, positions=rng.uniform(0, 6, (n_atoms, 3)) + shift, cell=np.eye(3) * 6.0, pbc=True)
    atoms.info["config_type"] = "md" if n_atoms % 2 else "perfect"
    return atoms


@pytest.fixture
def reference() -> list[Atoms]:
    rng = np.random.default_rng(3)
    frames = []
    for n_atoms in (4, 5, 8):
        atoms = _frame(rng, n_atoms)
        frames.append(
            labelled_frame(
                atoms, rng.normal(-5.0 * n_atoms, 1.0), rng.normal(0, 1, (n_atoms, 3)), rng.normal(0, 0.01, 6)
            )
        )
    return frames


def _shifted(reference: list[Atoms], energy_per_atom: list[float], force: float, stress: float | None) -> list[Atoms]:
    """Predictions = reference + known offsets (per-atom energy offset per frame, constant force/stress offset)."""
    out = []
    for atoms, offset in zip(reference, energy_per_atom):
        labels = atoms.calc.results
        out.append(
            labelled_frame(
                atoms,
                labels["energy"] + offset * len(atoms),
                labels["forces"] + force,
                None if stress is None else labels["stress"] + stress,
            )
        )
    return out


def test_known_offsets_give_exact_errors(reference):
    offsets = [0.003, -0.004, 0.0]  # eV/atom
    predicted = _shifted(reference, offsets, force=-0.02, stress=0.0005)
    errors = label_errors(reference, predicted)

    assert errors["n_frames"] == 3
    assert errors["n_atoms"] == 17
    assert errors["n_force_components"] == 51
    assert errors["energy_rmse_meV_per_atom"] == pytest.approx(np.sqrt((9 + 16 + 0) / 3), rel=1e-9)
    assert errors["energy_mae_meV_per_atom"] == pytest.approx(7 / 3, rel=1e-9)
    assert errors["energy_mean_error_meV_per_atom"] == pytest.approx(-1 / 3, rel=1e-9)
    assert errors["energy_rmse_offset_removed_meV_per_atom"] == pytest.approx(np.std([3.0, -4.0, 0.0]), rel=1e-9)
    assert errors["energy_max_abs_error_meV_per_atom"] == pytest.approx(4.0, rel=1e-9)
    assert errors["force_rmse_meV_per_A"] == pytest.approx(20.0, rel=1e-9)
    assert errors["force_mae_meV_per_A"] == pytest.approx(20.0, rel=1e-9)
    assert errors["force_max_abs_error_meV_per_A"] == pytest.approx(20.0, rel=1e-9)
    forces = np.concatenate([a.calc.results["forces"].ravel() for a in reference])
    assert errors["force_rms_label_meV_per_A"] == pytest.approx(1e3 * np.sqrt(np.mean(forces**2)), rel=1e-12)
    assert errors["stress"] is True
    assert errors["n_stress_components"] == 18
    assert errors["stress_rmse_meV_per_A3"] == pytest.approx(0.5, rel=1e-9)
    assert errors["stress_mae_meV_per_A3"] == pytest.approx(0.5, rel=1e-9)


def test_perfect_prediction_and_mixed_force_errors(reference):
    assert label_errors(reference, reference)["force_rmse_meV_per_A"] == 0.0
    # One force component off by 0.1 eV/A among 51: RMSE = 100 meV/A / sqrt(51), MAE = 100/51.
    predicted = _shifted(reference, [0.0, 0.0, 0.0], force=0.0, stress=None)
    predicted[1].calc.results["forces"][2, 1] += 0.1
    errors = label_errors(reference, predicted)
    assert errors["force_rmse_meV_per_A"] == pytest.approx(100 / np.sqrt(51), rel=1e-9)
    assert errors["force_mae_meV_per_A"] == pytest.approx(100 / 51, rel=1e-9)
    assert errors["force_max_abs_error_meV_per_A"] == pytest.approx(100.0, rel=1e-9)
    assert errors["energy_rmse_meV_per_atom"] == 0.0
    # No stress on one side: no stress errors.
    assert errors["stress"] is False
    assert "stress_rmse_meV_per_A3" not in errors


def test_wrapped_positions_still_correspond(reference):
    predicted = _shifted(reference, [0.0, 0.0, 0.0], force=0.0, stress=0.0)
    predicted[0].positions[0] += [6.0, 0.0, -6.0]  # the same atom one lattice vector away
    assert label_errors(reference, predicted)["n_frames"] == 3


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda frames: frames[:2], "3 reference frames but 2 predicted"),
        (lambda frames: [frames[1], frames[0], frames[2]], "different atoms"),
        (lambda frames: _moved(frames, 2e-6), "away from its reference position"),
        (lambda frames: _symbol_changed(frames), "different atoms"),
    ],
)
def test_frames_that_do_not_correspond_are_refused(reference, change, message):
    with pytest.raises(ValueError, match=message):
        label_errors(reference, change(_shifted(reference, [0.0, 0.0, 0.0], 0.0, 0.0)))


def test_positions_within_tolerance_are_accepted(reference):
    assert label_errors(reference, _moved(_shifted(reference, [0.0] * 3, 0.0, 0.0), 5e-7))["n_frames"] == 3


def test_unlabelled_frame_is_refused(reference):
    bare = [Atoms(a.get_chemical_symbols(), positions=a.positions, cell=a.cell, pbc=True) for a in reference]
    with pytest.raises(ValueError, match="predicted frame 0 has no energy and no forces"):
        label_errors(reference, bare)


def test_parity_plot_writes_png(reference, tmp_path):
    predicted = _shifted(reference, [0.003, -0.004, 0.0], force=-0.02, stress=None)
    path = parity_plot(reference, predicted, tmp_path / "parity.png", title="test")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


def _moved(frames: list[Atoms], distance: float) -> list[Atoms]:
    frames[1].positions[3] += [distance, 0.0, 0.0]
    return frames


def _symbol_changed(frames: list[Atoms]) -> list[Atoms]:
    frames[2].symbols[0] = "Na"
    return frames
