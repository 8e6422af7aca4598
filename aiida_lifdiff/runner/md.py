"""``lifdiff-md``: NVT molecular dynamics for a batch of (structure, temperature, seed) members.

Runs on a compute node (no AiiDA): ``lifdiff-md input.json [--output-dir DIR]``, or
``python -m aiida_lifdiff.runner.md input.json``.

Input (JSON; relative paths are relative to the input file's folder; unknown keys are refused)::

    {"model": {"kind": "mace", "path": "model.model", "head": null}
            | {"kind": "ase", "factory": "package.module:function", "kwargs": {...}},
     "device": "cpu" | "cuda" | "cuda:N",          default "cpu"
     "dtype": "float32" | "float64",               default "float64" (MACE weights; the
                                                   integrator itself is always float64)
     "timestep_fs": 1.0, "n_steps": 1000,          required; production steps
     "equilibration_steps": 100,                   default 0; no output during these
     "dump_stride": 10, "thermo_stride": 10,       default 10 each
     "thermostat": {"kind": "csvr", "tau_fs": 100.0},
     "checkpoint_stride": 500,                     default null: checkpoint only at the end / stop
     "timeout_s": null,                            wall seconds of MD (counted once the model is
                                                   loaded), then stop cleanly: start-up must fit in
                                                   the margin left before the scheduler walltime
     "batch_size": null,                           members per model call (null: all)
     "neighbor_skin_A": 1.0,                       Verlet skin of the MACE neighbour lists
     "limits": {"max_force_eV_A": 100.0, "max_temperature_ratio": 5.0},
     "restart": "checkpoint.npz",                  optional: continue from a checkpoint
     "members": [{"name": "T600_s1", "structure": "T600_s1.extxyz",
                  "temperature_K": 600.0, "seed": 1}, ...]}

``model.path`` may also be a MACE foundation name (``medium-mpa-0``, ``small``, ...) when
that model is already in mace-torch's cache; nothing is downloaded. ``model.kwargs`` of an
ASE factory are passed unchanged (paths in them are relative to the working directory),
e.g. ``{"kind": "ase", "factory": "aiida_lifdiff.potentials.deepmd:deepmd_calculator",
"kwargs": {"path": "graph.pb"}}``. The ASE path integrates on the CPU whatever ``device``
says (the calculator decides where it computes) and evaluates members one by one.

Dynamics: velocity Verlet + CSVR (:mod:`aiida_lifdiff.runner.integrator`), per-member target
temperature and seed; Maxwell-Boltzmann initial velocities from the seed with zero total
momentum; ``equilibration_steps`` without output, then production steps numbered 0 ...
``n_steps``. Step 0 (the state after equilibration) is written; frames at multiples of
``dump_stride``, thermo rows at multiples of ``thermo_stride``.

Outputs (in ``--output-dir``, default the current folder):

- ``<member>/trajectory.npz``: ``positions`` (n_frames, n_atoms, 3) unwrapped Cartesian A,
  ``steps``, ``times_ps``, ``cell`` (3, 3), ``symbols``, and 0-d attributes
  ``temperature_K``, ``timestep_fs``, ``stride``, ``equilibration_ps``, ``engine``
  (``lifdiff-md/mace`` or ``lifdiff-md/ase``), ``seed``, ``name``, ``thermo_stride``,
  ``n_steps``, ``model_sha256``.
- ``<member>/thermo.dat``: ``# step time_ps temp_K pe_eV etotal_eV press_bar econserve_eV``
  (pressure includes the kinetic part, NaN when the model gives no stress; econserve =
  E_total minus the energy the thermostat added, the quantity CSVR conserves).
- ``<member>/status.json``: ``{"status": "running"|"ok"|"failed"|"timeout", "reason",
  "last_step", "n_frames"}``; ``last_step`` is the step of the member's latest state
  (negative during equilibration; ``-equilibration_steps`` if it never moved).
- ``summary.json``: ``exit_code``, ``message``, members with status/reason/mean
  temperature, throughput (atom-steps/s), device, dtype, model (path, sha256), versions.
  Written for every exit code except 1.
- ``checkpoint.npz``: every ``checkpoint_stride`` production steps, at a stop and at the
  end: every member's unwrapped positions, velocities (ASE units), image offsets,
  thermostat generator state and energy, status and step. With ``"restart"`` the run
  continues to the SAME ``n_steps`` (a larger ``n_steps`` extends finished members), writing
  only steps after the checkpoint's (see :mod:`aiida_lifdiff.runner.io` for the segment
  layout).

Exit codes (the AiiDA parser maps them):

- 0: every member finished.
- 1: unexpected internal error (traceback on stderr; no summary.json).
- 2: bad input (JSON, schema, missing/unreadable structure, model file, species not
  covered by the model, checkpoint that does not match the input); nothing was run.
  A bad command line also exits 2 (argparse's usage message, no summary.json).
- 3: CUDA requested but ``torch.cuda.is_available()`` is False; nothing was run.
- 4: at least one member failed (non-finite or exploding energy/forces/temperature, or
  its calculator raised); it was stopped with its reason in its status.json, the others
  ran to the end.
- 5: stopped early on ``timeout_s`` or SIGTERM; checkpoint written, partial trajectories
  valid, continue with ``"restart"``. Takes precedence over 4.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aiida_lifdiff.runner.io import (
    CHECKPOINT_FILE,
    CHECKPOINT_VERSION,
    SUMMARY_FILE,
    InputError,
    MemberOutput,
    MemberSpec,
    RunConfig,
    load_input,
    read_checkpoint,
    read_structure,
    write_checkpoint,
    write_json_atomic,
)

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_NO_CUDA = 3
EXIT_MEMBERS_FAILED = 4
EXIT_STOPPED = 5

_RESUMABLE = ("running", "timeout")


@dataclass(eq=False)
class MemberRecord:
    """What the runner knows about one member across batches, checkpoints and segments."""

    spec: MemberSpec
    symbols: list[str]
    status: str = "pending"
    reason: str | None = None
    step: int | None = None  # step of ``state``
    state: dict[str, np.ndarray] | None = None
    rng_state: dict | None = None
    thermostat_energy: float = 0.0
    temp_sum: float = 0.0
    temp_count: int = 0
    n_frames: int = 0
    touched: bool = False  # its folder was (re)written by this invocation

    @property
    def n_atoms(self) -> int:
        return len(self.symbols)


class _Stop(Exception):
    """Raised inside the step loop when the wall-time budget or a SIGTERM ends the run."""


class Runner:
    """Runs the members of a validated input batch by batch and writes every output file."""

    def __init__(
        self,
        config: RunConfig,
        model: Any,
        structures: Sequence[Any],
        output_dir: Path,
        checkpoint: tuple[dict, dict[str, np.ndarray]] | None = None,
        started: float | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.structures = list(structures)
        self.output_dir = output_dir
        self.started = time.monotonic() if started is None else started
        self.records = [
            MemberRecord(spec=spec, symbols=atoms.get_chemical_symbols())
            for spec, atoms in zip(config.members, structures)
        ]
        self.resumed: set[int] = set()
        if checkpoint is not None:
            self._adopt_checkpoint(*checkpoint)
        self.stop_reason: str | None = None
        self.atom_steps = 0
        self.md_wall = 0.0
        self.timings = {"neighbour_s": 0.0, "model_s": 0.0, "rebuilds": 0}
        self._first_evaluator: Any = None

    # -- checkpoints ---------------------------------------------------------------------
    def _adopt_checkpoint(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        config = self.config
        problems = []
        for key, mine in (
            ("timestep_fs", config.timestep_fs),
            ("equilibration_steps", config.equilibration_steps),
            ("thermostat_tau_fs", config.thermostat_tau_fs),
        ):
            if meta.get(key) != mine:
                problems.append(f"{key}: checkpoint {meta.get(key)!r}, input {mine!r}")
        if meta.get("model") != _model_identity(self.model):
            problems.append(f"model: checkpoint {meta.get('model')!r}, input {_model_identity(self.model)!r}")
        saved = meta.get("members", [])
        if [m.get("name") for m in saved] != [r.spec.name for r in self.records]:
            problems.append(
                f"members: checkpoint {[m.get('name') for m in saved]}, input {[r.spec.name for r in self.records]}"
            )
        else:
            for record, item in zip(self.records, saved):
                for key, mine in (
                    ("temperature_K", record.spec.temperature_K),
                    ("seed", record.spec.seed),
                    ("symbols", record.symbols),
                ):
                    if item.get(key) != mine:
                        problems.append(f"member {record.spec.name} {key} differs from the checkpoint")
        if problems:
            raise InputError("the restart checkpoint does not belong to this input: " + "; ".join(problems))
        for index, (record, item) in enumerate(zip(self.records, saved)):
            record.status = item["status"]
            record.reason = item.get("reason")
            record.step = item.get("step")
            record.rng_state = item.get("rng_state")
            record.thermostat_energy = float(item.get("thermostat_energy_eV", 0.0))
            name = record.spec.name
            if f"{name}.positions" in arrays:
                record.state = {
                    key: np.asarray(arrays[f"{name}.{key}"]) for key in ("positions", "velocities", "images")
                }
            if record.status == "ok" and record.step is not None and record.step < config.n_steps:
                record.status = "timeout"  # a larger n_steps extends a finished member
            if record.status in _RESUMABLE:
                if record.state is None or record.step is None or record.rng_state is None:
                    record.status, record.step = "pending", None
                elif record.step > config.n_steps:
                    raise InputError(
                        f"member {name}: checkpoint is at step {record.step}, beyond n_steps={config.n_steps}"
                    )
                else:
                    self.resumed.add(index)

    def _write_checkpoint(self) -> None:
        members, arrays = [], {}
        for record in self.records:
            members.append(
                {
                    "name": record.spec.name,
                    "temperature_K": record.spec.temperature_K,
                    "seed": record.spec.seed,
                    "symbols": record.symbols,
                    "status": record.status,
                    "reason": record.reason,
                    "step": record.step,
                    "rng_state": record.rng_state,
                    "thermostat_energy_eV": record.thermostat_energy,
                }
            )
            if record.state is not None:
                for key, value in record.state.items():
                    arrays[f"{record.spec.name}.{key}"] = value
        meta = {
            "version": CHECKPOINT_VERSION,
            "timestep_fs": self.config.timestep_fs,
            "equilibration_steps": self.config.equilibration_steps,
            "thermostat_tau_fs": self.config.thermostat_tau_fs,
            "n_steps": self.config.n_steps,
            "model": _model_identity(self.model),
            "members": members,
        }
        write_checkpoint(self.output_dir / CHECKPOINT_FILE, meta, arrays)

    # -- the run -------------------------------------------------------------------------
    def prepare(self) -> None:
        """Everything that can refuse the input before MD: builds the first batch's evaluator."""
        batches = self._batches()
        if batches:
            self._first_evaluator = self.model.evaluator([self.structures[i] for i in batches[0]])

    def _batches(self) -> list[list[int]]:
        """Members still to run, grouped by their start step, chunked by ``batch_size``."""
        groups: dict[int, list[int]] = {}
        for index, record in enumerate(self.records):
            if record.status == "pending":
                groups.setdefault(-self.config.equilibration_steps, []).append(index)
            elif index in self.resumed:
                groups.setdefault(int(record.step), []).append(index)
        size = self.config.batch_size
        batches = []
        for _, indices in sorted(groups.items(), key=lambda item: -item[0]):
            chunk = size or len(indices)
            batches += [indices[i : i + chunk] for i in range(0, len(indices), chunk)]
        return batches

    def _out_of_time(self) -> bool:
        if self.stop_reason is None and self.config.timeout_s is not None:
            if time.monotonic() - self.started > self.config.timeout_s:
                self.stop_reason = f"timeout_s={self.config.timeout_s:g} reached"
        return self.stop_reason is not None

    def run(self) -> int:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        previous = _install_sigterm(self)
        try:
            batches = self._batches()
            for number, indices in enumerate(batches):
                if self._out_of_time():
                    break
                print(
                    f"lifdiff-md: batch {number + 1}/{len(batches)}: "
                    f"{', '.join(self.records[i].spec.name for i in indices)}",
                    flush=True,
                )
                try:
                    self._run_batch(indices)
                except _Stop:
                    break
        finally:
            _restore_sigterm(previous)
        if self.stop_reason is not None:
            for record in self.records:
                if record.status in ("pending", "running"):
                    record.status = "timeout"
                    record.reason = f"{self.stop_reason} before this member finished; continue with 'restart'"
        self._write_untouched_members()
        self._write_checkpoint()
        return self._finish()

    def _write_untouched_members(self) -> None:
        """Members not run in this invocation still get a folder with a status (and empty segment)."""
        for record in self.records:
            if record.touched:
                continue
            # In place, the earlier segment's files are kept up to the checkpoint step.
            output = self._member_output(record, resume_after=record.step)
            output.flush()
            record.n_frames = len(output.steps)
            output.write_status(record.status, record.reason, self._last_step(record))
            output.close()

    def _last_step(self, record: MemberRecord) -> int:
        return int(record.step) if record.step is not None else -self.config.equilibration_steps

    def _member_output(self, record: MemberRecord, resume_after: int | None) -> MemberOutput:
        config = self.config
        atoms = self.structures[self.records.index(record)]
        attributes = {
            "temperature_K": record.spec.temperature_K,
            "timestep_fs": config.timestep_fs,
            "stride": config.dump_stride,
            "thermo_stride": config.thermo_stride,
            "equilibration_ps": config.equilibration_steps * config.timestep_fs * 1e-3,
            "engine": config.engine,
            "seed": record.spec.seed,
            "name": record.spec.name,
            "n_steps": config.n_steps,
            "model_sha256": self.model.sha256 or "",
        }
        return MemberOutput(
            self.output_dir / record.spec.name,
            name=record.spec.name,
            symbols=record.symbols,
            cell=np.asarray(atoms.cell),
            attributes=attributes,
            timestep_fs=config.timestep_fs,
            resume_after=resume_after,
        )

    def _run_batch(self, indices: list[int]) -> None:
        from aiida_lifdiff.runner.integrator import BatchedNVT

        config = self.config
        records = [self.records[i] for i in indices]
        atoms_list = [self.structures[i] for i in indices]
        if self._first_evaluator is not None:
            evaluator, self._first_evaluator = self._first_evaluator, None
        else:
            evaluator = self.model.evaluator(atoms_list)
        rngs = []
        for index, record in zip(indices, records):
            rng = np.random.Generator(np.random.PCG64(record.spec.seed))
            if index in self.resumed:
                rng.bit_generator.state = record.rng_state
            rngs.append(rng)
        nvt = BatchedNVT(
            evaluator,
            atoms_list,
            [r.spec.temperature_K for r in records],
            rngs,
            config.timestep_fs,
            config.thermostat_tau_fs,
            device=self.model.device,
        )
        resumed = indices[0] in self.resumed
        step = int(records[0].step) if resumed else -config.equilibration_steps
        outputs = []
        for k, record in enumerate(records):
            if resumed:
                nvt.set_member_state(k, record.state["positions"], record.state["velocities"])
                nvt.thermostat_energy[k] = record.thermostat_energy
            else:
                nvt.initialise_velocities(k)
            output = self._member_output(record, resume_after=step if resumed else None)
            record.status, record.reason, record.step = "running", None, step
            record.touched = True
            output.write_status("running", None, step)
            outputs.append(output)

        tick = time.perf_counter()
        try:
            errors = nvt.compute(compute_stress=self._stress_at(step))
            self._check(nvt, records, outputs, step, errors)
            if not resumed:
                self._output(nvt, records, outputs, step)
            while step < config.n_steps and nvt.active.any():
                errors = nvt.step(compute_stress=self._stress_at(step + 1))
                step += 1
                self.atom_steps += int(nvt.n_atoms[nvt.active].sum())
                self._check(nvt, records, outputs, step, errors)
                self._output(nvt, records, outputs, step)
                if config.checkpoint_stride and step > 0 and step % config.checkpoint_stride == 0:
                    self._save_batch(nvt, records, outputs, step)
                    self._write_checkpoint()
                    print(f"lifdiff-md: step {step}/{config.n_steps}, checkpoint written", flush=True)
                if self._out_of_time() and step < config.n_steps:
                    self._save_batch(nvt, records, outputs, step)
                    for k, (record, output) in enumerate(zip(records, outputs)):
                        if nvt.active[k]:
                            record.status = "timeout"
                            record.reason = f"{self.stop_reason} at step {step}; continue with 'restart'"
                            output.write_status(record.status, record.reason, step)
                    raise _Stop
            self._save_batch(nvt, records, outputs, step)
            for k, (record, output) in enumerate(zip(records, outputs)):
                if nvt.active[k]:
                    record.status, record.reason = "ok", None
                    output.write_status("ok", None, step)
        finally:
            self.md_wall += time.perf_counter() - tick
            for key in self.timings:
                self.timings[key] += evaluator.timings.get(key, 0)
            for output in outputs:
                output.close()

    def _stress_at(self, step: int) -> bool:
        return step >= 0 and step % self.config.thermo_stride == 0

    def _save_batch(self, nvt: Any, records: list[MemberRecord], outputs: list[MemberOutput], step: int) -> None:
        """Copy the running members' state into their records and flush their files."""
        for k, (record, output) in enumerate(zip(records, outputs)):
            if nvt.active[k]:
                record.state = nvt.member_state(k)
                record.step = step
                record.rng_state = nvt.rngs[k].bit_generator.state
                record.thermostat_energy = float(nvt.thermostat_energy[k])
            output.flush()
            record.n_frames = len(output.steps)

    def _check(
        self, nvt: Any, records: list[MemberRecord], outputs: list[MemberOutput], step: int, errors: dict[int, str]
    ) -> None:
        limits = self.config
        health = nvt.health()
        for k in np.flatnonzero(nvt.active):
            target = records[k].spec.temperature_K
            if k in errors:
                reason = errors[k]
            elif health["non_finite_atoms"][k] > 0 or not np.isfinite(health["energy"][k]):
                reason = f"non-finite energy, forces or positions ({int(health['non_finite_atoms'][k])} atoms affected)"
            elif health["max_force"][k] > limits.max_force_eV_A:
                reason = (
                    f"exploding forces: max |F| = {health['max_force'][k]:.4g} eV/A "
                    f"> limits.max_force_eV_A = {limits.max_force_eV_A:g}"
                )
            elif health["temperature_K"][k] > limits.max_temperature_ratio * target:
                reason = (
                    f"exploding temperature: {health['temperature_K'][k]:.4g} K "
                    f"> {limits.max_temperature_ratio:g} x target {target:g} K"
                )
            else:
                continue
            self._fail(nvt, records[k], outputs[k], k, step, f"{reason} at step {step}")

    def _fail(self, nvt: Any, record: MemberRecord, output: MemberOutput, k: int, step: int, reason: str) -> None:
        record.state = nvt.member_state(k)
        record.rng_state = nvt.rngs[k].bit_generator.state
        record.thermostat_energy = float(nvt.thermostat_energy[k])
        nvt.deactivate(k)
        record.status, record.reason, record.step = "failed", reason, step
        output.flush()
        record.n_frames = len(output.steps)
        output.write_status("failed", reason, step)
        print(f"lifdiff-md: member {record.spec.name} failed: {reason}", file=sys.stderr, flush=True)

    def _output(self, nvt: Any, records: list[MemberRecord], outputs: list[MemberOutput], step: int) -> None:
        if step < 0:
            return
        config = self.config
        if step % config.dump_stride == 0:
            positions = nvt.positions.cpu().numpy()
            for k, output in enumerate(outputs):
                if nvt.active[k]:
                    output.add_frame(step, positions[nvt.atoms_slice(k)])
        if step % config.thermo_stride == 0:
            thermo = nvt.thermo()
            for k, (record, output) in enumerate(zip(records, outputs)):
                if nvt.active[k]:
                    output.add_thermo(
                        step,
                        thermo["temp_K"][k],
                        thermo["pe_eV"][k],
                        thermo["etotal_eV"][k],
                        thermo["press_bar"][k],
                        thermo["econserve_eV"][k],
                    )
                    record.temp_sum += float(thermo["temp_K"][k])
                    record.temp_count += 1

    def _finish(self) -> int:
        failed = [r for r in self.records if r.status == "failed"]
        if self.stop_reason is not None:
            code = EXIT_STOPPED
            message = f"stopped early: {self.stop_reason}; checkpoint written, continue with 'restart'"
        elif failed:
            code = EXIT_MEMBERS_FAILED
            message = "; ".join(f"{r.spec.name}: {r.reason}" for r in failed)
        else:
            code = EXIT_OK
            message = "all members finished"
        summary = _base_summary(self.config, code, message)
        summary.update(
            {
                "members": [
                    {
                        "name": r.spec.name,
                        "n_atoms": r.n_atoms,
                        "temperature_K": r.spec.temperature_K,
                        "seed": r.spec.seed,
                        "status": r.status,
                        "reason": r.reason,
                        "last_step": self._last_step(r),
                        "n_frames": r.n_frames,
                        "mean_temp_K": r.temp_sum / r.temp_count if r.temp_count else None,
                    }
                    for r in self.records
                ],
                "atom_steps": self.atom_steps,
                "md_wall_s": self.md_wall,
                "wall_s": time.monotonic() - self.started,
                "throughput_atom_steps_per_s": self.atom_steps / self.md_wall if self.md_wall > 0 else None,
                "timings": self.timings,
                "model": self.model.description,
                "engine": self.config.engine,
                "batch_size": self.config.batch_size,
                "restarted_from": str(self.config.restart) if self.config.restart else None,
            }
        )
        write_json_atomic(self.output_dir / SUMMARY_FILE, summary)
        print(f"lifdiff-md: {message} (exit code {code})", flush=True)
        return code


