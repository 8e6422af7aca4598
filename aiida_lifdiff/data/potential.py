"""``PotentialData``: one interatomic potential as a node, so every result can name the model that made it."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiida import orm

from aiida_lifdiff.potentials import stream_sha256

POTENTIAL_KINDS = ("classical", "mace", "deepmd", "universal")

#: File name of the potential inside the node's repository, per kind (deepmd's backend picks the suffix).
DEFAULT_FILENAMES = {
    "classical": "parameters.json",
    "mace": "model.model",
    "deepmd": "model.pb",
    "universal": "universal.weights",
}


class PotentialData(orm.SinglefileData):
    """An interatomic potential: the file that defines it, its kind, species and lineage.

    * ``classical``: the file is the JSON of the analytic parameters (also kept in the attributes, so
      they can be queried), see :mod:`aiida_lifdiff.potentials.classical`.
    * ``mace``: a MACE model file as written by ``mace_run_train`` (or a foundation model).
    * ``deepmd``: a frozen DeePMD model (``.pb`` TensorFlow, ``.pth`` PyTorch).
    * ``universal``: a universal model whose weights ship in its package's wheel (CHGNet, SevenNet-0), the
      weight file exactly as installed; ``model_info`` names the package, its version and the environment
      whose codes can run it (:mod:`aiida_lifdiff.potentials.universal`).

    The ``sha256`` attribute is the hash of the file; :meth:`get_or_create` uses it to reuse a stored
    node instead of storing the same potential twice. ``lineage`` holds what the model came from
    (foundation name, training set, training flags); ``model_info`` what the file says about itself.
    """

    def __init__(
        self,
        file: str | Path | io.BufferedIOBase,
        filename: str | None = None,
        *,
        kind: str,
        species: Sequence[str],
        parameters: dict | None = None,
        model_info: dict | None = None,
        lineage: dict | None = None,
        **kwargs,
    ):
        if kind not in POTENTIAL_KINDS:
            raise ValueError(f"unknown potential kind {kind!r}; expected one of {', '.join(POTENTIAL_KINDS)}")
        super().__init__(file, filename=filename or DEFAULT_FILENAMES[kind], **kwargs)
        species = sorted(set(species))
        if not species:
            raise ValueError("a potential must cover at least one species")
        if kind == "classical":
            if not parameters:
                raise ValueError("a classical potential needs its parameters")
            from aiida_lifdiff.potentials.classical import lammps_potential_lines

            # Writing the LAMMPS lines checks that every pair of species has coefficients.
            lammps_potential_lines(parameters, species)
        with self.open(mode="rb") as handle:
            sha256 = stream_sha256(handle)
        self.base.attributes.set("kind", kind)
        self.base.attributes.set("species", species)
        self.base.attributes.set("parameters", parameters or {})
        self.base.attributes.set("model_info", model_info or {})
        self.base.attributes.set("lineage", lineage or {})
        self.base.attributes.set("sha256", sha256)

    @classmethod
    def from_classical(cls, parameters: dict, label: str = "") -> PotentialData:
        """A classical potential from its parameters (unstored)."""
        text = json.dumps(parameters, sort_keys=True, indent=1)
        node = cls(
            io.BytesIO(text.encode()),
            kind="classical",
            species=parameters.get("species") or sorted({s for pair in parameters["pairs"] for s in pair.split("-")}),
            parameters=parameters,
        )
        node.label = label or parameters.get("name", "")
        node.description = parameters.get("reference", "")
        return node

    @classmethod
    def tosi_fumi_lif(cls) -> PotentialData:
        """The Tosi-Fumi Born-Mayer-Huggins potential for LiF with formal charges (unstored)."""
        from aiida_lifdiff.potentials.classical import tosi_fumi_lif

        return cls.from_classical(tosi_fumi_lif(), label="Tosi-Fumi LiF")

    @classmethod
    def from_model_file(
        cls, kind: str, path: str | Path, label: str = "", lineage: dict | None = None
    ) -> PotentialData:
        """A MACE or DeePMD model file, checked and described before anything is stored (unstored node).

        Raises a clear ``ValueError``/``FileNotFoundError`` for a missing or unreadable model file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        if kind == "mace":
            from aiida_lifdiff.potentials.mace import model_info
        elif kind == "deepmd":
            from aiida_lifdiff.potentials.deepmd import check_model_file, model_info

            check_model_file(path)
        else:
            raise ValueError(f"from_model_file is for mace or deepmd models, not {kind!r}")
        try:
            info = model_info(path)
        except Exception as exception:
            raise ValueError(f"{path} is not a readable {kind} model: {exception}") from exception
        species = info.get("species") or []
        filename = DEFAULT_FILENAMES[kind] if kind != "deepmd" else f"model{path.suffix or '.pb'}"
        info = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool, list, dict)) or v is None}
        node = cls(str(path), filename=filename, kind=kind, species=species, model_info=info, lineage=lineage)
        node.label = label or path.stem
        return node

    @classmethod
    def from_mace_foundation(cls, name: str) -> PotentialData:
        """A MACE foundation model by name (e.g. ``medium-mpa-0``), resolved through mace-torch's cache.

        Offline and without the weights, the error says exactly where to place the file.
        """
        from aiida_lifdiff.potentials.mace import resolve_mace_model

        path = resolve_mace_model(name)
        return cls.from_model_file("mace", path, label=f"MACE {name}", lineage={"foundation": name})

    @classmethod
    def from_universal(cls, name: str, python: str | None = None, label: str = "") -> PotentialData:
        """A universal model by name (``chgnet``, ``sevennet-0``, ...): its weight file as installed (unstored).

        The file is found in-process when the package is importable here, else through ``python`` (default:
        the interpreter of the model's environment, e.g. ``.venv-sevenn/bin/python``). A name that is unknown
        or whose weights are not installed raises ``UniversalModelUnavailable`` (a ValueError) before any node
        exists; the message says how to pre-place the weights.
        """
        from aiida_lifdiff.potentials.universal import get_universal_model, locate_weights

        model = get_universal_model(name)
        found = locate_weights(model.name, python=python)
        info = {
            key: found[key]
            for key in ("package", "package_version", "model", "environment", "weights_sha256", "source_path")
        }
        info["package_model"] = found["package_model"]
        suffix = "".join(Path(found["source_path"]).suffixes[-2:]) or ".weights"
        node = cls(
            found["source_path"],
            filename=f"{model.name}{suffix}",
            kind="universal",
            species=found["species"],
            model_info=info,
            lineage={"universal": model.name, "package": f"{found['package']}=={found['package_version']}"},
        )
        if node.sha256 != found["weights_sha256"]:
            raise ValueError(f"{found['source_path']} changed while it was read (sha256 differs); try again")
        node.label = label or model.description.split(" (")[0] or model.name
        node.description = model.description
        return node

    @classmethod
    def get_or_create(cls, node: PotentialData) -> PotentialData:
        """Return the stored potential with the same file as ``node``, storing ``node`` if there is none."""
        if node.is_stored:
            return node
        existing = (
            orm.QueryBuilder()
            .append(cls, filters={"attributes.sha256": node.sha256, "attributes.kind": node.kind}, project="*")
            .first(flat=True)
        )
        return existing if existing is not None else node.store()

    @property
    def kind(self) -> str:
        return self.base.attributes.get("kind")

    @property
    def species(self) -> list[str]:
        return list(self.base.attributes.get("species"))

    @property
    def parameters(self) -> dict:
        return dict(self.base.attributes.get("parameters"))

    @property
    def model_info(self) -> dict[str, Any]:
        return dict(self.base.attributes.get("model_info", {}))

    @property
    def lineage(self) -> dict[str, Any]:
        return dict(self.base.attributes.get("lineage", {}))

    @property
    def sha256(self) -> str:
        return self.base.attributes.get("sha256")

    def covers(self, symbols: Sequence[str]) -> bool:
        return set(symbols) <= set(self.species)

    def lammps_lines(self, species_order: Sequence[str]) -> list[str]:
        """The LAMMPS lines of this potential; a model file is expected as ``self.filename`` in the run folder."""
        if self.kind == "classical":
            from aiida_lifdiff.potentials.classical import lammps_potential_lines

            return lammps_potential_lines(self.parameters, species_order)
        if self.kind == "deepmd":
            from aiida_lifdiff.potentials.deepmd import lammps_potential_lines as deepmd_lines

            return deepmd_lines(self.filename, species_order)
        raise ValueError(
            f"a {self.kind} potential cannot run inside the PyPI LAMMPS build (no pair_style mace / ML-IAP); "
            "it runs in lifdiff-md"
        )

    def charges(self) -> dict[str, float]:
        """Formal charges per species (zero for potentials without charges)."""
        charges = self.parameters.get("charges", {})
        return {symbol: float(charges.get(symbol, 0.0)) for symbol in self.species}
