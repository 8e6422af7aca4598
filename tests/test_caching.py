"""AiiDA caching of a study's deterministic steps: a study with one more temperature reruns only that temperature.

The classical study is tests/data/tiny_study.yaml (Tosi-Fumi, LAMMPS) made hotter and shorter, with seeds no other test
uses, so that the first run below is the only possible cache source of the second.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import time
from pathlib import Path

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.manage.caching import disable_caching, get_use_cache
from aiida.plugins.entry_point import load_entry_point_from_string

from aiida_lifdiff.caching import (
    CACHED_PROCESSES,
    DISABLED_FOR_OPTION,
    ENABLED_FOR_OPTION,
    NOT_CACHED,
    cached_identifiers,
    configure_profile_caching,
    enable_study_caching,
)
from aiida_lifdiff.study import build_builder, load_study
from aiida_lifdiff.workflows.diffusion import run_seed

TINY_STUDY = Path(__file__).parent / "data" / "tiny_study.yaml"
MODELS = Path(__file__).parent / "data" / "models"
SEEDS = [3, 4]
#: Hotter and shorter than tiny_study.yaml (500-800 K, 20 ps), with a diffusive regime at every temperature still.
TEMPERATURES = [650.0, 800.0, 950.0]
NEW_TEMPERATURE = 875.0
MD_SETTINGS = {"production_ps": 10.0}


def test_every_calculation_entry_point_is_cached_and_loads():
    """A new calculation or calcfunction entry point must be added to the cached list (or explicitly left out)."""
    entry_points = importlib.metadata.distribution("aiida-lifdiff").entry_points
    calculations = {f"aiida.calculations:{ep.name}" for ep in entry_points if ep.group == "aiida.calculations"}
    assert set(CACHED_PROCESSES) <= calculations
    for identifier in calculations - set(CACHED_PROCESSES):
        assert any(fnmatch.fnmatchcase(identifier, pattern) for pattern in NOT_CACHED), f"{identifier}: cache it?"
    for identifier in cached_identifiers():
        load_entry_point_from_string(identifier)


def test_enable_study_caching_is_limited_to_the_listed_processes_and_the_context(aiida_profile):
    with enable_study_caching() as identifiers:
        assert identifiers == cached_identifiers()
        assert all(get_use_cache(identifier=i) for i in identifiers)
        assert not get_use_cache(identifier="aiida.workflows:lifdiff.diffusion")
        assert not get_use_cache(identifier="aiida.calculations:core.arithmetic.add")
    assert not any(get_use_cache(identifier=i) for i in cached_identifiers())


def test_configure_profile_caching_is_idempotent_keeps_other_identifiers_and_is_stored(aiida_profile):
    from aiida.manage.configuration import get_config
    from aiida.manage.configuration.config import Config

    config = get_config()
    profile = config.get_profile(aiida_profile.name)
    before = {option: profile.options.get(option) for option in (ENABLED_FOR_OPTION, DISABLED_FOR_OPTION)}
    other = "aiida.calculations:core.arithmetic.add"
    kept_off = "aiida.calculations:lifdiff.mace_train"
    try:
        config.set_option(ENABLED_FOR_OPTION, [other], scope=profile.name)
        config.set_option(DISABLED_FOR_OPTION, [kept_off], scope=profile.name)
        enabled = configure_profile_caching()
        assert enabled == [other] + [i for i in cached_identifiers() if i != kept_off]
        assert configure_profile_caching(aiida_profile.name) == enabled
        # In this process (no context manager) ...
        assert get_use_cache(identifier="aiida.calculations:lifdiff.lammps")
        assert not get_use_cache(identifier="aiida.workflows:lifdiff.diffusion")
        assert not get_use_cache(identifier=kept_off)
        # ... and in the file a daemon worker would read.
        on_disk = Config.from_file(config.filepath).get_option(ENABLED_FOR_OPTION, scope=profile.name)
        assert on_disk == enabled
    finally:
        for option, value in before.items():
            if value is None:
                config.unset_option(option, scope=profile.name)
            else:
                config.set_option(option, value, scope=profile.name)
        config.store()
    assert not get_use_cache(identifier="aiida.calculations:lifdiff.lammps")


# ----------------------------------------------------------------------------------------------------------------------
# The classical study in LAMMPS


def run_tiny_study(temperatures, caching: bool):
    builder = build_builder(load_study(TINY_STUDY))
    builder.temperatures = orm.List([float(t) for t in temperatures])
    builder.seeds = orm.List(SEEDS)
    builder.md_settings = orm.Dict({**builder.md_settings.get_dict(), **MD_SETTINGS})
    start = time.perf_counter()
    with enable_study_caching() if caching else disable_caching():
        _, node = run_get_node(builder)
    elapsed = time.perf_counter() - start
    assert node.is_finished_ok, node.exit_message
    return node, elapsed


def md_calculations(study) -> dict[tuple[float, int], list[orm.CalcJobNode]]:
    """The MD calculations of a study per (temperature, replica index), in the order they ran (restart segments)."""
    found = {}
    for md in study.called:
        if md.process_label != "MdWorkChain":
            continue
        calcs = sorted((c for c in md.called if isinstance(c, orm.CalcJobNode)), key=lambda c: c.ctime)
        for member in md.inputs.parameters["members"]:
            found[(float(member["temperature_K"]), int(member["name"].rsplit("_r", 1)[1]))] = calcs
    return found


def diffusivities(study) -> dict[float, orm.Dict]:
    return {d["temperature_K"]: d for d in study.outputs.diffusivity.values()}


def cache_sources(calcs) -> list[str | None]:
    return [c.base.caching.get_cache_source() for c in calcs]


@pytest.fixture(scope="module")
def appended(lammps_code):
    """The study at three temperatures, then at the same three plus one appended, both with caching."""
    first, first_s = run_tiny_study(TEMPERATURES, caching=True)
    second, second_s = run_tiny_study(TEMPERATURES + [NEW_TEMPERATURE], caching=True)
    return {"first": first, "second": second, "first_s": first_s, "second_s": second_s}


@pytest.mark.lammps
def test_an_appended_temperature_reuses_every_md_run_of_the_others(appended, record_property):
    first, second = appended["first"], appended["second"]
    before, after = md_calculations(first), md_calculations(second)
    assert set(before) == {(t, r) for t in TEMPERATURES for r in range(len(SEEDS))}
    assert set(after) == set(before) | {(NEW_TEMPERATURE, r) for r in range(len(SEEDS))}

    # Every MD calculation of the first three temperatures comes from the cache, each from its own first-run twin.
    assert not any(source for calcs in before.values() for source in cache_sources(calcs))
    segments = {len(calcs) for calcs in before.values()}
    assert len(segments) == 1, "every run has the same number of restart segments"
    segments = segments.pop()
    reused = 0
    for key, calcs in before.items():
        assert cache_sources(after[key]) == [c.uuid for c in calcs], key
        reused += len(calcs)
    assert reused == len(TEMPERATURES) * len(SEEDS) * segments
    cached_in_second = [c for calcs in after.values() for c in calcs if c.base.caching.is_created_from_cache]
    assert len(cached_in_second) == reused

    # The new temperature's runs really ran: no cache source, their own working directory and retrieved files.
    old_workdirs = {c.get_remote_workdir() for calcs in before.values() for c in calcs}
    for r_index in range(len(SEEDS)):
        for calc in after[(NEW_TEMPERATURE, r_index)]:
            assert calc.base.caching.get_cache_source() is None
            assert calc.is_finished_ok and calc.get_remote_workdir() not in old_workdirs
            assert "trajectory" in calc.outputs

    # The analysis of the shared temperatures is reused too: same D(T), the same compute_diffusivity results.
    d_before, d_after = diffusivities(first), diffusivities(second)
    for temperature in TEMPERATURES:
        assert d_after[temperature].get_dict() == d_before[temperature].get_dict()
        assert d_after[temperature].creator.base.caching.get_cache_source() == d_before[temperature].creator.uuid
    assert d_after[NEW_TEMPERATURE].creator.base.caching.get_cache_source() is None

    # The fit of the second study uses all four temperatures.
    arrhenius = second.outputs.arrhenius.get_dict()
    primary = arrhenius[arrhenius["primary_mode"]]
    assert primary["fit_ok"], primary.get("reason")
    assert [p["temperature_K"] for p in primary["points"]] == sorted(TEMPERATURES + [NEW_TEMPERATURE])
    assert primary["excluded"] == []
    assert second.outputs.arrhenius.creator.base.caching.get_cache_source() is None

    record_property("first_run_s", round(appended["first_s"], 1))
    record_property("second_run_s", round(appended["second_s"], 1))
    print(
        f"first run (3 T x {len(SEEDS)} seeds): {appended['first_s']:.1f} s; second run (+1 T, "
        f"{reused} of {reused + 2 * segments} MD calculations from the cache): {appended['second_s']:.1f} s"
    )


@pytest.mark.lammps
def test_without_caching_the_same_rerun_reuses_nothing(appended):
    rerun, rerun_s = run_tiny_study(TEMPERATURES + [NEW_TEMPERATURE], caching=False)
    calcs = [c for calcs in md_calculations(rerun).values() for c in calcs]
    assert len(calcs) == (len(TEMPERATURES) + 1) * len(SEEDS)
    assert not any(c.base.caching.is_created_from_cache for c in calcs)
    functions = [n for n in rerun.called_descendants if isinstance(n, orm.CalcFunctionNode)]
    assert functions and not any(n.base.caching.is_created_from_cache for n in functions)
    # Same inputs, same LAMMPS binary: the rerun gives the same trajectories, hence the same D(T).
    expected = diffusivities(appended["second"])
    for temperature, diffusivity in diffusivities(rerun).items():
        assert diffusivity.get_dict() == expected[temperature].get_dict()
    print(f"rerun without caching (4 T x {len(SEEDS)} seeds): {rerun_s:.1f} s")


@pytest.mark.lammps
def test_an_inserted_temperature_reuses_every_run_whose_inputs_did_not_change(appended):
    """Inserting a temperature reuses each run whose LAMMPS input is unchanged.

    Per-run seeds come from ``run_seed(base seed, temperature index)``: the temperatures after the inserted one get
    new seeds, hence new inputs, and run again. The expectation is computed from ``run_seed`` itself.
    """
    temperatures = [TEMPERATURES[0], TEMPERATURES[1], NEW_TEMPERATURE, TEMPERATURES[2]]
    earlier = {}
    for study in (appended["first"], appended["second"]):
        for t_index, temperature in enumerate(study.inputs.temperatures.get_list()):
            for r_index, seed in enumerate(SEEDS):
                earlier.setdefault((float(temperature), run_seed(seed, t_index)), set()).update(
                    c.uuid for c in md_calculations(study)[(float(temperature), r_index)]
                )
    inserted, inserted_s = run_tiny_study(temperatures, caching=True)
    calcs = md_calculations(inserted)
    n_hits = 0
    for t_index, temperature in enumerate(temperatures):
        for r_index, seed in enumerate(SEEDS):
            sources = cache_sources(calcs[(temperature, r_index)])
            twins = earlier.get((temperature, run_seed(seed, t_index)))
            if twins:
                assert all(source in twins for source in sources), (temperature, r_index)
                n_hits += len(sources)
            else:
                assert sources == [None] * len(sources), (temperature, r_index)
    assert n_hits >= len(SEEDS), "at least the temperatures before the inserted one are reused"
    n_calcs = sum(len(c) for c in calcs.values())
    print(f"inserted temperature: {n_hits} of {n_calcs} MD calculations from the cache: {inserted_s:.1f} s")


# ----------------------------------------------------------------------------------------------------------------------
# The MACE study in the batched lifdiff-md runner: one job per temperature by default, so the jobs of the other
# temperatures are unchanged when one is added. Too short for physics (the fit may honestly fail with 421).

RUNNER_TEMPERATURES = [600.0, 750.0, 900.0]


def run_runner_study(runner_code, potential, temperatures):
    from aiida_lifdiff.workflows.diffusion import DiffusionWorkChain

    overrides = {
        "supercell": {"repeat": 1, "relax_lattice": False},
        "temperatures_K": [float(t) for t in temperatures],
        "seeds": SEEDS,
        "md_settings": {
            "timestep_fs": 2.0,
            "production_ps": 0.4,
            "equilibration_ps": 0.0,
            "frame_interval_fs": 20.0,
            "thermo_interval_fs": 20.0,
        },
        "analysis": {"n_blocks": 2},
    }
    builder = DiffusionWorkChain.get_builder_from_protocol(runner_code, potential, "quick", overrides)
    start = time.perf_counter()
    with enable_study_caching():
        _, node = run_get_node(builder)
    elapsed = time.perf_counter() - start
    assert node.exit_status in (0, DiffusionWorkChain.exit_codes.ERROR_ARRHENIUS_FIT_FAILED.status), node.exit_message
    return node, elapsed


def test_runner_jobs_of_the_other_temperatures_are_reused_when_one_is_added(aiida_profile):
    pytest.importorskip("mace", reason="needs the `mace` extra")
    from aiida_lifdiff.codes import ensure_localhost_computer, ensure_runner_code
    from aiida_lifdiff.data.potential import PotentialData

    runner_code = ensure_runner_code(ensure_localhost_computer())
    potential = PotentialData.get_or_create(PotentialData.from_model_file("mace", MODELS / "tiny-mace.model"))
    first, first_s = run_runner_study(runner_code, potential, RUNNER_TEMPERATURES)
    second, second_s = run_runner_study(runner_code, potential, RUNNER_TEMPERATURES + [NEW_TEMPERATURE])

    def jobs(study) -> dict[float, list[orm.CalcJobNode]]:
        found = {}
        for md in study.called:
            if md.process_label == "MdWorkChain":
                temperatures = {float(m["temperature_K"]) for m in md.inputs.parameters["members"]}
                assert len(temperatures) == 1 and len(md.inputs.parameters["members"]) == len(SEEDS)
                calcs = sorted((c for c in md.called if isinstance(c, orm.CalcJobNode)), key=lambda c: c.ctime)
                assert all(c.process_label == "LifdiffMdCalculation" for c in calcs)
                found[temperatures.pop()] = calcs
        return found

    before, after = jobs(first), jobs(second)
    assert set(before) == set(RUNNER_TEMPERATURES)
    assert set(after) == set(RUNNER_TEMPERATURES) | {NEW_TEMPERATURE}
    assert not any(source for calcs in before.values() for source in cache_sources(calcs))
    for temperature, calcs in before.items():
        assert cache_sources(after[temperature]) == [c.uuid for c in calcs], temperature
    assert cache_sources(after[NEW_TEMPERATURE]) == [None] * len(after[NEW_TEMPERATURE])
    d_before, d_after = diffusivities(first), diffusivities(second)
    for temperature in RUNNER_TEMPERATURES:
        assert d_after[temperature].get_dict() == d_before[temperature].get_dict()
    print(f"runner: first run (3 jobs) {first_s:.1f} s; second run (+1 T, 3 of 4 jobs cached) {second_s:.1f} s")
