"""Interstitial Li migration paths in a rock-salt LiF supercell (pure numpy + ASE, no AiiDA).

Geometry, in units of the conventional lattice constant ``a`` of ONE cube whose corner (0, 0, 0) is a
lattice Li ``L`` (Li on 4a = fcc, F on 4b, see :mod:`aiida_lifdiff.structures`); the interstitial starts on
the tetrahedral site ``T1 = (1/4, 1/4, 1/4)`` (Wyckoff 8c), the supercell is built by
:func:`aiida_lifdiff.structures.build_lif_supercell` (interstitial last):

- ``direct``: the interstitial hops T1 -> (3/4, 1/4, 1/4), the neighbouring tetrahedral site a/2 along
  <100>, through the face centre (0.5, 1/4, 1/4) of the Li2F2 square (Wyckoff 24d).
- ``knockoff_collinear`` (<111> interstitialcy): the interstitial moves T1 -> L while the Li that sat on L
  moves on to the tetrahedral site on the far side, (-1/4, -1/4, -1/4): both displacements along [-1-1-1].
- ``knockoff_noncollinear_70`` / ``knockoff_noncollinear_109``: the same, but the displaced Li goes to
  another tetrahedral site next to L, (-1/4, -1/4, +1/4) (70.5 deg between the two displacements) or
  (-1/4, +1/4, +1/4) (109.5 deg).

Every end state is again "one Li on a tetrahedral site, all lattice sites filled", i.e. equivalent to
the start by symmetry; only which atom sits where differs. The final structures keep the atom order of
the initial one (the same atom is the interstitial, the same atom was on L), and their positions are
UNWRAPPED next to the initial ones, so an NEB interpolation between them moves each atom the short way.

:func:`check_configuration` tells whether a relaxed structure still has every atom at its expected site
and, if not, :func:`describe_configuration` says what it became (the nearest high-symmetry site of
every displaced Li, and split-interstitial pairs sharing a lattice site).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

from aiida_lifdiff.structures import INTERSTITIAL_SITES, build_lif_supercell

#: An Li expected on an interstitial site (tetrahedral, face) counts as there within this distance (A):
#: a tetrahedral site is a/4 = 1.0 A from the nearest face site, so anything above a/8 is ambiguous.
INTERSTITIAL_SITE_TOLERANCE_A = 0.45
#: An Li expected on a lattice site counts as there within this distance (A). The four Li next to a
#: tetrahedral interstitial are pushed out along <111> by up to 0.50 A (Tosi-Fumi, a0 = 4.01 A), towards
#: the tetrahedral site behind them, 1.74 A (sqrt(3) a/4) from the lattice site: half of that (0.87 A)
#: is where the nearest site changes.
LI_SITE_TOLERANCE_A = 0.8
#: The same for F (they never change site in these paths and move < 0.1 A; a larger displacement means
#: something else happened, e.g. an F pushed into an interstitial position).
F_SITE_TOLERANCE_A = 0.5
#: Two Li within this distance of the same lattice site and both off it form a split interstitial.
SPLIT_PAIR_RADIUS_A = 1.3

#: The start site of every path (fractions of ``a`` in the first cube).
TETRAHEDRAL_START = (0.25, 0.25, 0.25)
#: The lattice Li the interstitialcy paths knock on.
KNOCKED_SITE = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Move:
    """One atom's move: ``who`` is ``'interstitial'`` or ``'lattice'`` (the Li on ``start``)."""

    who: str
    start: tuple[float, float, float]
    end: tuple[float, float, float]


@dataclass(frozen=True)
class MigrationPath:
    name: str
    description: str
    moves: tuple[Move, ...]

    @property
    def angle_deg(self) -> float | None:
        """Angle between the displacements of the two moving atoms (None for a one-atom hop)."""
        if len(self.moves) != 2:
            return None
        d1, d2 = (np.subtract(m.end, m.start) for m in self.moves)
        cosine = float(np.dot(d1, d2) / np.linalg.norm(d1) / np.linalg.norm(d2))
        return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