def _model_identity(model: Any) -> dict:
    if model.kind == "mace":
        return {"kind": "mace", "sha256": model.sha256, "head": model.head}
    return {"kind": "ase", "factory": model.factory_spec, "kwargs": model.kwargs}


def _install_sigterm(runner: Runner) -> Any:
    def handler(signum: int, frame: Any) -> None:
        runner.stop_reason = "SIGTERM received"

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding application): no handler
        return None


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _versions() -> dict[str, str | None]:
    import ase

    import aiida_lifdiff

    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "ase": ase.__version__,
        "aiida_lifdiff": aiida_lifdiff.__version__,
        "torch": None,
        "mace": None,
    }
    try:
        import torch

        versions["torch"] = torch.__version__
        import mace

        versions["mace"] = str(mace.__version__)
    except ImportError:
        pass
    return versions


def _base_summary(config: RunConfig | None, code: int, message: str) -> dict:
    summary: dict[str, Any] = {"exit_code": code, "message": message, "versions": _versions()}
    if config is not None:
        summary["device"] = config.device
        summary["dtype"] = config.dtype
        summary["n_steps"] = config.n_steps
        summary["equilibration_steps"] = config.equilibration_steps
        summary["timestep_fs"] = config.timestep_fs
        if config.device.startswith("cuda"):
            try:
                import torch

                summary["device_name"] = torch.cuda.get_device_name(config.device)
            except Exception:  # informative only
                pass
    return summary


