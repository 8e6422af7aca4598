"""Write docs/workflows.md from the process specs, so the reference never drifts from the code.

Run: python docs/make_reference.py
"""

from __future__ import annotations

from pathlib import Path

from aiida.engine.processes.ports import PortNamespace
from aiida.plugins import CalculationFactory, WorkflowFactory

PROCESSES = [
    ("workflow", "lifdiff.benchmark"),
    ("workflow", "lifdiff.diffusion"),
    ("workflow", "lifdiff.md"),
    ("workflow", "lifdiff.training_data"),
    ("workflow", "lifdiff.finetune"),
    ("workflow", "lifdiff.deepmd_train"),
    ("workflow", "lifdiff.evaluate"),
    ("calculation", "lifdiff.lammps"),
    ("calculation", "lifdiff.md"),
    ("calculation", "lifdiff.label"),
    ("calculation", "lifdiff.mace_train"),
    ("calculation", "lifdiff.deepmd_train"),
]


def ports(namespace, prefix: str = "") -> list[str]:
    lines = []
    for name, port in sorted(namespace.items()):
        if name == "metadata":
            continue
        full = f"{prefix}{name}"
        if isinstance(port, PortNamespace):
            lines.append(f"| `{full}` | namespace | | {(port.help or '').strip()} |")
            lines += ports(port, prefix=f"{full}.")
            continue
        valid = getattr(port, "valid_type", None)
        if isinstance(valid, tuple):
            type_name = " or ".join(v.__name__ for v in valid if v is not type(None))
        else:
            type_name = getattr(valid, "__name__", "")
        required = "yes" if port.required else "no"
        lines.append(f"| `{full}` | {type_name} | {required} | {(port.help or '').strip()} |")
    return lines


def main() -> None:
    out = [
        "# Workflows reference",
        "",
        "Generated from the process specifications by `docs/make_reference.py`.",
        "",
    ]
    for kind, entry_point in PROCESSES:
        process = (WorkflowFactory if kind == "workflow" else CalculationFactory)(entry_point)
        spec = process.spec()
        out += [f"## `{entry_point}`: {process.__name__}", "", (process.__doc__ or "").strip().split("\n")[0], ""]
        out += ["### Inputs", "", "| port | type | required | help |", "|---|---|---|---|"]
        out += ports(spec.inputs)
        out += ["", "### Outputs", "", "| port | type | required | help |", "|---|---|---|---|"]
        out += ports(spec.outputs)
        out += ["", "### Exit codes", "", "| status | label | message |", "|---|---|---|"]
        for label, exit_code in sorted(spec.exit_codes.items(), key=lambda e: e[1].status):
            message = exit_code.message.replace("|", "/")
            out.append(f"| {exit_code.status} | `{label}` | {message} |")
        out.append("")
    path = Path(__file__).parent / "workflows.md"
    path.write_text("\n".join(out))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