PATHS: dict[str, MigrationPath] = {
    "direct": MigrationPath(
        "direct",
        "interstitial T1 (1/4,1/4,1/4) -> neighbouring tetrahedral site (3/4,1/4,1/4), a/2 along <100>",
        (Move("interstitial", TETRAHEDRAL_START, (0.75, 0.25, 0.25)),),
    ),
    "knockoff_collinear": MigrationPath(
        "knockoff_collinear",
        "<111> interstitialcy: interstitial T1 -> lattice site L (0,0,0), the Li on L -> (-1/4,-1/4,-1/4)",
        (
            Move("interstitial", TETRAHEDRAL_START, KNOCKED_SITE),
            Move("lattice", KNOCKED_SITE, (-0.25, -0.25, -0.25)),
        ),
    ),
    "knockoff_noncollinear_70": MigrationPath(
        "knockoff_noncollinear_70",
        "non-collinear interstitialcy (70.5 deg): interstitial T1 -> L (0,0,0), the Li on L -> (-1/4,-1/4,+1/4)",
        (
            Move("interstitial", TETRAHEDRAL_START, KNOCKED_SITE),
            Move("lattice", KNOCKED_SITE, (-0.25, -0.25, 0.25)),
        ),
    ),
    "knockoff_noncollinear_109": MigrationPath(
        "knockoff_noncollinear_109",
        "non-collinear interstitialcy (109.5 deg): interstitial T1 -> L (0,0,0), the Li on L -> (-1/4,+1/4,+1/4)",
        (
            Move("interstitial", TETRAHEDRAL_START, KNOCKED_SITE),
            Move("lattice", KNOCKED_SITE, (-0.25, 0.25, 0.25)),
        ),
    ),
}
#: A name that stands for several paths; the result under it is the lowest barrier of them.
PATH_GROUPS: dict[str, tuple[str, ...]] = {
    "knockoff_noncollinear": ("knockoff_noncollinear_70", "knockoff_noncollinear_109"),
}
#: What an input may ask for.
PATH_NAMES = ("direct", "knockoff_collinear", "knockoff_noncollinear", *PATH_GROUPS["knockoff_noncollinear"])


def expand_paths(names: Sequence[str]) -> list[str]:
    """The concrete paths to compute for the requested names (groups expanded, order kept, no repeats)."""
    result: list[str] = []
    for name in names:
        if name in PATH_GROUPS:
            members = PATH_GROUPS[name]
        elif name in PATHS:
            members = (name,)
        else:
            raise ValueError(f"unknown migration path {name!r}; known: {list(PATH_NAMES)}")
        result += [member for member in members if member not in result]
    return result


# -- sites ------------------------------------------------------------------------------------


def _reps(atoms: Atoms) -> tuple[int, int, int]:
    reps = atoms.info.get("repeat")
    if reps is None:
        raise ValueError("atoms lack info['repeat']: build them with build_lif_supercell")
    return tuple(int(r) for r in reps)  # type: ignore[return-value]


def _lattice_constant(atoms: Atoms) -> float:
    a = atoms.info.get("lattice_constant")
    if a is None:
        raise ValueError("atoms lack info['lattice_constant']: build them with build_lif_supercell")
    return float(a)


def site_catalog(lattice_constant: float, repeat: Sequence[int]) -> dict[str, np.ndarray]:
    """Cartesian positions (A) of the high-symmetry sites of a rock-salt supercell, by kind.

    ``lattice Li`` (4a), ``F`` (4b), ``tetrahedral`` (8c), ``face`` (24d: the centre of a Li2F2 square,
    the midpoint of a direct hop), each as an (n, 3) array inside the supercell.
    """
    fcc = np.array([(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)])
    in_cube = {
        "lattice Li": fcc,
        "F": (fcc + (0.5, 0, 0)) % 1.0,
        "tetrahedral": np.array(list(itertools.product((0.25, 0.75), repeat=3))),
        "face": np.array(
            [p for p in itertools.product((0.0, 0.25, 0.5, 0.75), repeat=3) if sum(x in (0.0, 0.5) for x in p) == 1]
        ),
    }
    shifts = np.array(list(itertools.product(*(range(int(n)) for n in repeat))), dtype=float)
    return {
        kind: ((sites[None, :, :] + shifts[:, None, :]).reshape(-1, 3)) * lattice_constant
        for kind, sites in in_cube.items()
    }


def _fmt_fraction(position: np.ndarray, lattice_constant: float) -> str:
    return "(" + ", ".join(f"{x:.3g}" for x in np.asarray(position) / lattice_constant) + ") a"


def nearest_site(position: np.ndarray, atoms: Atoms) -> tuple[str, np.ndarray, float]:
    """(kind, Cartesian site, distance in A) of the high-symmetry site nearest ``position`` (minimum image)."""
    catalog = site_catalog(_lattice_constant(atoms), _reps(atoms))
    best: tuple[str, np.ndarray, float] | None = None
    for kind, sites in catalog.items():
        _, distances = find_mic(sites - np.asarray(position), atoms.cell, pbc=True)
        index = int(np.argmin(distances))
        if best is None or distances[index] < best[2]:
            best = (kind, sites[index], float(distances[index]))
    assert best is not None
    return best


