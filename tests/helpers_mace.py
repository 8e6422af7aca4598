"""Randomly initialised MACE models for Li and F, saved the way ``mace_run_train`` saves them.

The weights are random, so the energies mean nothing physically; the models exist to test
the machinery (batched vs single evaluation, restarts, failure handling) and to time the
runner at a realistic architecture size without downloading foundation weights.
A pair (ZBL) repulsion is switched on, as in the MACE-MP models, so that two atoms pushed
together really do blow up instead of passing through each other.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

#: Architectures by name. ``mpa0`` follows MACE-MPA-0 medium (128x0e+128x1o, max_ell 3,
#: correlation 3, r_max 6, 2 interactions) restricted to Li and F.
ARCHITECTURES: dict[str, dict] = {
    "tiny": {
        "hidden_irreps": "16x0e",
        "max_ell": 1,
        "r_max": 4.0,
        "num_interactions": 2,
        "correlation": 2,
        "num_bessel": 6,
        "radial_MLP": [16, 16],
        "MLP_irreps": "8x0e",
        "avg_num_neighbors": 20.0,
    },
    "mpa0": {
        "hidden_irreps": "128x0e+128x1o",
        "max_ell": 3,
        "r_max": 6.0,
        "num_interactions": 2,
        "correlation": 3,
        "num_bessel": 10,
        "radial_MLP": [64, 64, 64],
        "MLP_irreps": "16x0e",
        "avg_num_neighbors": 61.0,
    },
}

# Plausible per-atom reference energies (eV); any constants would do for the tests.
_E0 = {3: -1.9, 9: -1.7}


def build_random_mace(
    path: str | os.PathLike,
    architecture: str = "tiny",
    dtype: str = "float64",
    seed: int = 0,
    scale: float = 0.5,
) -> Path:
    """Build a random ScaleShiftMACE for Li and F, ``torch.save`` it to ``path`` and return the path."""
    from e3nn import o3
    from mace import modules

    spec = ARCHITECTURES[architecture]
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    zs = sorted(_E0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)
    try:
        torch.manual_seed(seed)
        model = modules.ScaleShiftMACE(
            r_max=spec["r_max"],
            num_bessel=spec["num_bessel"],
            num_polynomial_cutoff=5,
            max_ell=spec["max_ell"],
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            num_interactions=spec["num_interactions"],
            num_elements=len(zs),
            hidden_irreps=o3.Irreps(spec["hidden_irreps"]),
            MLP_irreps=o3.Irreps(spec["MLP_irreps"]),
            atomic_energies=np.array([_E0[z] for z in zs]),
            avg_num_neighbors=spec["avg_num_neighbors"],
            atomic_numbers=zs,
            correlation=spec["correlation"],
            gate=torch.nn.functional.silu,
            pair_repulsion=True,
            radial_MLP=spec["radial_MLP"],
            atomic_inter_scale=scale,
            atomic_inter_shift=0.0,
        )
    finally:
        torch.set_default_dtype(previous)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model, path)
    return path


def _lennard_jones_class():
    from ase.calculators.lj import LennardJones

    class FlakyLennardJones(LennardJones):
        """ASE Lennard-Jones that turns its forces to NaN after ``nan_after`` calls.

        Only systems with ``nan_if_natoms`` atoms are affected, so one factory (the runner
        calls it once per member with the same kwargs) can break a single member.
        """

        def __init__(self, nan_after: int | None = None, nan_if_natoms: int | None = None, **kwargs) -> None:
            super().__init__(**kwargs)
            self.nan_after = nan_after
            self.nan_if_natoms = nan_if_natoms
            self.calls = 0

        def calculate(self, atoms=None, properties=None, system_changes=None):
            from ase.calculators.calculator import all_changes

            super().calculate(atoms, properties or ["energy"], system_changes or all_changes)
            self.calls += 1
            if (
                self.nan_after is not None
                and self.calls > self.nan_after
                and len(self.atoms) == (self.nan_if_natoms or len(self.atoms))
            ):
                self.results["forces"] = self.results["forces"] * np.nan

    return FlakyLennardJones


def flaky_lennard_jones(**kwargs):
    """Factory for the runner's ``{"kind": "ase", "factory": "helpers_mace:flaky_lennard_jones"}``."""
    return _lennard_jones_class()(**kwargs)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Pin torch to one thread for a test module that imports this fixture.

    The 2 shared cores are oversubscribed by other jobs; two spinning OpenMP threads then run 50x slower
    than one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
