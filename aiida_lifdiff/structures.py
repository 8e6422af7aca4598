"""Rock-salt LiF supercells with one interstitial Li.

Pure ASE/numpy (no AiiDA), so the same code builds structures on a laptop, in a
calcfunction, or on a compute node.

Atom order contract: the perfect-crystal atoms come first, in the order ASE's
conventional rock-salt cube repeated by ``Atoms.repeat`` gives them, and the
interstitial Li is appended LAST. ``atoms[-1]`` is therefore the interstitial at
t = 0 (it does not stay "the" interstitial: the interstitialcy mechanism hands
the defect on to lattice Li).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from ase import Atom, Atoms
from ase.build import bulk
from ase.data import atomic_numbers

#: Experimental room-temperature lattice constant of LiF (A).
LIF_LATTICE_CONSTANT = 4.03

#: Interstitial sites as fractional coordinates inside ONE conventional cube
#: (Li on the fcc 4a sites (0,0,0)+fcc, F on 4b (1/2,0,0)+fcc; space group Fm-3m).
#: ``None`` means no interstitial (perfect crystal).
#:
#: - ``tetrahedral``: Wyckoff 8c, the centre of the small cube of 4 Li + 4 F; the
#:   only empty high-symmetry site of rock salt and the usual starting point.
#: - ``face``: Wyckoff 24d, the centre of the Li2F2 square shared by two
#:   tetrahedral sites, i.e. the midpoint of the direct tetrahedral -> tetrahedral
#:   hop. By symmetry the force on an interstitial there is zero, so a relaxation
#:   started there stays on this stationary point: E(face) - E(tetrahedral) is the
#:   barrier of the direct (non-interstitialcy) mechanism without an NEB.
INTERSTITIAL_SITES: dict[str, tuple[float, float, float] | None] = {
    "tetrahedral": (0.25, 0.25, 0.25),
    "face": (0.0, 0.25, 0.25),
    "none": None,
}

# Outside this range a "lattice constant" is almost certainly a unit mistake
# (nm or bohr) rather than a physical choice.
_MIN_LATTICE_CONSTANT = 2.0
_MAX_LATTICE_CONSTANT = 10.0


def _normalise_repeat(repeat: int | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(repeat, (bool, np.bool_)):
        raise ValueError(f"repeat must be an int >= 1 or three of them, got {repeat!r}")
    if isinstance(repeat, (int, np.integer)):
        values: tuple = (repeat, repeat, repeat)
    else:
        try:
            values = tuple(repeat)
        except TypeError:
            raise ValueError(f"repeat must be an int >= 1 or three of them, got {repeat!r}") from None
        if len(values) != 3:
            raise ValueError(f"repeat must have exactly 3 entries (nx, ny, nz), got {len(values)}: {repeat!r}")
    for value in values:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"repeat entries must be integers >= 1, got {repeat!r}")
    return (int(values[0]), int(values[1]), int(values[2]))


def build_lif_supercell(
    repeat: int | tuple[int, int, int] = 2,
    lattice_constant: float = LIF_LATTICE_CONSTANT,
    interstitial_site: str = "tetrahedral",
) -> Atoms:
    """Return a conventional-cubic LiF supercell, optionally with one extra Li.

    :param repeat: number of conventional cubes (8 atoms each) along x, y, z; an
        int means the same along all three.
    :param lattice_constant: cubic lattice constant in Angstrom (2..10 accepted).
    :param interstitial_site: a key of :data:`INTERSTITIAL_SITES`; the extra Li is
        put at that site of the first cube (the one at the origin).
    :returns: ``ase.Atoms`` with periodic boundaries; 2x2x2 gives 64 + 1 atoms,
        3x3x3 gives 216 + 1. The interstitial, if any, is ``atoms[-1]``; its
        index is also stored in ``atoms.info['interstitial_index']`` (None without).
    """
    reps = _normalise_repeat(repeat)
    try:
        a = float(lattice_constant)
    except (TypeError, ValueError):
        raise ValueError(f"lattice_constant must be a number in Angstrom, got {lattice_constant!r}") from None
    if not np.isfinite(a) or a <= 0:
        raise ValueError(f"lattice_constant must be a positive number in Angstrom, got {lattice_constant!r}")
    if not _MIN_LATTICE_CONSTANT <= a <= _MAX_LATTICE_CONSTANT:
        raise ValueError(
            f"lattice_constant {a} A is outside the plausible range "
            f"{_MIN_LATTICE_CONSTANT}..{_MAX_LATTICE_CONSTANT} A (LiF: about {LIF_LATTICE_CONSTANT} A); "
            "was it given in nm or bohr?"
        )
    if interstitial_site not in INTERSTITIAL_SITES:
        raise ValueError(
            f"unknown interstitial_site {interstitial_site!r}; expected one of {sorted(INTERSTITIAL_SITES)}"
        )
    if abs(a - LIF_LATTICE_CONSTANT) / LIF_LATTICE_CONSTANT > 0.15:
        warnings.warn(
            f"lattice_constant {a} A differs by more than 15% from LiF's {LIF_LATTICE_CONSTANT} A",
            stacklevel=2,
        )

    atoms = bulk("LiF", "rocksalt", a=a, cubic=True).repeat(reps)
    site = INTERSTITIAL_SITES[interstitial_site]
    if site is None:
        atoms.info["interstitial_index"] = None
    else:
        atoms.append(Atom("Li", position=np.asarray(site, dtype=float) * a))
        atoms.info["interstitial_index"] = len(atoms) - 1
    atoms.info["interstitial_site"] = interstitial_site
    atoms.info["repeat"] = reps
    atoms.info["lattice_constant"] = a
    atoms.pbc = True
    return atoms


def species_indices(atoms: Atoms, symbol: str) -> list[int]:
    """Indices of the atoms whose chemical symbol is ``symbol``, in atom order.

    An element absent from the structure gives an empty list; a string that is not
    an element symbol (a typo such as ``'li'``) is refused rather than silently
    giving no atoms.
    """
    if symbol not in atomic_numbers:
        raise ValueError(f"{symbol!r} is not a chemical symbol (expected e.g. 'Li' or 'F')")
    return [index for index, value in enumerate(atoms.get_chemical_symbols()) if value == symbol]
