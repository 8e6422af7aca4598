"""How fast is ``aiida-lifdiff results`` on a database with many studies? Prints figures; asserts nothing.

Creates its own AiiDA configuration and SQLite profile (``verdi presto``, as ``make demo`` does) in a
temporary folder, fills it with synthetic studies shaped like real ones, and times the query behind
``aiida-lifdiff results`` (full table and filtered), the old one-query-per-row version, and the CLI itself.
Run from the repository root:

    .venv/bin/python benchmarks/query_scale.py                      # 1,000 studies in a temporary profile
    .venv/bin/python benchmarks/query_scale.py --studies 200        # smaller
    .venv/bin/python benchmarks/query_scale.py --workdir /tmp/qs    # keep the profile; a second run reuses it

No MD runs: every node and link is written directly. Each study has the node and link pattern of a real
DiffusionWorkChain (the potential and settings inputs; ``create_lif_supercell`` -> structure; per
(temperature, seed) an MdWorkChain with ``prepare_lammps_md`` -> script/data/settings and a
``LifdiffLammpsCalculation`` -> trajectory/thermo/results/retrieved (MACE: one batched ``LifdiffMdCalculation``
per study); per temperature ``compute_diffusivity`` -> diffusivity/msd; ``fit_arrhenius`` -> arrhenius/plot),
some studies inside a BenchmarkWorkChain. Potentials are shared: the classical reference, two MACE
foundation models, and models trained in the database (training CalcJob <- train/valid/test parts <-
``split_dataset`` <- dataset), like the graph :func:`aiida_lifdiff.queries.training_lineage` reads.

The shared potentials and datasets are real nodes (files, sha256). The per-study nodes go in with the
storage backend's ``bulk_insert`` (the path ``verdi archive import`` takes), so their database rows and
links are what the engine writes, but array and file nodes have no repository content (the queries never
read it) and no caching hashes; building 1,000 studies node by node through the ORM takes ~45 min on 2 cores.

The tests import :func:`build_synthetic_studies` to get a graph with a known answer.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BOLTZMANN_EV = 8.617333262e-5
PROFILE = "lifdiff-query-scale"


# ---------------------------------------------------------------------------------------------- graph writer


class _Ref:
    """A node of the pending batch (its pk is known after the flush)."""

    __slots__ = ("index", "uuid")

    def __init__(self, index: int, uuid: str):
        self.index = index
        self.uuid = uuid


class _BulkGraph:
    """Node rows and links collected in memory, written with ``bulk_insert`` in one transaction per flush."""

    def __init__(self):
        from aiida import __version__ as core_version
        from aiida import orm
        from aiida.manage import get_manager

        import aiida_lifdiff

        self.backend = get_manager().get_profile_storage()
        self.user_id = orm.User.collection.get_default().pk
        self.version = {"core": core_version, "plugin": aiida_lifdiff.__version__}
        self.rows: list[dict] = []
        self.links: list[tuple] = []
        self.n_nodes = 0
        self.n_links = 0

    def node(self, cls, attributes: dict, *, label: str = "", process_type=None, computer=None, ctime=None) -> _Ref:
        from aiida.common.utils import get_new_uuid

        ctime = ctime or datetime.datetime.now(datetime.UTC)
        uuid = get_new_uuid()
        self.rows.append(
            {
                "uuid": uuid,
                "node_type": cls.class_node_type,
                "process_type": process_type,
                "label": label,
                "description": "",
                "ctime": ctime,
                "mtime": ctime,
                "user_id": self.user_id,
                "dbcomputer_id": computer,
                "attributes": attributes,
                "extras": {},
                "repository_metadata": {},
            }
        )
        return _Ref(len(self.rows) - 1, uuid)

    def process(
        self, cls, process_type: str, process_label: str, *, exit_status=0, label="", computer=None, ctime=None, **extra
    ) -> _Ref:
        attributes = {
            "process_state": "finished",
            "process_label": process_label,
            "exit_status": exit_status,
            "sealed": True,
            "version": self.version,
            **extra,
        }
        return self.node(cls, attributes, label=label, process_type=process_type, computer=computer, ctime=ctime)

    def link(self, source, target, link_type, label: str) -> None:
        self.links.append((source, target, link_type.value, label))

    def flush(self) -> None:
        from aiida.orm.entities import EntityTypes

        if not self.rows:
            return
        with self.backend.transaction():
            ids = self.backend.bulk_insert(EntityTypes.NODE, self.rows)

            def pk(item):
                return ids[item.index] if isinstance(item, _Ref) else item

            self.backend.bulk_insert(
                EntityTypes.LINK,
                [
                    {"input_id": pk(source), "output_id": pk(target), "type": kind, "label": label}
                    for source, target, kind, label in self.links
                ],
            )
        self.n_nodes += len(self.rows)
        self.n_links += len(self.links)
        self.rows, self.links = [], []


# ---------------------------------------------------------------------------------------------- shared nodes


def _frames(n_frames: int, seed: int):
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator

    from aiida_lifdiff.structures import build_lif_supercell

    rng = np.random.default_rng(seed)
    base = build_lif_supercell(repeat=1)
    frames = []
    for index in range(n_frames):
        atoms = base.copy()
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        atoms.calc = SinglePointCalculator(
            atoms, energy=float(-40.0 + rng.normal(0, 0.1)), forces=rng.normal(0, 0.3, (len(atoms), 3))
        )
        atoms.info["config_type"] = "md" if index % 5 else "rattled"
        frames.append(atoms)
    return frames


#: The models trained in the synthetic database: (kind, dataset frames, source, foundation name or None).
TRAINED = (
    ("mace", 50, "Tosi-Fumi MD 500-900 K, labelled by Tosi-Fumi", "medium-mpa-0"),
    ("mace", 200, "Tosi-Fumi MD 500-900 K, labelled by Tosi-Fumi", "medium-mpa-0"),
    ("mace", 400, "MACE medium-mpa-0 MD 600-1000 K, labelled by Tosi-Fumi", None),
    ("deepmd", 100, "Tosi-Fumi MD 500-900 K, labelled by Tosi-Fumi", None),
    ("deepmd", 400, "MACE medium-mpa-0 MD 600-1000 K, labelled by Tosi-Fumi", None),
)
FOUNDATIONS = ("medium-mpa-0", "small")
SPLIT = {"train": 0.8, "valid": 0.1, "test": 0.1}


def _shared_potentials(prefix: str, computer, code) -> list[dict]:
    """The potentials the studies share, created once per profile (matched by sha256): classical, foundations, trained.

    Returns ``[{node, kind, label, foundation, train_frames, train_source}]`` in a fixed order.
    """
    from aiida import orm
    from aiida.common.links import LinkType

    from aiida_lifdiff.data.dataset import DatasetData
    from aiida_lifdiff.data.potential import PotentialData
    from aiida_lifdiff.workflows.functions.datasets import SPLIT_NAMES

    def stored(content: bytes):
        """The stored potential whose file has this content, or None (no unstored node is left behind)."""
        digest = hashlib.sha256(content).hexdigest()
        qb = orm.QueryBuilder().append(PotentialData, filters={"attributes.sha256": digest}, project="*")
        return qb.first(flat=True)

    from aiida_lifdiff.potentials.classical import tosi_fumi_lif

    classical = stored(json.dumps(tosi_fumi_lif(), sort_keys=True, indent=1).encode())  # as from_classical
    pool = [
        {
            "node": classical or PotentialData.tosi_fumi_lif().store(),
            "kind": "classical",
            "foundation": None,
            "train_frames": None,
            "train_source": None,
        }
    ]
    foundations = {}
    for name in FOUNDATIONS:
        content = f"synthetic MACE foundation {name}".encode()
        node = stored(content)
        if node is None:
            node = PotentialData(io.BytesIO(content), kind="mace", species=["Li", "F"], lineage={"foundation": name})
            node.label = f"MACE {name}"
            node.store()
        foundations[name] = node
        pool.append({"node": node, "kind": "mace", "foundation": name, "train_frames": None, "train_source": None})
    for index, (kind, n_frames, source, foundation) in enumerate(TRAINED):
        content = f"synthetic {kind} model {index} ({prefix})".encode()
        existing = stored(content)
        counts = dict(zip(SPLIT_NAMES, _split_counts(n_frames)))
        if existing is None:
            # The files (dataset, parts, model) are stored through the ORM; the two process nodes and every link
            # go in with bulk_insert, like the studies (the ORM would need unstored process nodes alive while
            # other nodes are stored, which SQLAlchemy warns about).
            graph = _BulkGraph()
            dataset = DatasetData(_frames(n_frames, seed=index), source=source)
            dataset.label = f"{prefix} dataset {index}"
            dataset.store()
            fractions, seed = orm.Dict(SPLIT).store(), orm.Int(1).store()
            split = graph.process(
                orm.CalcFunctionNode,
                "aiida.calculations:lifdiff.split_dataset",
                "split_dataset",
                function_name="split_dataset",
                function_namespace="aiida_lifdiff.workflows.functions.datasets",
            )
            for node, name in ((dataset, "dataset"), (fractions, "fractions"), (seed, "seed")):
                graph.link(node.pk, split, LinkType.INPUT_CALC, name)
            frames = dataset.get_frames()
            parts, start = {}, 0
            for name in SPLIT_NAMES:
                part = DatasetData(frames[start : start + counts[name]], source=source)
                start += counts[name]
                part.base.attributes.set("split", name)
                part.label = f"{dataset.label} [{name}]"
                parts[name] = part.store()
                graph.link(split, part.pk, LinkType.CREATE, name)
            plugin = "lifdiff.mace_train" if kind == "mace" else "lifdiff.deepmd_train"
            process_label = "LifdiffMaceTrainCalculation" if kind == "mace" else "LifdiffDeepmdTrainCalculation"
            training = graph.process(
                orm.CalcJobNode, f"aiida.calculations:{plugin}", process_label, computer=computer.pk
            )
            for name, part in parts.items():
                graph.link(part.pk, training, LinkType.INPUT_CALC, name)
            if foundation:
                graph.link(foundations[foundation].pk, training, LinkType.INPUT_CALC, "foundation")
            graph.link(code.pk, training, LinkType.INPUT_CALC, "code")
            model = PotentialData(io.BytesIO(content), kind=kind, species=["Li", "F"])
            model.label = f"{prefix} {kind} {index}" + (f" (ft {foundation})" if foundation else "")
            model.base.attributes.set("lineage", {"program": plugin, "calculation": training.uuid})
            existing = model.store()
            graph.link(training, existing.pk, LinkType.CREATE, "model")
            graph.flush()
        pool.append(
            {
                "node": existing,
                "kind": kind,
                "foundation": foundation,
                "train_frames": counts["train"],
                "train_source": source,
            }
        )
    for entry in pool:
        entry["label"] = entry["node"].label
    return pool


def _split_counts(n_frames: int) -> list[int]:
    from aiida_lifdiff.datasets import split_indices

    return [len(part) for part in split_indices(n_frames, [SPLIT["train"], SPLIT["valid"], SPLIT["test"]], 1)]


def _get_code(computer, label: str, plugin: str):
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        return orm.load_code(f"{label}@{computer.label}")
    except NotExistent:
        return orm.InstalledCode(
            label=label,
            computer=computer,
            filepath_executable="/usr/bin/true",
            default_calc_job_plugin=plugin,
            description=f"synthetic {plugin} code (query benchmark; never runs)",
        ).store()


# ---------------------------------------------------------------------------------------------- studies


def _settings(index: int) -> dict:
    """The study settings of study ``index`` (a benchmark's studies share those of its first one)."""
    n_temperatures = (5, 5, 4, 6, 3)[index % 5]
    low = 500.0 + 50.0 * (index % 3)
    step = 100.0
    return {
        "temperatures": [low + step * k for k in range(n_temperatures)],
        "seeds": list(range(1, 1 + (3, 3, 2, 3, 1)[(index // 5) % 5])),
        "repeat": (2, 2, 3, 1)[(index // 7) % 4],
        "md": {
            "timestep_fs": 1.0,
            "production_ps": (50.0, 20.0, 100.0)[index % 3],
            "equilibration_ps": 2.0,
            "frame_interval_fs": 50.0,
            "thermo_interval_fs": 100.0,
        },
    }


_STRUCTURES: dict[int, dict] = {}


def _structure_attributes(repeat: int) -> dict:
    """The attributes a StructureData of the LiF supercell has (written out: no unstored node is made)."""
    if repeat not in _STRUCTURES:
        from ase.data import atomic_masses, atomic_numbers

        from aiida_lifdiff.structures import build_lif_supercell

        atoms = build_lif_supercell(repeat=repeat)
        symbols = atoms.get_chemical_symbols()
        kinds = [
            {"name": s, "symbols": [s], "weights": [1.0], "mass": float(atomic_masses[atomic_numbers[s]])}
            for s in sorted(set(symbols), key=symbols.index)
        ]
        _STRUCTURES[repeat] = {
            "cell": atoms.cell.tolist(),
            "pbc1": True,
            "pbc2": True,
            "pbc3": True,
            "kinds": kinds,
            "sites": [{"kind_name": s, "position": p.tolist()} for s, p in zip(symbols, atoms.positions)],
        }
    return _STRUCTURES[repeat]


def _fit(index: int, kind_index: int, temperatures: list[float], n_seeds: int, fail: bool) -> tuple[dict, dict]:
    """The synthetic D(T) (per temperature, both modes) and the Arrhenius record of one study."""
    rng = random.Random(index)
    ea_true = 0.10 + 0.03 * kind_index
    d0 = 2e-3
    ea = round(ea_true + rng.gauss(0.0, 0.01), 6)
    ea_err = round(0.01 + 0.03 * rng.random(), 6)
    points, diffusivities = [], []
    for temperature in temperatures:
        d = d0 * math.exp(-ea / (BOLTZMANN_EV * temperature))
        entry = {"D_cm2_s": d, "D_err_cm2_s": 0.1 * d, "diffusive": not fail, "n_samples": 5 * n_seeds}
        diffusivities.append(
            {
                "temperature_K": temperature,
                "seeds": list(range(n_seeds)),
                "n_replicas": n_seeds,
                "mobile_species": "Li",
                "drift_reference": "F",
                "settings": {"n_blocks": 5, "fit_window": [0.1, 0.6], "modes": ["tracer", "collective"]},
                "collective": {**entry, "diagnosis": "" if not fail else "log-log slope 0.4 outside 0.7-1.3"},
                "tracer": {**entry, "D_cm2_s": d / 30.0, "D_err_cm2_s": d / 300.0, "diagnosis": ""},
            }
        )
        points.append({"temperature_K": temperature, "D_cm2_s": d, "D_err_cm2_s": 0.1 * d, "diffusive": not fail})
    if fail:
        record = {
            "points": points,
            "excluded": [{"temperature_K": t, "reason": "no diffusive regime"} for t in temperatures],
            "fit_ok": False,
            "reason": f"only 0 of {len(temperatures)} temperatures show a diffusive regime, at least 3 are needed",
        }
    else:
        d300 = d0 * math.exp(-ea / (BOLTZMANN_EV * 300.0))
        record = {
            "points": points,
            "excluded": [],
            "fit_ok": True,
            "Ea_eV": ea,
            "Ea_err_eV": ea_err,
            "D0_cm2_s": d0,
            "D0_err_cm2_s": 0.3 * d0,
            "D300_cm2_s": d300,
            "D300_err_cm2_s": 0.5 * d300,
            "chi2_dof": round(0.5 + 2.0 * rng.random(), 4),
            "Ea_err_scaled_eV": ea_err,
            "n_points": len(temperatures),
            "temperatures_K": list(temperatures),
            "D_cm2_s": [p["D_cm2_s"] for p in points],
            "D_err_cm2_s": [p["D_err_cm2_s"] for p in points],
            "covariance": [[1e-4, -2e-4], [-2e-4, 5e-4]],
            "method": "weighted least squares of ln D against 1/kT",
        }
    arrhenius = {"primary_mode": "collective", "units": {"Ea": "eV", "D": "cm^2/s"}, "collective": record}
    arrhenius["tracer"] = dict(record)
    return diffusivities, arrhenius


def _study(graph: _BulkGraph, spec: dict, ctx: dict) -> dict:
    """One DiffusionWorkChain with its whole graph; returns what the results row must say about it."""
    from aiida import orm
    from aiida.common.links import LinkType

    from aiida_lifdiff.data.potential import PotentialData

    index, potential, settings, ctime = spec["index"], spec["potential"], spec["settings"], spec["ctime"]
    computer = ctx["computer_id"]
    node_pk = potential["node"].pk
    fail = index % 23 == 7
    wc = graph.process(
        orm.WorkChainNode,
        "aiida.workflows:lifdiff.diffusion",
        "DiffusionWorkChain",
        label=spec["label"],
        exit_status=421 if fail else 0,
        ctime=ctime,
        stepper_state_info="5:fit",
    )
    graph.link(node_pk, wc, LinkType.INPUT_WORK, "potential")
    temperatures = graph.node(orm.List, {"list": settings["temperatures"]}, ctime=ctime)
    seeds = graph.node(orm.List, {"list": settings["seeds"]}, ctime=ctime)
    md_settings = graph.node(orm.Dict, settings["md"], ctime=ctime)
    analysis = graph.node(
        orm.Dict, {"n_blocks": 5, "fit_window": [0.1, 0.6], "primary_mode": "collective"}, ctime=ctime
    )
    for node, name in ((temperatures, "temperatures"), (seeds, "seeds"), (md_settings, "md_settings")):
        graph.link(node, wc, LinkType.INPUT_WORK, name)
    graph.link(analysis, wc, LinkType.INPUT_WORK, "analysis")
    engine = "runner" if potential["kind"] == "mace" else "lammps"
    code = ctx["runner_code"] if engine == "runner" else ctx["lammps_code"]
    graph.link(code, wc, LinkType.INPUT_WORK, f"md__{'lifdiff_md' if engine == 'runner' else 'lammps'}__code")

    if spec.get("structure") is not None:
        structure = spec["structure"]
        graph.link(structure, wc, LinkType.INPUT_WORK, "structure")
    else:
        structure = _supercell(graph, wc, settings["repeat"], ctime, LinkType.INPUT_WORK, "supercell__")
    graph.link(wc, structure, LinkType.RETURN, "structure")

    members = [
        (t_index, r_index, temperature, seed)
        for t_index, temperature in enumerate(settings["temperatures"])
        for r_index, seed in enumerate(settings["seeds"])
    ]
    n_atoms = len(_structure_attributes(settings["repeat"])["sites"])
    symbols = [site["kind_name"] for site in _structure_attributes(settings["repeat"])["sites"]]
    n_frames = int(settings["md"]["production_ps"] * 1000 / settings["md"]["frame_interval_fs"]) + 1

    def trajectory(calc, name, temperature, seed):
        traj = graph.node(
            orm.TrajectoryData,
            {
                "temperature_K": temperature,
                "timestep_fs": settings["md"]["timestep_fs"],
                "stride": 50,
                "equilibration_ps": 2.0,
                "engine": engine,
                "seed": seed,
                "unwrapped": True,
                "units": {"positions": "angstrom", "times": "ps"},
                "symbols": symbols,
                "array|positions": [n_frames, n_atoms, 3],
                "array|cells": [n_frames, 3, 3],
                "array|steps": [n_frames],
                "array|times": [n_frames],
            },
            ctime=ctime,
        )
        graph.link(calc, traj, LinkType.CREATE, name)
        return traj

    trajectories = {}
    jobs = [[member] for member in members] if engine == "lammps" else [members]
    for job_index, job in enumerate(jobs):
        md = graph.process(orm.WorkChainNode, "aiida.workflows:lifdiff.md", "MdWorkChain", ctime=ctime)
        graph.link(wc, md, LinkType.CALL_WORK, f"md_{job_index}")
        parameters = graph.node(
            orm.Dict,
            {
                "timestep_fs": 1.0,
                "n_steps": int(settings["md"]["production_ps"] * 1000),
                "members": [
                    {"name": f"T{t}_r{r}", "temperature_K": temperature, "seed": seed * 1000 + 17 * t + 1}
                    for t, r, temperature, seed in job
                ],
            },
            ctime=ctime,
        )
        for node, name in ((structure, "structure"), (node_pk, "potential"), (parameters, "parameters")):
            graph.link(node, md, LinkType.INPUT_WORK, name)
        graph.link(code, md, LinkType.INPUT_WORK, f"{'lifdiff_md' if engine == 'runner' else 'lammps'}__code")
        if engine == "lammps":
            prepare = graph.process(
                orm.CalcFunctionNode,
                "aiida.calculations:lifdiff.prepare_lammps_md",
                "prepare_lammps_md",
                ctime=ctime,
                function_name="prepare_lammps_md",
                function_namespace="aiida_lifdiff.workflows.functions.lammps_inputs",
            )
            graph.link(md, prepare, LinkType.CALL_CALC, "prepare_lammps_md")
            for node, name in ((structure, "structure"), (node_pk, "potential"), (parameters, "parameters")):
                graph.link(node, prepare, LinkType.INPUT_CALC, name)
            script = graph.node(orm.SinglefileData, {"filename": "lammps.in"}, ctime=ctime)
            data = graph.node(orm.SinglefileData, {"filename": "structure.data"}, ctime=ctime)
            lammps_settings = graph.node(orm.Dict, {"species_order": ["Li", "F"], "n_frames": n_frames}, ctime=ctime)
            for node, name in ((script, "script"), (data, "data"), (lammps_settings, "settings")):
                graph.link(prepare, node, LinkType.CREATE, name)
            calc = graph.process(
                orm.CalcJobNode,
                "aiida.calculations:lifdiff.lammps",
                "LifdiffLammpsCalculation",
                computer=computer,
                ctime=ctime,
                parser_name="lifdiff.lammps",
                resources={"num_machines": 1, "num_mpiprocs_per_machine": 1},
            )
            inputs = ((code, "code"), (script, "script"), (data, "files__data"), (lammps_settings, "settings"))
            for node, name in inputs:
                graph.link(node, calc, LinkType.INPUT_CALC, name)
        else:
            calc = graph.process(
                orm.CalcJobNode,
                "aiida.calculations:lifdiff.md",
                "LifdiffMdCalculation",
                computer=computer,
                ctime=ctime,
                parser_name="lifdiff.md",
            )
            for node, name in ((code, "code"), (structure, "structure"), (node_pk, "potential")):
                graph.link(node, calc, LinkType.INPUT_CALC, name)
            graph.link(parameters, calc, LinkType.INPUT_CALC, "parameters")
        graph.link(md, calc, LinkType.CALL_CALC, "iteration_01")
        for name, cls, attributes in (
            ("remote_folder", orm.RemoteData, {"remote_path": f"/tmp/synthetic/{index}"}),
            ("retrieved", orm.FolderData, {}),
            ("results", orm.Dict, {"status": "finished", "wall_time_s": 42.0}),
        ):
            output = graph.node(cls, attributes, ctime=ctime)
            graph.link(calc, output, LinkType.CREATE, name)
        for t, r, temperature, seed in job:
            name = f"T{t}_r{r}"
            label = "trajectory" if engine == "lammps" else f"trajectories__{name}"
            traj = trajectory(calc, label, temperature, seed)
            graph.link(md, traj, LinkType.RETURN, f"trajectories__{name}")
            trajectories[(t, r)] = traj

    diffusivities, arrhenius = _fit(index, spec["kind_index"], settings["temperatures"], len(settings["seeds"]), fail)
    analysis_parameters = graph.node(
        orm.Dict, {"n_blocks": 5, "fit_window": [0.1, 0.6], "modes": ["tracer", "collective"]}, ctime=ctime
    )
    fit_inputs = {}
    for t_index, entry in enumerate(diffusivities):
        compute = graph.process(
            orm.CalcFunctionNode,
            "aiida.calculations:lifdiff.compute_diffusivity",
            "compute_diffusivity",
            ctime=ctime,
            function_name="compute_diffusivity",
            function_namespace="aiida_lifdiff.workflows.functions.diffusivity",
        )
        graph.link(wc, compute, LinkType.CALL_CALC, "compute_diffusivity")
        graph.link(analysis_parameters, compute, LinkType.INPUT_CALC, "parameters")
        for r_index in range(len(settings["seeds"])):
            graph.link(trajectories[(t_index, r_index)], compute, LinkType.INPUT_CALC, f"replica_{r_index}")
        diffusivity = graph.node(orm.Dict, entry, ctime=ctime)
        msd = graph.node(orm.ArrayData, {"array|tracer_msd_A2": [200], "array|collective_msd_A2": [200]}, ctime=ctime)
        graph.link(compute, diffusivity, LinkType.CREATE, "diffusivity")
        graph.link(compute, msd, LinkType.CREATE, "msd")
        graph.link(wc, diffusivity, LinkType.RETURN, f"diffusivity__T_{t_index}")
        graph.link(wc, msd, LinkType.RETURN, f"msd__T_{t_index}")
        fit_inputs[f"T_{t_index}"] = diffusivity
    fit = graph.process(
        orm.CalcFunctionNode,
        "aiida.calculations:lifdiff.fit_arrhenius",
        "fit_arrhenius",
        ctime=ctime,
        function_name="fit_arrhenius",
        function_namespace="aiida_lifdiff.workflows.functions.arrhenius",
    )
    graph.link(wc, fit, LinkType.CALL_CALC, "fit_arrhenius")
    fit_parameters = graph.node(orm.Dict, {"primary_mode": "collective", "title": potential["label"]}, ctime=ctime)
    graph.link(fit_parameters, fit, LinkType.INPUT_CALC, "parameters")
    for name, node in fit_inputs.items():
        graph.link(node, fit, LinkType.INPUT_CALC, name)
    result = graph.node(orm.Dict, arrhenius, ctime=ctime)
    graph.link(fit, result, LinkType.CREATE, "arrhenius")
    graph.link(wc, result, LinkType.RETURN, "arrhenius")
    if not fail:
        plot = graph.node(orm.SinglefileData, {"filename": "arrhenius.png"}, ctime=ctime)
        graph.link(fit, plot, LinkType.CREATE, "plot")
        graph.link(wc, plot, LinkType.RETURN, "arrhenius_plot")
    record = arrhenius["collective"]
    assert isinstance(potential["node"], PotentialData)
    return {
        "index": index,
        "label": spec["label"],
        "study_uuid": wc.uuid,
        "arrhenius_uuid": result.uuid,
        "potential_uuid": potential["node"].uuid,
        "potential": potential["label"],
        "kind": potential["kind"],
        "foundation": potential["foundation"],
        "train_frames": potential["train_frames"],
        "train_source": potential["train_source"],
        "n_atoms": n_atoms,
        "repeat": settings["repeat"],
        "temperatures_K": settings["temperatures"],
        "n_seeds": len(settings["seeds"]),
        "production_ps": settings["md"]["production_ps"],
        "timestep_fs": settings["md"]["timestep_fs"],
        "fit_ok": record["fit_ok"],
        "Ea_eV": record.get("Ea_eV"),
        "Ea_err_eV": record.get("Ea_err_eV"),
        "D300_cm2_s": record.get("D300_cm2_s"),
        "exit_status": 421 if fail else 0,
        "benchmark_uuid": spec.get("benchmark_uuid"),
        "ctime": ctime,
        "_wc": wc,
        "_arrhenius": result,
    }


def _supercell(graph: _BulkGraph, caller, repeat: int, ctime, input_link, prefix: str):
    """``create_lif_supercell`` called by ``caller`` (its supercell inputs too); returns the structure."""
    from aiida import orm
    from aiida.common.links import LinkType

    values = (
        (orm.Int, "repeat", repeat),
        (orm.Float, "lattice_constant", 4.03),
        (orm.Str, "interstitial_site", "tetrahedral"),
    )
    builder = graph.process(
        orm.CalcFunctionNode,
        "aiida.calculations:lifdiff.create_lif_supercell",
        "create_lif_supercell",
        ctime=ctime,
        function_name="create_lif_supercell",
        function_namespace="aiida_lifdiff.workflows.functions.structures",
    )
    graph.link(caller, builder, LinkType.CALL_CALC, "create_lif_supercell")
    for cls, name, value in values:
        node = graph.node(cls, {"value": value}, ctime=ctime)
        graph.link(node, caller, input_link, f"{prefix}{name}")
        graph.link(node, builder, LinkType.INPUT_CALC, name)
    structure = graph.node(orm.StructureData, _structure_attributes(repeat), ctime=ctime)
    graph.link(builder, structure, LinkType.CREATE, "result")
    return structure


def _comparison(graph: _BulkGraph, bench, names: list[str], rows: list[dict], ctime) -> None:
    """The ``comparison`` output of a benchmark (the classical potential, when present, is the reference)."""
    from aiida import orm
    from aiida.common.links import LinkType

    reference = next((name for name, row in zip(names, rows) if row["kind"] == "classical"), None)
    reference_row = rows[names.index(reference)] if reference else None
    table = {}
    for name, row in zip(names, rows):
        entry = {"kind": row["kind"], "label": row["potential"], "fit_ok": row["fit_ok"]}
        if row["fit_ok"]:
            entry.update(Ea_eV=row["Ea_eV"], Ea_err_eV=row["Ea_err_eV"], D300_cm2_s=row["D300_cm2_s"])
            if reference_row is not None and reference_row["fit_ok"] and name != reference:
                delta = row["Ea_eV"] - reference_row["Ea_eV"]
                error = math.hypot(row["Ea_err_eV"], reference_row["Ea_err_eV"])
                entry.update(delta_Ea_eV=delta, delta_Ea_err_eV=error, delta_sigma=delta / error)
        else:
            entry["reason"] = "no diffusive regime"
        if row["train_frames"]:
            entry.update(energy_rmse_meV_per_atom=1.5 + 0.1 * len(name), force_rmse_meV_per_A=40.0 + len(name))
        entry["D_T"] = [
            {"temperature_K": t, "D_cm2_s": 2e-3 * math.exp(-(row["Ea_eV"] or 0.2) / (BOLTZMANN_EV * t))}
            for t in row["temperatures_K"]
        ]
        for point in entry["D_T"]:
            point["D_err_cm2_s"] = 0.1 * point["D_cm2_s"]
        table[name] = entry
    content = {"reference": reference, "primary_mode": "collective", "rows": table}
    maker = graph.process(
        orm.CalcFunctionNode, "aiida.calculations:lifdiff.summarize_benchmark", "summarize_benchmark", ctime=ctime
    )
    graph.link(bench, maker, LinkType.CALL_CALC, "comparison")
    for name, row in zip(names, rows):
        arrhenius = row.pop("_arrhenius")
        graph.link(arrhenius, maker, LinkType.INPUT_CALC, f"arrhenius_{name}")
        graph.link(bench, arrhenius, LinkType.RETURN, f"arrhenius__{name}")
    comparison = graph.node(orm.Dict, content, ctime=ctime)
    graph.link(maker, comparison, LinkType.CREATE, "result")
    graph.link(bench, comparison, LinkType.RETURN, "comparison")
    for row in rows:
        row["comparison"] = content


def build_synthetic_studies(
    n_studies: int = 1000,
    prefix: str = "synthetic",
    batch: int = 40,
    benchmark_every: int = 4,
    progress=None,
) -> list[dict]:
    """Fill the loaded profile with ``n_studies`` synthetic DiffusionWorkChains and return the truth per study.

    Study ``i`` uses the potential ``pool[i % len(pool)]`` (classical, two MACE foundations, five trained
    models) and the settings of :func:`_settings`. Every ``benchmark_every``-th block of three consecutive studies
    runs inside a BenchmarkWorkChain (label ``<prefix>-bench-<block>``, studies ``<prefix>-bench-<block>/<name>``,
    sharing one structure and the first study's settings, with a ``comparison`` output in the format the
    BenchmarkWorkChain writes); the others are labelled ``<prefix>-<i>``. Every
    23rd study (``i % 23 == 7``) has no diffusive regime: exit status 421 and no Ea. The studies are 1 minute
    apart, so the newest is the last one. Returns one dict per study with what its results row must say.
    """
    from aiida import orm
    from aiida.common.links import LinkType

    from aiida_lifdiff.codes import ensure_localhost_computer

    computer = ensure_localhost_computer()
    lammps_code = _get_code(computer, "synthetic-lammps", "lifdiff.lammps")
    runner_code = _get_code(computer, "synthetic-lifdiff-md", "lifdiff.md")
    train_code = _get_code(computer, "synthetic-train", "lifdiff.mace_train")
    pool = _shared_potentials(prefix, computer, train_code)
    ctx = {"computer_id": computer.pk, "lammps_code": lammps_code.pk, "runner_code": runner_code.pk}
    graph = _BulkGraph()
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=n_studies + 10)
    truth: list[dict] = []
    index = 0
    block = 0
    while index < n_studies:
        in_benchmark = block % benchmark_every == 0
        size = min(3 if in_benchmark else 1, n_studies - index)
        ctime = start + datetime.timedelta(minutes=index)
        if in_benchmark:
            settings = _settings(index)
            bench_label = f"{prefix}-bench-{block:04d}"
            bench = graph.process(
                orm.WorkChainNode,
                "aiida.workflows:lifdiff.benchmark",
                "BenchmarkWorkChain",
                label=bench_label,
                ctime=ctime,
            )
            structure = _supercell(graph, bench, settings["repeat"], ctime, LinkType.INPUT_WORK, "supercell__")
            graph.link(bench, structure, LinkType.RETURN, "structure")
            names = []
            for offset in range(size):
                i = index + offset
                potential = pool[i % len(pool)]
                name = f"p{i % len(pool)}"
                names.append(name)
                graph.link(potential["node"].pk, bench, LinkType.INPUT_WORK, f"potentials__{name}")
                row = _study(
                    graph,
                    {
                        "index": i,
                        "potential": potential,
                        "kind_index": i % len(pool),
                        "settings": settings,
                        "label": f"{bench_label}/{name}",
                        "ctime": ctime + datetime.timedelta(seconds=offset),
                        "structure": structure,
                        "benchmark_uuid": bench.uuid,
                    },
                    ctx,
                )
                graph.link(bench, row.pop("_wc"), LinkType.CALL_WORK, f"diffusion_{name}")
                truth.append(row)
            _comparison(graph, bench, names, truth[-size:], ctime)
        else:
            i = index
            potential = pool[i % len(pool)]
            row = _study(
                graph,
                {
                    "index": i,
                    "potential": potential,
                    "kind_index": i % len(pool),
                    "settings": _settings(i),
                    "label": f"{prefix}-{i:04d}",
                    "ctime": ctime,
                },
                ctx,
            )
            row.pop("_wc")
            row.pop("_arrhenius")
            truth.append(row)
        index += size
        block += 1
        if len(graph.rows) > batch * 150:
            graph.flush()
            if progress:
                progress(index, graph.n_nodes, graph.n_links)
    graph.flush()
    if progress:
        progress(index, graph.n_nodes, graph.n_links)
    return truth


# ---------------------------------------------------------------------------------------------- the old query


def old_arrhenius_results(potential_kind: str | None = None, label: str | None = None) -> list[dict]:
    """The query before issue 5 (one training-lineage lookup per row), kept here to show the difference."""
    from aiida import orm

    from aiida_lifdiff.data.dataset import DatasetData
    from aiida_lifdiff.data.potential import PotentialData
    from aiida_lifdiff.workflows.diffusion import DiffusionWorkChain

    def training_lineage(potential):
        potential = orm.load_node(potential)
        qb = orm.QueryBuilder()
        qb.append(PotentialData, filters={"uuid": potential.uuid}, tag="model")
        qb.append(orm.CalcJobNode, with_outgoing="model", tag="training", project=["uuid", "attributes.process_label"])
        qb.append(
            orm.Node,
            with_outgoing="training",
            edge_filters={"label": {"in": ["train", "valid", "test", "foundation", "replay"]}},
            edge_project=["label"],
            project=["*"],
        )
        found = qb.all()
        if not found:
            return {}
        info = {"training_uuid": found[0][0], "trainer": found[0][1]}
        for _, _, node, link_label in found:
            if isinstance(node, DatasetData):
                info[f"{link_label}_frames"] = node.n_frames
                if link_label == "train":
                    info["train_source"] = node.source
                    parent = node.creator
                    if parent is not None and "dataset" in parent.inputs:
                        info["dataset_frames"] = parent.inputs.dataset.n_frames
            elif isinstance(node, PotentialData):
                info["foundation"] = node.label
        return info

    qb = orm.QueryBuilder()
    qb.append(DiffusionWorkChain, tag="study", project=["id", "uuid", "label", "ctime", "attributes.exit_status"])
    filters = {"attributes.kind": potential_kind} if potential_kind else {}
    qb.append(
        PotentialData,
        with_outgoing="study",
        tag="potential",
        filters=filters,
        project=["label", "attributes.kind", "uuid"],
    )
    qb.append(orm.Dict, with_incoming="study", edge_filters={"label": "arrhenius"}, project=["attributes", "uuid"])
    if label:
        qb.add_filter("study", {"label": {"like": f"%{label}%"}})
    qb.order_by({"study": {"ctime": "desc"}})
    rows = []
    for pk, uuid, study_label, ctime, exit_status, pot_label, kind, pot_uuid, arrhenius, arr_uuid in qb.all():
        lineage = training_lineage(pot_uuid) if kind != "classical" else {}
        record = arrhenius[arrhenius["primary_mode"]]
        rows.append(
            {
                "pk": pk,
                "study": study_label,
                "potential": pot_label,
                "Ea_eV": record.get("Ea_eV") if record["fit_ok"] else None,
                "train_frames": lineage.get("train_frames"),
                "status": "ok" if exit_status == 0 else f"failed ({exit_status})",
                "created": ctime.isoformat(timespec="seconds"),
                "study_uuid": uuid,
                "arrhenius_uuid": arr_uuid,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------- main


def _timed(function, repeat: int = 3) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), sum(times) / len(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=1000, help="synthetic studies to create (default 1000)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the profile here (reused when it exists)")
    parser.add_argument("--repeat", type=int, default=3, help="timings per query (best and mean are printed)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lifdiff-query-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    aiida_path = workdir / "aiida"
    env = dict(os.environ, AIIDA_PATH=str(aiida_path))
    os.environ["AIIDA_PATH"] = str(aiida_path)  # before aiida is imported
    verdi = Path(sys.executable).with_name("verdi")
    fresh = not (aiida_path / ".aiida" / "config.json").is_file()
    if fresh:
        subprocess.run(
            [str(verdi), "presto", "--profile-name", PROFILE, "--use-zeromq"],
            env=env,
            check=True,
            capture_output=True,
        )

    from aiida import load_profile, orm

    load_profile(PROFILE, allow_switch=True)
    sys.path.insert(0, str(REPO))
    from aiida_lifdiff.queries import arrhenius_results

    diffusion = {"process_type": "aiida.workflows:lifdiff.diffusion"}
    existing = orm.QueryBuilder().append(orm.WorkChainNode, filters=diffusion)
    if existing.count() < args.studies:
        start = time.perf_counter()

        def progress(done, nodes, links):
            rate = nodes / max(time.perf_counter() - start, 1e-9)
            print(f"  {done} studies, {nodes} nodes, {links} links ({rate:.0f} nodes/s)", flush=True)

        print(f"building {args.studies} synthetic studies in {workdir} ...")
        build_synthetic_studies(args.studies, progress=progress)
        print(f"built in {time.perf_counter() - start:.1f} s")
    n_nodes = orm.QueryBuilder().append(orm.Node).count()
    print(f"profile {PROFILE} (AIIDA_PATH={aiida_path}): {existing.count()} DiffusionWorkChains, {n_nodes} nodes")
    print(f"{os.cpu_count()} CPUs; best / mean of {args.repeat} runs\n")

    cases = [
        ("full table", {}),
        ("--kind classical", {"potential_kind": "classical"}),
        ("--label bench", {"label": "bench"}),
        ("--potential 'MACE medium'", {"potential": "MACE medium"}),
        ("--foundation medium-mpa-0", {"foundation": "medium-mpa-0"}),
        ("--train-source 'MACE medium'", {"train_source": "MACE medium"}),
        ("--min-train-frames 100", {"min_train_frames": 100}),
        ("--atoms 65", {"atoms": 65}),
        ("--min-temperatures 5", {"min_temperatures": 5}),
        (
            "--kind mace --atoms 217 --min-temperatures 5",
            {"potential_kind": "mace", "atoms": 217, "min_temperatures": 5},
        ),
    ]
    print(f"{'arrhenius_results(...)':48s} {'rows':>6s} {'best (s)':>9s} {'mean (s)':>9s}")
    for name, kwargs in cases:
        best, mean, rows = _timed(lambda kwargs=kwargs: arrhenius_results(**kwargs), args.repeat)
        print(f"{name:48s} {len(rows):6d} {best:9.3f} {mean:9.3f}")
    best, mean, rows = _timed(old_arrhenius_results, 1)
    print(f"{'before (one lineage query per row), full':48s} {len(rows):6d} {best:9.3f} {mean:9.3f}")

    from click.testing import CliRunner

    from aiida_lifdiff.cli.main import cli

    for fmt in ("table", "csv", "json", "latex"):
        best, mean, result = _timed(
            lambda fmt=fmt: CliRunner().invoke(cli, ["-p", PROFILE, "results", "--format", fmt]), args.repeat
        )
        assert result.exit_code == 0, result.output
        print(f"{'CLI in-process results --format ' + fmt:48s} {'':6s} {best:9.3f} {mean:9.3f}")
    executable = Path(sys.executable).with_name("aiida-lifdiff")
    for arguments in (["results"], ["results", "--format", "json"], ["results", "--kind", "classical"]):
        start = time.perf_counter()
        done = subprocess.run(
            [str(executable), "-p", PROFILE, *arguments], env=env, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - start
        assert done.returncode == 0, done.stderr
        print(f"{'$ aiida-lifdiff ' + ' '.join(arguments):48s} {'':6s} {wall:9.3f}  (whole process)")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
