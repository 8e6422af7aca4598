"""What a study will run and roughly what it costs: the plan ``aiida-lifdiff submit --dry-run`` prints.

Counts (MD runs, steps, calculations, training jobs) follow from the study file exactly; hours are estimates
from the throughput figures in ``protocols/throughput.yaml`` (or a file given by the user), each labelled
``measured`` or ``assumed`` so that nobody mistakes a placeholder for a measurement. No AiiDA database is needed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from aiida_lifdiff.protocols import get_protocol_inputs, load_protocols
from aiida_lifdiff.study import GENERATED, Study

__all__ = ["load_throughput", "study_plan", "format_plan"]

#: Atoms per conventional LiF cube (4 Li + 4 F); the study adds one interstitial Li.
ATOMS_PER_CUBE = 8


def load_throughput(path: str | Path | None = None) -> dict:
    """The throughput figures: the package's ``protocols/throughput.yaml``, or a file with the same layout."""
    if path is None:
        return load_protocols("throughput")
    return yaml.safe_load(Path(path).read_text())


def _mace_class(flags: dict) -> str:
    """``mace-medium`` for MPA-0-sized architectures (128 channels or more), else ``mace-small``."""
    channels = str(flags.get("hidden_irreps", "128x0e")).split("x")[0]
    return "mace-medium" if channels.isdigit() and int(channels) >= 128 else "mace-small"


def _model_class(study: Study, name: str, spec: dict, training: dict) -> str:
    if spec["kind"] in ("classical", "deepmd", "universal"):
        return spec["kind"]
    if "foundation" in spec or "path" in spec:
        # Foundation files and user files are taken as MPA-0-sized: the conservative (slower) figure.
        return "mace-medium"
    source = spec["train"].get("finetune_from")
    if source:
        return _model_class(study, source, study.potentials[source], training)
    return _mace_class({**training["mace"]["flags"], **(spec["train"].get("flags") or {})})


def _md_device(kind: str, md_settings: dict) -> str:
    if kind == "classical":
        return "cpu"
    return "cuda" if str(md_settings.get("device", "cpu")).startswith("cuda") else "cpu"


def _figure(throughput: dict, section: str, device: str, model_class: str, key: str) -> tuple[float, dict]:
    entry = throughput.get(section, {}).get(device, {}).get(model_class)
    if not entry or key not in entry:
        raise KeyError(f"no {section} throughput figure for {model_class} on {device} ({key})")
    return float(entry[key]), {"section": section, "device": device, "model": model_class, **entry}


def _steps(md_settings: dict) -> int:
    return int(
        round(
            (md_settings.get("equilibration_ps", 0.0) + md_settings["production_ps"])
            * 1000.0
            / md_settings["timestep_fs"]
        )
    )