# -- structures -------------------------------------------------------------------------------


def start_structure(lattice_constant: float, repeat: int | Sequence[int], start_site: str = "tetrahedral") -> Atoms:
    """The ideal supercell with the interstitial at ``start_site`` (a key of ``INTERSTITIAL_SITES``)."""
    if INTERSTITIAL_SITES.get(start_site) is None:
        raise ValueError(f"start_site must be an interstitial site of {sorted(INTERSTITIAL_SITES)}, not {start_site!r}")
    atoms = build_lif_supercell(repeat, lattice_constant, start_site)
    atoms.info["expected_positions"] = atoms.positions.copy()
    return atoms


def lattice_index(atoms: Atoms, fraction: Sequence[float]) -> int:
    """Index of the lattice (not interstitial) atom on the site ``fraction`` * a (minimum image, within 0.1 A)."""
    a = _lattice_constant(atoms)
    interstitial = atoms.info.get("interstitial_index")
    reference = atoms.info.get("expected_positions", atoms.positions)
    _, distances = find_mic(np.asarray(reference) - np.asarray(fraction) * a, atoms.cell, pbc=True)
    if interstitial is not None:
        distances[interstitial] = np.inf
    index = int(np.argmin(distances))
    if distances[index] > 0.1:
        raise ValueError(f"no lattice atom on the site {tuple(fraction)} a")
    return index


def path_end_structures(ideal_start: Atoms, path: str | MigrationPath) -> tuple[Atoms, Atoms, dict[str, int]]:
    """The ideal initial and final structures of ``path`` from an ideal :func:`start_structure`.

    :returns: ``(initial, final, movers)``; ``final`` has the atom order of ``initial`` with the moving
        atoms at their destinations, unwrapped (a destination outside the cell stays outside), and
        ``info['expected_positions']`` set; ``movers`` maps ``'interstitial'`` / ``'lattice'`` to the index
        of the atom that makes that move.
    """
    path = PATHS[path] if isinstance(path, str) else path
    if ideal_start.info.get("interstitial_site") != "tetrahedral":
        site = ideal_start.info.get("interstitial_site")
        raise ValueError(f"the paths start from the tetrahedral site, not {site!r}")
    a = _lattice_constant(ideal_start)
    initial = ideal_start.copy()
    initial.info["expected_positions"] = np.array(ideal_start.info["expected_positions"])
    final = initial.copy()
    positions = np.array(initial.info["expected_positions"])
    movers: dict[str, int] = {}
    for move in path.moves:
        if move.who == "interstitial":
            index = int(initial.info["interstitial_index"])
        else:
            index = lattice_index(initial, move.start)
        movers[move.who] = index
        start = positions[index]
        positions[index] = start + (np.asarray(move.end) - np.asarray(move.start)) * a
    final.positions = positions
    final.info["expected_positions"] = positions.copy()
    final.info["path"] = path.name
    initial.info["path"] = path.name
    return initial, final, movers


def align_to(atoms: Atoms, reference: Atoms) -> Atoms:
    """A copy of ``atoms`` with every atom moved by a lattice vector to its minimum image next to ``reference``."""
    displacement, _ = find_mic(atoms.positions - reference.positions, reference.cell, pbc=True)
    aligned = atoms.copy()
    aligned.positions = reference.positions + displacement
    aligned.calc = atoms.calc
    return aligned


def perturbed(atoms: Atoms, amplitude_A: float, seed: int) -> Atoms:
    """A copy with every atom displaced by a Gaussian of ``amplitude_A`` (A) per component.

    Breaks the symmetry of an ideal starting point, so that a relaxation started on a saddle (e.g. the
    face site) rolls off it instead of staying on it by symmetry.
    """
    copy = atoms.copy()
    copy.positions += np.random.default_rng(seed).normal(0.0, amplitude_A, size=copy.positions.shape)
    return copy


# -- checks -----------------------------------------------------------------------------------


@dataclass
class EndpointCheck:
    ok: bool
    detail: str
    max_li_displacement_A: float
    max_f_displacement_A: float

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "detail": self.detail,
            "max_li_displacement_A": self.max_li_displacement_A,
            "max_f_displacement_A": self.max_f_displacement_A,
        }


