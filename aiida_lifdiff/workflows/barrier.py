"""``BarrierWorkChain``: a potential's relaxed lattice and static migration barriers of interstitial Li in LiF.

A ``BaseRestartWorkChain`` over ``lifdiff.barrier`` (:mod:`aiida_lifdiff.runner.barrier` on the compute node):
an NEB that ran out of steps is rerun once with twice the steps; an end point that relaxed into another
configuration is a result about the potential, not a glitch, and is not retried. The energy profiles are
drawn by a calcfunction, so the figure links back to the numbers it shows.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from aiida import orm
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, calcfunction, process_handler, while_

from aiida_lifdiff.calculations.barrier import LifdiffBarrierCalculation
from aiida_lifdiff.codes import with_computer_options
from aiida_lifdiff.data.potential import PotentialData
from aiida_lifdiff.protocols import get_protocol_inputs

PROFILE_FILE = "barrier_profiles.png"


@calcfunction
def plot_barrier_profiles(profiles: orm.ArrayData, results: orm.Dict) -> orm.SinglefileData:
    """PNG of the NEB energy profiles of one barrier run (``analysis.plotting.plot_barrier_profiles``)."""
    from aiida_lifdiff.analysis.plotting import plot_barrier_profiles as draw

    arrays = {name: profiles.get_array(name) for name in profiles.get_arraynames()}
    label = results.get_dict().get("model", {}).get("label") or "potential"
    title = f"a0 = {results['a0_A']:.4f} A" if results.get("a0_A") is not None else ""
    with tempfile.TemporaryDirectory() as tmp:
        path = draw([(label, arrays, results.get("converged") or {})], Path(tmp) / PROFILE_FILE, title=title)
        return orm.SinglefileData(io.BytesIO(path.read_bytes()), filename=PROFILE_FILE)


def barrier_inputs(potential: PotentialData, code: orm.AbstractCode, overrides: dict | None = None) -> dict:
    """Inputs of a BarrierWorkChain for ``potential`` on ``code``: the ``quick`` protocol with ``overrides``."""
    values = get_protocol_inputs("barrier", None, {"parameters": overrides or {}})
    return {
        "barrier": {
            "potential": potential,
            "code": code,
            "parameters": orm.Dict(values["parameters"]),
            "metadata": {"options": {"max_wallclock_seconds": int(values["max_wallclock_seconds"])}},
        }
    }


def lattice_relaxation_inputs(
    potential: PotentialData, code: orm.AbstractCode, guess: float, overrides: dict | None = None
) -> dict:
    """Inputs of a lattice-only BarrierWorkChain (E(V) around ``guess``, no NEB): the own-lattice step of MD."""
    parameters = dict(overrides or {})
    parameters["lattice"] = {**dict(parameters.get("lattice") or {}), "relax": True, "a0_A": float(guess)}
    parameters["paths"] = []
    return barrier_inputs(potential, code, parameters)


class BarrierWorkChain(BaseRestartWorkChain):
    """Relaxed lattice constant and climbing-image NEB barriers (knock-off, direct hop) of interstitial Li."""

    _process_class = LifdiffBarrierCalculation

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(
            LifdiffBarrierCalculation,
            namespace="barrier",
            namespace_options={"help": "Inputs of the lifdiff.barrier calculation: potential, code, parameters."},
        )
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(cls.run_process, cls.inspect_process),
            cls.results,
            cls.plot,
        )
        spec.expose_outputs(LifdiffBarrierCalculation)
        spec.output(
            "profile_plot",
            valid_type=orm.SinglefileData,
            required=False,
            help="PNG: the NEB energy profile of every path.",
        )
        spec.exit_code(
            440,
            "ERROR_NEB_NOT_CONVERGED",
            message="The NEB did not converge, even with twice the steps: {message}",
        )
        spec.exit_code(
            441,
            "ERROR_ENDPOINT_CHANGED",
            message="An end point relaxed into something other than the requested configuration: {message}",
        )

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        potential: PotentialData,
        protocol: str | None = None,
        overrides: dict | None = None,
    ):
        """A builder with the settings of ``protocol`` (see ``protocols/barrier.yaml``) and ``overrides``."""
        values = get_protocol_inputs("barrier", protocol, overrides)
        builder = cls.get_builder()
        builder.barrier.potential = potential
        builder.barrier.code = code
        builder.barrier.parameters = orm.Dict(values["parameters"])
        builder.barrier.metadata.options.max_wallclock_seconds = int(values["max_wallclock_seconds"])
        return builder

    def setup(self) -> None:
        super().setup()
        # Partition, account and GPU request of the code's computer (`setup slurm`); explicit options win.
        self.ctx.inputs = with_computer_options(self.exposed_inputs(LifdiffBarrierCalculation, "barrier"))
        self.ctx.doubled = False

    def _stop_with(self, node, exit_code):
        """Attach what the failed calculation produced, then stop with ``exit_code``.

        An unconverged band is still a band (flagged in ``results.converged``), and a changed end point is
        described in the results: a benchmark row shows them instead of losing them.
        """
        self.out_many(self.exposed_outputs(node, LifdiffBarrierCalculation))
        self.plot()
        return ProcessHandlerReport(True, exit_code.format(message=node.exit_message or ""))

    def plot(self) -> None:
        if "profiles" in self.outputs and "results" in self.outputs and "profile_plot" not in self.outputs:
            self.out("profile_plot", plot_barrier_profiles(self.outputs["profiles"], self.outputs["results"]))

    @process_handler(priority=500, exit_codes=LifdiffBarrierCalculation.exit_codes.ERROR_NEB_NOT_CONVERGED)
    def handle_not_converged(self, node):
        """Rerun once with twice the NEB and relaxation steps; then stop with the band as it is."""
        if self.ctx.doubled:
            return self._stop_with(node, self.exit_codes.ERROR_NEB_NOT_CONVERGED)
        parameters = self.ctx.inputs.parameters.get_dict() if "parameters" in self.ctx.inputs else {}
        neb = dict(parameters.get("neb") or {})
        neb["max_steps"] = 2 * int(neb.get("max_steps", 400))
        neb["relax_max_steps"] = 2 * int(neb.get("relax_max_steps", 400))
        parameters["neb"] = neb
        self.ctx.inputs.parameters = orm.Dict(parameters)
        self.ctx.doubled = True
        self.report(f"{node.process_label}<{node.pk}> did not converge: rerunning with max_steps {neb['max_steps']}")
        return ProcessHandlerReport(True)

    @process_handler(priority=400, exit_codes=LifdiffBarrierCalculation.exit_codes.ERROR_ENDPOINT_CHANGED)
    def handle_endpoint_changed(self, node):
        """Not retried: the potential's landscape differs from the requested configuration."""
        self.report(f"{node.process_label}<{node.pk}>: {node.exit_message}")
        return self._stop_with(node, self.exit_codes.ERROR_ENDPOINT_CHANGED)
