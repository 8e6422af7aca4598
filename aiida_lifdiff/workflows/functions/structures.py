"""Calcfunction: the LiF supercell with one interstitial Li, as a provenance-tracked node."""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from aiida_lifdiff.structures import build_lif_supercell


@calcfunction
def create_lif_supercell(repeat: orm.Int, lattice_constant: orm.Float, interstitial_site: orm.Str) -> orm.StructureData:
    """Rock-salt LiF, ``repeat`` conventional cubes per axis, one extra Li at ``interstitial_site`` (last atom)."""
    atoms = build_lif_supercell(
        repeat=repeat.value,
        lattice_constant=lattice_constant.value,
        interstitial_site=interstitial_site.value,
    )
    structure = orm.StructureData(ase=atoms)
    return structure


def validate_supercell_settings(repeat, lattice_constant, interstitial_site) -> str | None:
    """The message :func:`build_lif_supercell` would raise for these settings, or None if they are valid.

    Used by port validators and the study loader so that bad settings are refused before any node is stored.
    """
    missing = [
        name
        for name, value in (
            ("repeat", repeat),
            ("lattice_constant", lattice_constant),
            ("interstitial_site", interstitial_site),
        )
        if value is None
    ]
    if missing:
        return f"supercell settings missing: {missing} (or give a `structure` instead)"
    try:
        build_lif_supercell(repeat=repeat, lattice_constant=lattice_constant, interstitial_site=interstitial_site)
    except ValueError as exception:
        return str(exception)
    return None


@calcfunction
def relaxed_lattice_constant(lattice: orm.Dict) -> orm.Float:
    """The 0 K lattice constant (A) from a lattice relaxation's results, as a node the supercell links back to."""
    value = lattice.get("a0_A")
    if value is None:
        raise ValueError(f"the lattice relaxation <{lattice.pk}> reported no a0_A")
    return orm.Float(float(value))