def displacements_from_expected(atoms: Atoms, expected: np.ndarray | None = None) -> np.ndarray:
    """Minimum-image distance (A) of every atom from its expected site."""
    expected = atoms.info["expected_positions"] if expected is None else expected
    _, distances = find_mic(atoms.positions - np.asarray(expected), atoms.cell, pbc=True)
    return np.asarray(distances)


def check_configuration(
    atoms: Atoms,
    expected: np.ndarray,
    what: str,
    li_tolerance_A: float = LI_SITE_TOLERANCE_A,
    f_tolerance_A: float = F_SITE_TOLERANCE_A,
    interstitial_tolerance_A: float = INTERSTITIAL_SITE_TOLERANCE_A,
) -> EndpointCheck:
    """Is every atom near its expected site?

    Li expected on an interstitial site: within ``interstitial_tolerance_A``; Li expected on a lattice site:
    within ``li_tolerance_A``; F: within ``f_tolerance_A``. ``atoms`` must carry ``info['repeat']`` and
    ``info['lattice_constant']`` (as built here); ``what`` names the requested configuration in the detail.
    When the check fails, the detail says what it became.
    """
    expected = np.asarray(expected)
    distances = displacements_from_expected(atoms, expected)
    symbols = np.array(atoms.get_chemical_symbols())
    li, f = symbols == "Li", symbols == "F"
    on_interstitial = np.array(
        [li[i] and nearest_site(expected[i], atoms)[0] != "lattice Li" for i in range(len(atoms))]
    )
    tolerance = np.where(f, f_tolerance_A, np.where(on_interstitial, interstitial_tolerance_A, li_tolerance_A))
    max_interstitial = float(distances[on_interstitial].max()) if on_interstitial.any() else 0.0
    lattice_li = li & ~on_interstitial
    max_li = float(distances[lattice_li].max()) if lattice_li.any() else 0.0
    max_f = float(distances[f].max()) if f.any() else 0.0
    off = [int(i) for i in np.flatnonzero(distances > tolerance)]
    if not off:
        return EndpointCheck(
            True,
            f"{what}: interstitial Li within {max_interstitial:.3f} A (tolerance {interstitial_tolerance_A}), "
            f"lattice Li within {max_li:.3f} A (tolerance {li_tolerance_A}), F within {max_f:.3f} A "
            f"(tolerance {f_tolerance_A}) of their expected sites",
            max(max_li, max_interstitial),
            max_f,
        )
    detail = f"{what} not kept: {describe_configuration(atoms, expected, off)}"
    return EndpointCheck(False, detail, max(max_li, max_interstitial), max_f)


def describe_configuration(atoms: Atoms, expected: np.ndarray, indices: Sequence[int]) -> str:
    """Where the atoms ``indices`` (off their expected sites) went, and split-interstitial pairs."""
    a = _lattice_constant(atoms)
    symbols = atoms.get_chemical_symbols()
    distances = displacements_from_expected(atoms, expected)
    parts = []
    for index in indices:
        kind, site, distance = nearest_site(atoms.positions[index], atoms)
        parts.append(
            f"{symbols[index]} {index} is {distances[index]:.2f} A from its expected site "
            f"{_fmt_fraction(np.asarray(expected)[index], a)} and {distance:.2f} A from the {kind} site "
            f"{_fmt_fraction(site, a)}"
        )
    parts += _split_pairs(atoms)
    return "; ".join(parts)


def _split_pairs(atoms: Atoms) -> list[str]:
    """Lattice Li sites shared by two Li that are both off the site: a split (dumbbell) interstitial."""
    a = _lattice_constant(atoms)
    sites = site_catalog(a, _reps(atoms))["lattice Li"]
    li = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "Li"]
    notes = []
    for site in sites:
        vectors, distances = find_mic(atoms.positions[li] - site, atoms.cell, pbc=True)
        near = np.flatnonzero(distances < SPLIT_PAIR_RADIUS_A)
        if len(near) >= 2 and np.all(distances[near] > 0.3):
            pair = [li[k] for k in near]
            direction = vectors[near[0]] - vectors[near[1]]
            direction = direction / np.abs(direction).max()
            notes.append(
                f"split interstitial: Li {pair} share the lattice site {_fmt_fraction(site, a)} "
                f"(at {', '.join(f'{distances[k]:.2f}' for k in near)} A, "
                f"axis ~[{' '.join(f'{x:.2f}' for x in direction)}])"
            )
    return notes
