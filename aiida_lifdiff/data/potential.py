"""``PotentialData``: one interatomic potential as a node, so every result can name the model that made it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from aiida import orm

POTENTIAL_KINDS = ("classical", "mace", "deepmd")


def _canonical_sha256(payload: Any) -> str:
    """Hash of a JSON payload with sorted keys, so equal parameters give equal hashes."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class PotentialData(orm.Data):
    """An interatomic potential: its kind, the species it covers and what defines it.

    * ``classical``: the analytic parameters live in the attributes (JSON), see
      :mod:`aiida_lifdiff.potentials.classical`.
    * ``mace`` / ``deepmd``: the model file lives in the repository (added with the ML potentials).

    The ``sha256`` attribute identifies the potential's content; :meth:`get_or_create` uses it to reuse a
    stored node instead of storing the same potential twice.
    """

    def __init__(self, kind: str, species: Sequence[str], parameters: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if kind not in POTENTIAL_KINDS:
            raise ValueError(f"unknown potential kind {kind!r}; expected one of {', '.join(POTENTIAL_KINDS)}")
        species = sorted(set(species))
        if not species:
            raise ValueError("a potential must cover at least one species")
        if kind == "classical":
            if not parameters:
                raise ValueError("a classical potential needs its parameters")
            self._validate_classical(parameters, species)
        self.base.attributes.set("kind", kind)
        self.base.attributes.set("species", species)
        self.base.attributes.set("parameters", parameters or {})
        self.base.attributes.set("sha256", _canonical_sha256({"kind": kind, "parameters": parameters or {}}))

    @staticmethod
    def _validate_classical(parameters: dict, species: Sequence[str]) -> None:
        from aiida_lifdiff.potentials.classical import lammps_potential_lines

        # Writing the LAMMPS lines checks that every pair of species has coefficients.
        lammps_potential_lines(parameters, species)

    @classmethod
    def tosi_fumi_lif(cls) -> PotentialData:
        """The Tosi-Fumi Born-Mayer-Huggins potential for LiF with formal charges (unstored)."""
        from aiida_lifdiff.potentials.classical import TOSI_FUMI_LIF

        node = cls(kind="classical", species=("Li", "F"), parameters=TOSI_FUMI_LIF)
        node.label = "Tosi-Fumi LiF"
        node.description = TOSI_FUMI_LIF.get("reference", "")
        return node

    @classmethod
    def get_or_create(cls, node: PotentialData) -> PotentialData:
        """Return the stored potential with the same content as ``node``, storing ``node`` if there is none."""
        if node.is_stored:
            return node
        existing = (
            orm.QueryBuilder().append(cls, filters={"attributes.sha256": node.sha256}, project="*").first(flat=True)
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
    def sha256(self) -> str:
        return self.base.attributes.get("sha256")

    def covers(self, symbols: Sequence[str]) -> bool:
        return set(symbols) <= set(self.species)

    def lammps_lines(self, species_order: Sequence[str]) -> list[str]:
        """The LAMMPS ``pair_style``/``pair_coeff``/``kspace_style`` lines of this potential."""
        if self.kind != "classical":
            raise NotImplementedError(f"LAMMPS input for a {self.kind!r} potential is not available yet")
        from aiida_lifdiff.potentials.classical import lammps_potential_lines

        return lammps_potential_lines(self.parameters, species_order)

    def charges(self) -> dict[str, float]:
        """Formal charges per species (zero for potentials without charges)."""
        charges = self.parameters.get("charges", {})
        return {symbol: float(charges.get(symbol, 0.0)) for symbol in self.species}
