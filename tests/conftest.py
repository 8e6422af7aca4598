"""Shared fixtures: a temporary AiiDA profile (SQLite, no services) with the localhost LAMMPS code."""

from __future__ import annotations

import pytest

pytest_plugins = ["aiida.tools.pytest_fixtures"]


#: aiida-core gives the runner of a test profile a poll interval of 0: a work chain waiting on its children then
#: queries their state back to back, ~60 % of a core taken from the MD it waits for (measured with py-spy).
RUNNER_POLL_INTERVAL_S = 0.5


@pytest.fixture(autouse=True)
def runner_polls_at_a_finite_rate(request):
    if "lab" in request.path.parts:  # the lab stage drives its own profiles in subprocesses
        return
    request.getfixturevalue("aiida_profile")
    from aiida.manage import get_manager

    manager = get_manager()
    runner = manager.get_runner(poll_interval=RUNNER_POLL_INTERVAL_S)  # creates the runner if there is none
    if getattr(runner, "_poll_interval", RUNNER_POLL_INTERVAL_S) == 0:
        manager.set_runner(manager.create_runner(poll_interval=RUNNER_POLL_INTERVAL_S))


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


# The longest files first (measured: minutes each on 2 cores): with `pytest -n 2 --dist loadfile` a long file
# scheduled last would leave the other worker idle at the end. Order within a file is kept.
LONG_FILES_FIRST = (
    "test_ml_diffusion.py",
    "test_training_workflows.py",
    "test_caching.py",
    "test_universal.py",
    "test_benchmark_workchain.py",
    "test_ml_md.py",
    "test_mace_train.py",
    "test_daemon.py",
    "test_benchmark_barriers.py",
    "test_runner_md.py",
    "test_deepmd_train.py",
    "test_export.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: other files keep their order