def _sampled_frames(data: dict) -> int:
    """Frames one sampling run yields: snapshots every frame interval, plus the rattled and strained copies."""
    md, sampling = data["md_settings"], data["sampling"]
    snapshots = int(md["production_ps"] * 1000.0 / md["frame_interval_fs"])
    snapshots = max(0, (snapshots - int(sampling.get("skip", 0))) // int(sampling.get("every", 1)))
    if sampling.get("max_frames_per_trajectory"):
        snapshots = min(snapshots, int(sampling["max_frames_per_trajectory"]))
    extra = float(sampling.get("rattle_fraction", 0.0)) + float(sampling.get("strain_fraction", 0.0))
    return snapshots + int(round(snapshots * extra))


def study_plan(study: Study, throughput: dict | None = None, dataset_frames: dict[str, int] | None = None) -> dict:
    """The runs, steps, jobs and estimated hours of ``study``.

    ``dataset_frames`` gives the frame counts of the study's imported datasets when they could be read (a dry
    run reads them); without it, a training on "all of" a dataset is counted with an unknown size.
    """
    throughput = throughput or load_throughput()
    dataset_frames = dict(dataset_frames or {})
    inputs = study.inputs
    repeat = int(inputs["supercell"]["repeat"])
    atoms = ATOMS_PER_CUBE * repeat**3 + 1
    md = inputs["md_settings"]
    temperatures, seeds = inputs["temperatures_K"], inputs["seeds"]
    runs_per_potential = len(temperatures) * len(seeds)
    steps = _steps(md)
    training = get_protocol_inputs(
        "training", study.training.get("protocol"), {"data": study.training.get("data") or {}}
    )
    potentials = study.potentials or {"potential": study.potential}
    used: dict[tuple, dict] = {}
    hours = {"cuda": 0.0, "cpu": 0.0}

    def cost(section: str, device: str, model: str, key: str, amount: float) -> float:
        rate, basis = _figure(throughput, section, device, model, key)
        used[(section, device, model)] = basis
        value = amount / rate / 3600.0 if key == "atom_steps_per_s" else amount * rate / 3600.0
        hours[device] += value
        return value

    plan: dict[str, Any] = {
        "study": study.name,
        "kind": "benchmark" if study.potentials else "diffusion",
        "reference": study.reference,
        "cell_atoms": atoms,
        "temperatures_K": list(temperatures),
        "seeds": list(seeds),
        "steps_per_run": steps,
        "timestep_fs": md["timestep_fs"],
        "production_ps": md["production_ps"],
        "potentials": [],
        "md": [],
        "data_generation": None,
        "training": [],
        "evaluation": None,
    }
    for name, spec in potentials.items():
        model = _model_class(study, name, spec, training)
        device = _md_device(spec["kind"], md)
        engine = "lifdiff-md" if spec["kind"] in ("mace", "universal") else "LAMMPS"
        source = (
            f"foundation {spec['foundation']}"
            if "foundation" in spec
            else spec.get("path") or spec.get("model") or ("trained in the study" if "train" in spec else "built-in")
        )
        plan["potentials"].append({"name": name, "kind": spec["kind"], "model": model, "source": source})
        if spec.get("md") is False:
            continue  # static only: lattice, barriers and evaluation (seconds to an hour of CPU), no MD
        members = int(md.get("members_per_job") or 1) if engine == "lifdiff-md" else 1
        atom_steps = runs_per_potential * steps * atoms
        plan["md"].append(
            {
                "potential": name,
                "engine": engine,
                "device": device,
                "runs": runs_per_potential,
                "calculations": math.ceil(runs_per_potential / members),
                "steps": runs_per_potential * steps,
                "atom_steps": atom_steps,
                "hours": cost("md", device, model, "atom_steps_per_s", atom_steps),
            }
        )

    generated_frames = None
    if study.generates_data:
        data = training["data"]
        iterations = int(study.training.get("iterations", 1))
        sampler = study.training["sampler"]
        sampler_spec = potentials[sampler]
        runs = iterations * len(data["temperatures_K"])
        sampling_steps = _steps(data["md_settings"])
        generated_frames = runs * _sampled_frames(data)
        if study.training.get("initial_data") in dataset_frames:
            generated_frames += dataset_frames[study.training["initial_data"]]
        sampler_model = _model_class(study, sampler, sampler_spec, training)
        device = _md_device(sampler_spec["kind"], md)
        labeller = potentials[study.training["labeller"]]
        labeller_model = _model_class(study, study.training["labeller"], labeller, training)
        label_device = _md_device(labeller["kind"], md)
        entry = {
            "sampler": sampler,
            "labeller": study.training["labeller"],
            "iterations": iterations,
            "sampling_runs": runs,
            "sampling_steps": runs * sampling_steps,
            "frames": generated_frames,
            "hours": cost("md", device, sampler_model, "atom_steps_per_s", runs * sampling_steps * atoms)
            + cost("md", label_device, labeller_model, "atom_steps_per_s", generated_frames * atoms),
        }
        if iterations > 1:
            # The sampler is re-fine-tuned after every round but the last, on all frames so far.
            epochs = int({**training["mace"]["flags"], **training["mace"].get("finetune_flags", {})}["max_num_epochs"])
            per_round = generated_frames / iterations
            frames_seen = sum(per_round * (k + 1) for k in range(iterations - 1))
            train_device = "cuda" if training["mace"]["flags"].get("device") == "cuda" else "cpu"
            entry["finetune_jobs"] = iterations - 1
            entry["hours"] += cost(
                "training", train_device, sampler_model, "seconds_per_frame_epoch", frames_seen * 0.8 * epochs
            )
        plan["data_generation"] = entry

    held_out = {}
    if study.evaluation:
        if "path" in study.evaluation:
            frames = dataset_frames.get("evaluation")
            where = study.evaluation["path"]
        else:
            frames = int(study.evaluation["frames"])
            where = f"held out of {study.evaluation['data']!r}"
            held_out[study.evaluation["data"]] = frames
        plan["evaluation"] = {"frames": frames, "dataset": where, "single_points": (frames or 0) * len(potentials)}

    for name, spec in potentials.items():
        if "train" not in spec:
            continue
        train = spec["train"]
        data = train.get("data")
        available = generated_frames if data == GENERATED else dataset_frames.get(data)
        if available is not None:
            available -= held_out.get(data, 0)
        frames = train.get("frames") or available
        split = train.get("split") or training[spec["kind"]]["split"]
        model = _model_class(study, name, spec, training)
        entry = {"name": name, "kind": spec["kind"], "data": data, "frames": frames}
        if spec["kind"] == "mace":
            flags = {**training["mace"]["flags"]}
            if train.get("finetune_from"):
                flags.update(training["mace"].get("finetune_flags", {}))
                entry["finetune_from"] = train["finetune_from"]
            flags.update(train.get("flags") or {})
            device = "cuda" if flags.get("device") == "cuda" else "cpu"
            entry.update(epochs=int(flags["max_num_epochs"]), device=device)
            entry["hours"] = (
                cost("training", device, model, "seconds_per_frame_epoch", frames * split["train"] * entry["epochs"])
                if frames
                else None
            )
        else:
            settings = {**training["deepmd"]["settings"], **(train.get("settings") or {})}
            device = "cuda" if _md_device("deepmd", md) == "cuda" else "cpu"
            entry.update(steps=int(settings["numb_steps"]), device=device)
            entry["hours"] = cost("training", device, "deepmd", "seconds_per_step", entry["steps"])
        plan["training"].append(entry)

    plan["totals"] = {
        "md_runs": sum(item["runs"] for item in plan["md"]),
        "md_steps": sum(item["steps"] for item in plan["md"]),
        "md_calculations": sum(item["calculations"] for item in plan["md"]),
        "training_jobs": len(plan["training"]) + (plan["data_generation"] or {}).get("finetune_jobs", 0),
        "gpu_hours": hours["cuda"],
        "cpu_hours": hours["cpu"],
    }
    plan["figures"] = [dict(basis) for basis in used.values()]
    plan["estimate_is_assumed"] = any(basis.get("status") != "measured" for basis in used.values())
    return plan


def _hours(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:,.1f} h" if value >= 0.1 else f"{value * 60:,.1f} min"


def format_plan(plan: dict) -> str:
    """The plan as text for the terminal."""
    lines = [
        f"study {plan['study']} ({plan['kind']}): {plan['cell_atoms']}-atom cell, "
        f"{len(plan['temperatures_K'])} temperatures {plan['temperatures_K']} K x {len(plan['seeds'])} seeds, "
        f"{plan['steps_per_run']:,} steps per run "
        f"({plan['production_ps']:g} ps production at {plan['timestep_fs']:g} fs)",
        "",
        "potentials:",
    ]
    for item in plan["potentials"]:
        marker = " (reference)" if item["name"] == plan.get("reference") else ""
        lines.append(f"  {item['name']}{marker}: {item['kind']} [{item['model']}], {item['source']}")
    lines += ["", "diffusion MD:"]
    for item in plan["md"]:
        lines.append(
            f"  {item['potential']}: {item['runs']} runs in {item['calculations']} {item['engine']} calculation(s) on "
            f"{item['device']}, {item['steps']:,} steps, {item['atom_steps']:.3g} atom-steps, {_hours(item['hours'])}"
        )
    generation = plan.get("data_generation")
    if generation:
        lines += [
            "",
            f"training data ('generated'): {generation['iterations']} round(s) of sampling with {generation['sampler']}"
            f" ({generation['sampling_runs']} MD runs, {generation['sampling_steps']:,} steps), "
            f"~{generation['frames']} frames labelled by {generation['labeller']}"
            + (
                f", {generation['finetune_jobs']} fine-tuning job(s) between rounds"
                if generation.get("finetune_jobs")
                else ""
            )
            + f": {_hours(generation['hours'])}",
        ]
    if plan["training"]:
        lines += ["", "training jobs:"]
        for item in plan["training"]:
            what = f"{item['epochs']} epochs" if item["kind"] == "mace" else f"{item['steps']:,} steps"
            origin = f"fine-tuned from {item['finetune_from']}" if item.get("finetune_from") else "from scratch"
            frames = "?" if item["frames"] is None else item["frames"]
            lines.append(
                f"  {item['name']}: {item['kind']} {origin} on {frames} frames of {item['data']!r}, {what} on "
                f"{item['device']}: {_hours(item['hours'])}"
            )
    if plan.get("evaluation"):
        item = plan["evaluation"]
        lines += [
            "",
            f"evaluation set: {item['frames']} frames ({item['dataset']}), {item['single_points']} single points",
        ]
    totals = plan["totals"]
    lines += [
        "",
        f"total: {totals['md_runs']} MD runs, {totals['md_steps']:,} MD steps in {totals['md_calculations']} "
        f"calculations, {totals['training_jobs']} training job(s)",
        f"estimate: {totals['gpu_hours']:,.1f} GPU-hours and {totals['cpu_hours']:,.1f} CPU-core-hours",
    ]
    lines.append("figures used (atom-steps/s for MD; s per frame-epoch or per step for training):")
    for basis in plan["figures"]:
        rate = basis.get("atom_steps_per_s") or basis.get("seconds_per_frame_epoch") or basis.get("seconds_per_step")
        lines.append(
            f"  {basis['section']} {basis['model']} on {basis['device']}: {rate:g} [{basis['status']}] {basis['basis']}"
        )
    if plan["estimate_is_assumed"]:
        lines.append(
            "NOTE: some figures are assumed, not measured. Measure them with benchmarks/md_throughput.py on your GPU "
            "node and pass a YAML file laid out like aiida_lifdiff/protocols/throughput.yaml with --throughput FILE."
        )
    return "\n".join(lines)
