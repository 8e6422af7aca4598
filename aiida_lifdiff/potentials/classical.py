"""Tosi-Fumi Born-Mayer-Huggins potential for LiF and the LAMMPS lines that use it.

No AiiDA imports: the AiiDA layer stores :data:`TOSI_FUMI_LIF` (plain JSON) in a
node and calls :func:`lammps_potential_lines` when it writes an input.

LAMMPS ``pair_style born/coul/long`` evaluates, per pair,
``E = A exp((sigma - r)/rho) - C/r^6 + D/r^8`` plus the Coulomb term of the
per-atom charges (real-space part here, reciprocal part by ``kspace_style``).
Tosi and Fumi write the dipole-quadrupole dispersion as ``-D/r^8``, so their D
enters LAMMPS with a NEGATIVE sign; the table below is already in the LAMMPS
convention.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

from ase.data import atomic_masses, atomic_numbers

_PAIR_KEYS = ("A", "rho", "sigma", "C", "D")

#: Tosi-Fumi parameters for LiF in LAMMPS ``born/coul/long`` convention (metal units).
#: A = b * c_ij with b = 0.338e-12 erg = 0.2110 eV and the Pauling factors
#: c_ij = 1 + z_i/n_i + z_j/n_j (z/n = 1/2 for Li+, -1/8 for F-); sigma = r_i + r_j
#: with the Tosi-Fumi ionic radii (Li 0.816 A, F 1.179 A); rho = 0.299 A.
#: JSON-serialisable on purpose (AiiDA stores it in a Dict/attributes).
TOSI_FUMI_LIF: dict = {
    "name": "Tosi-Fumi LiF",
    "kind": "classical",
    "pair_style": "born/coul/long",
    "functional_form": "E = A*exp((sigma - r)/rho) - C/r^6 + D/r^8 + q_i*q_j/(4 pi eps0 r)",
    "units": {"A": "eV", "rho": "Angstrom", "sigma": "Angstrom", "C": "eV*Angstrom^6", "D": "eV*Angstrom^8"},
    "species": ["Li", "F"],
    "charges": {"Li": 1.0, "F": -1.0},
    "masses": {
        "Li": float(atomic_masses[atomic_numbers["Li"]]),
        "F": float(atomic_masses[atomic_numbers["F"]]),
    },
    "pairs": {
        "Li-Li": {"A": 0.4220, "rho": 0.299, "sigma": 1.632, "C": 0.0456, "D": -0.0187},
        "Li-F": {"A": 0.2901, "rho": 0.299, "sigma": 1.995, "C": 0.4993, "D": -0.3745},
        "F-F": {"A": 0.1582, "rho": 0.299, "sigma": 2.358, "C": 9.050, "D": -10.61},
    },
    "reference": (
        "F. G. Fumi and M. P. Tosi, J. Phys. Chem. Solids 25, 31 (1964); "
        "M. P. Tosi and F. G. Fumi, J. Phys. Chem. Solids 25, 45 (1964)"
    ),
    "notes": "D entered negative (LAMMPS born/coul/long adds +D/r^8; Tosi-Fumi subtract D/r^8).",
}

KSPACE_STYLES = ("ewald", "pppm")


def tosi_fumi_lif() -> dict:
    """A deep copy of :data:`TOSI_FUMI_LIF`, safe to modify."""
    return copy.deepcopy(TOSI_FUMI_LIF)


def pair_parameters(parameters: Mapping, first: str, second: str) -> dict[str, float]:
    """The parameters of the pair ``first``-``second`` regardless of the order in the table."""
    pairs = parameters.get("pairs")
    if not isinstance(pairs, Mapping):
        raise ValueError(f"parameters must have a 'pairs' mapping like 'Li-F': {{...}}, got {pairs!r}")
    for key in (f"{first}-{second}", f"{second}-{first}"):
        if key in pairs:
            values = pairs[key]
            missing = [name for name in _PAIR_KEYS if name not in values]
            if missing:
                raise ValueError(f"pair {key!r} lacks {missing}; each pair needs {list(_PAIR_KEYS)}")
            result = {name: float(values[name]) for name in _PAIR_KEYS}
            bad = [name for name, value in result.items() if not math.isfinite(value)]
            if bad or result["rho"] <= 0:
                raise ValueError(f"pair {key!r} has invalid values {values!r}: finite numbers with rho > 0 needed")
            return result
    raise ValueError(
        f"no parameters for the pair {first}-{second}; the table has {sorted(pairs)} "
        f"(every pair among the species must be present)"
    )


def lammps_potential_lines(
    parameters: Mapping,
    species_order: Sequence[str],
    cutoff: float = 8.0,
    kspace: str = "ewald",
    kspace_accuracy: float = 1e-6,
) -> list[str]:
    """LAMMPS commands defining the Born-Mayer-Huggins + long-range Coulomb interaction.

    :param parameters: a table shaped like :data:`TOSI_FUMI_LIF` (only ``pairs`` is used;
        charges go in the data file).
    :param species_order: chemical symbols in LAMMPS type order (type 1 first).
    :param cutoff: real-space cutoff (A) for both the short-range and the Coulomb part.
    :param kspace: ``'ewald'`` (cheaper and exact for the ~100-atom cells used here) or ``'pppm'``.
    :param kspace_accuracy: relative force accuracy of the reciprocal-space sum.
    :returns: ``pair_style``, one ``pair_coeff`` per type pair (i <= j) and ``kspace_style``.
    """
    species = list(species_order)
    if not species:
        raise ValueError("species_order is empty; expected the symbols in LAMMPS type order, e.g. ['Li', 'F']")
    if len(set(species)) != len(species):
        raise ValueError(f"species_order has duplicates: {species}")
    if not (isinstance(cutoff, (int, float)) and math.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff must be a positive number of Angstrom, got {cutoff!r}")
    if kspace not in KSPACE_STYLES:
        raise ValueError(f"kspace must be one of {KSPACE_STYLES}, got {kspace!r}")
    if not (isinstance(kspace_accuracy, (int, float)) and 0 < kspace_accuracy < 1):
        raise ValueError(f"kspace_accuracy must be a relative accuracy in (0, 1), got {kspace_accuracy!r}")

    lines = [f"pair_style born/coul/long {cutoff:g}"]
    for i, first in enumerate(species):
        for j in range(i, len(species)):
            p = pair_parameters(parameters, first, species[j])
            lines.append(
                f"pair_coeff {i + 1} {j + 1} {p['A']!r} {p['rho']!r} {p['sigma']!r} {p['C']!r} {p['D']!r}"
                f"  # {first}-{species[j]}"
            )
    lines.append(f"kspace_style {kspace} {kspace_accuracy:g}")
    return lines