def _refuse(output_dir: Path, code: int, message: str, config: RunConfig | None = None) -> int:
    print(f"lifdiff-md: error: {message}", file=sys.stderr, flush=True)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output_dir / SUMMARY_FILE, _base_summary(config, code, message))
    except OSError as exc:
        print(f"lifdiff-md: could not write {SUMMARY_FILE}: {exc}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="lifdiff-md", description="Batched NVT MD with MACE or an ASE calculator.")
    parser.add_argument("input", help="input JSON file")
    parser.add_argument("--output-dir", default=".", help="where member folders and summary.json go (default: .)")
    args = parser.parse_args(argv)
    output_dir = Path(args.output_dir)

    try:
        config = load_input(args.input)
    except InputError as exc:
        return _refuse(output_dir, EXIT_BAD_INPUT, str(exc))

    from aiida_lifdiff.potentials.mace import check_device

    try:
        check_device(config.device)
    except RuntimeError as exc:
        return _refuse(output_dir, EXIT_NO_CUDA, str(exc), config)

    from aiida_lifdiff.runner.models import ModelError, open_model

    try:
        structures = [read_structure(member) for member in config.members]
        model = open_model(config.model, config.device, config.dtype, skin=config.neighbor_skin_A)
        for member, atoms in zip(config.members, structures):
            model.check_species(atoms, member.name)
        checkpoint = read_checkpoint(config.restart) if config.restart is not None else None
        # The timer starts with the MD, not with the imports and model loading: a timeout shorter than the
        # start-up would otherwise make no progress at all, restart after restart.
        runner = Runner(config, model, structures, output_dir, checkpoint=checkpoint)
        runner.prepare()
    except (InputError, ModelError) as exc:
        return _refuse(output_dir, EXIT_BAD_INPUT, str(exc), config)
    print(
        f"lifdiff-md: {len(config.members)} members, model {model.description.get('path') or model.description}, "
        f"device {config.device}, dtype {config.dtype}, pid {os.getpid()}",
        flush=True,
    )
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
