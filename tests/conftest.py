"""Shared fixtures: a temporary AiiDA profile (SQLite, no services) with the localhost LAMMPS code."""

from __future__ import annotations

import pytest

pytest_plugins = ["aiida.tools.pytest_fixtures"]


@pytest.fixture(scope="session")
def lammps_code(aiida_profile):
    """The LAMMPS code on localhost, created the way `aiida-lifdiff setup localhost` does.

    The lifdiff-barrier code comes with it: a study relaxes its potential's lattice first by default.
    """
    from aiida_lifdiff.codes import ensure_barrier_code, ensure_lammps_code, ensure_localhost_computer

    computer = ensure_localhost_computer()
    ensure_barrier_code(computer)
    return ensure_lammps_code(computer)


@pytest.fixture
def tosi_fumi(aiida_profile):
    from aiida_lifdiff.data.potential import PotentialData

    return PotentialData.get_or_create(PotentialData.tosi_fumi_lif())
