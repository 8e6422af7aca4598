"""AiiDA caching for the steps of a study whose result is fixed by their inputs.

With caching on, a calculation whose inputs (by content), code and computer match a finished one is not run again:
AiiDA stores a new node with copies of the earlier outputs and records the source in the extra
``_aiida_cached_from`` (``node.base.caching.get_cache_source()``). Re-running a study with one more temperature
therefore runs only the new temperature's MD and the analysis that depends on it.

Which processes are cached, and why, is :data:`CACHED_PROCESSES`; what is not, and why, is :data:`NOT_CACHED`.
Two ways to switch it on:

* in this Python process (``aiida-lifdiff run``, notebooks, tests)::

      with enable_study_caching():
          run_get_node(builder)

* for the daemon (``aiida-lifdiff submit``), in the profile's configuration, once::

      configure_profile_caching()       # = verdi config set -a caching.enabled_for ... for each identifier

See ``docs/caching.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager

#: The configuration option the daemon workers (and this process, outside any context manager) read.
ENABLED_FOR_OPTION = "caching.enabled_for"
DISABLED_FOR_OPTION = "caching.disabled_for"

#: Process types (entry point strings, see setup.cfg) that are cached, and why that is safe.
CACHED_PROCESSES: dict[str, str] = {
    # Calculation jobs.
    "aiida.calculations:lifdiff.lammps": "LAMMPS MD: the script (temperature, seed, steps, timer), the data file and "
    "the code fix the trajectory; one MPI process of the same binary repeats it bit for bit.",
    "aiida.calculations:lifdiff.md": "lifdiff-md batched MD: members (temperature, seed) and settings fix it; on the "
    "CPU it is repeatable with the fixed seeds, on a GPU a cached run is still a valid sample of the same ensemble.",
    "aiida.calculations:lifdiff.label": "single points: energies, forces and stresses are a function of the frames "
    "and the potential.",
    "aiida.calculations:lifdiff.mace_train": "MACE training: the most expensive step and seeded; without it every "
    "rerun of a benchmark trains a new model, a new potential node, and so reruns every MD of that potential.",
    "aiida.calculations:lifdiff.deepmd_train": "DeePMD training: as for MACE (seeded; a cached model is a model "
    "trained on exactly these datasets and settings).",
    "aiida.calculations:lifdiff.barrier": "lattice E(V) and NEB barriers: deterministic minimisations from a "
    "fixed-seed perturbation; a function of the potential and the settings (on a GPU up to the order of sums).",
    # Calculation functions: pure functions of their inputs (the hash also covers their module's source).
    "aiida.calculations:lifdiff.create_lif_supercell": "structure from (repeat, lattice constant, site).",
    "aiida.calculations:lifdiff.prepare_lammps_md": "LAMMPS script and data file from structure, potential, "
    "parameters.",
    "aiida.calculations:lifdiff.concatenate_trajectories": "joins restart segments.",
    "aiida.calculations:lifdiff.compute_diffusivity": "MSD and D with errors from the replica trajectories.",
    "aiida.calculations:lifdiff.fit_arrhenius": "weighted Arrhenius fit of the D(T) inputs.",
    "aiida.calculations:lifdiff.sample_frames": "seeded choice of frames from trajectories.",
    "aiida.calculations:lifdiff.split_dataset": "seeded train/valid/test split.",
    "aiida.calculations:lifdiff.select_frames": "seeded draw of a number of frames.",
    "aiida.calculations:lifdiff.merge_datasets": "concatenation in the order of the link labels.",
    "aiida.calculations:lifdiff.compare_labels": "label errors and parity plot of two datasets.",
    "aiida.calculations:lifdiff.compare_potentials": "the benchmark's comparison table and figures.",
    "aiida.calculations:lifdiff.plot_barrier_profiles": "the NEB energy-profile figure of one barrier run.",
    "aiida.calculations:lifdiff.relaxed_lattice_constant": "a0 from a lattice-only barrier run's results.",
}

#: Processes (or patterns of them) that are not in the list, and why.
NOT_CACHED: dict[str, str] = {
    "aiida.workflows:lifdiff.*": "work chains are never cached by AiiDA: they run their logic again and their "
    "calculations are the cached steps.",
}


def cached_identifiers() -> list[str]:
    """The process types :func:`enable_study_caching` and :func:`configure_profile_caching` switch caching on for."""
    return list(CACHED_PROCESSES)


@contextmanager
def enable_study_caching(identifiers: Iterable[str] | None = None) -> Iterator[list[str]]:
    """Cache the deterministic steps of a study (default :func:`cached_identifiers`) run in this Python process.

    Wraps :func:`aiida.manage.caching.enable_caching` once per identifier. It does not reach daemon workers (use
    :func:`configure_profile_caching` for those). As with AiiDA's own context managers, leaving it clears every
    in-process caching override, including those of an enclosing ``enable_caching``/``disable_caching``.
    """
    from aiida.manage.caching import enable_caching

    identifiers = list(cached_identifiers() if identifiers is None else identifiers)
    with ExitStack() as stack:
        for identifier in identifiers:
            stack.enter_context(enable_caching(identifier=identifier))
        yield identifiers


def configure_profile_caching(profile_name: str | None = None) -> list[str]:
    """Add :func:`cached_identifiers` to the profile's ``caching.enabled_for`` and write the configuration file.

    The daemon reads this option (restart it, ``verdi daemon restart``, for running workers to see the change); so
    does this process outside any context manager. Identifiers already enabled are kept (the profile's value, or
    else the configuration-wide one); an identifier the profile lists verbatim in ``caching.disabled_for`` stays
    disabled. Idempotent: the file is only written when the value changes.

    :param profile_name: the profile to configure; default the loaded profile, else the default profile.
    :return: the profile's ``caching.enabled_for`` after the call.
    """
    from aiida.manage import get_manager
    from aiida.manage.configuration import get_config

    config = get_config()
    if profile_name is None:
        loaded = get_manager().get_profile()
        profile_name = loaded.name if loaded is not None else None
    profile = config.get_profile(profile_name)

    def configured(option: str) -> list[str]:
        if option in profile.options:
            return list(profile.get_option(option))
        return list(config.get_option(option, scope=None))

    current = configured(ENABLED_FOR_OPTION)
    disabled = set(configured(DISABLED_FOR_OPTION))
    wanted = current + [i for i in cached_identifiers() if i not in current and i not in disabled]
    if wanted != profile.get_option(ENABLED_FOR_OPTION):
        config.set_option(ENABLED_FOR_OPTION, wanted, scope=profile.name)
        config.store()
    return list(profile.get_option(ENABLED_FOR_OPTION))
