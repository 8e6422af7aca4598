"""How the interstitial Li moves: site assignment, hop events, their classification and rates.

Pure numpy/scipy (no AiiDA). Positions in Angstrom, unwrapped, shaped ``(n_frames, n_atoms, 3)``;
cells with the lattice vectors as rows; times in ps.

Sites
-----
Rock-salt LiF: Li on the fcc 4a sites, F on 4b, the interstitial at the tetrahedral 8c sites (the centres
of the small cubes of 4 Li + 4 F). In units of half the conventional lattice constant (the small cube),
ions sit on the integer points (Li: even coordinate sum, F: odd) and the tetrahedral sites on the
half-integer points. :func:`lif_sites` rebuilds these sites from the cell and the F positions of one frame
(the number of conventional cubes per axis is inferred from the number of F atoms and the cell lengths,
the origin from the F sublattice), so a trajectory needs no other metadata. Any other site list can be
passed as a :class:`SiteSet`.

Assignment (hysteresis / dwell rule)
------------------------------------
An atom *arrives* at a site only when it has been within ``r_in`` of that site for at least ``dwell``
consecutive frames; the arrival frame is the first of those frames. Between arrivals (vibrating far from
its site, in flight, or on a failed excursion that comes back) it keeps its last assignment. ``r_in`` is
smaller than half the shortest site-site distance, so the spheres are disjoint and an atom rattling on the
boundary between two sites (GEMDAT issue #226) is inside neither and is never counted. A transition
``A -> B`` records the last frame the atom was within ``r_in`` of ``A`` (``leave``) and the arrival frame
at ``B`` (``arrive``); ``[leave, arrive]`` is its flight interval.

Events
------
Two transitions of *different* atoms are linked when one hands a site on to the other (one atom's
destination is the other's origin) and their flight intervals are at most ``window`` frames apart (they
overlap for a concerted move). Connected groups of linked transitions are the events, classified as:

- ``direct``: one transition tetrahedral -> tetrahedral, no lattice site changes occupant;
- ``knockoff_collinear`` / ``knockoff_noncollinear`` (interstitialcy): atom X tetrahedral -> lattice
  site L while the Li on L leaves to a tetrahedral site. Collinear when the two displacements make an
  angle below ``COLLINEAR_MAX_DEG`` (ideal 0 deg, both along the same <111>), non-collinear up to
  ``EXCHANGE_MIN_DEG`` (ideal 70.5 or 109.5 deg); above that (ideal 180 deg, the knocked Li goes back to
  where X came from: an exchange that moves no defect) the event is ``other``;
- ``ring``: three or more atoms whose transitions form one chain (interstitial in, a sequence of lattice
  handovers, interstitial out) or one closed cycle (a cyclic permutation of lattice Li), other than the
  two-atom knock-off;
- ``other``: everything else (Frenkel-pair creation or recombination, two-atom swaps, a lattice Li
  hopping into a vacancy, tangled groups).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.spatial
import scipy.stats

from .arrhenius import ArrheniusFitError, fit_arrhenius
from .msd import _as_indices, _as_trajectory, remove_drift

__all__ = [
    "COLLINEAR_MAX_DEG",
    "EVENT_TYPES",
    "EXCHANGE_MIN_DEG",
    "Event",
    "MechanismResult",
    "SiteSet",
    "Transition",
    "analyse_mechanisms",
    "assign_sites",
    "combine_event_counts",
    "detect_events",
    "event_rates",
    "fit_rate_arrhenius",
    "geometric_factor",
    "haven_ratio",
    "hop_diffusivities",
    "lif_sites",
]

EVENT_TYPES = ("direct", "knockoff_collinear", "knockoff_noncollinear", "ring", "other")
LATTICE = "lattice"
INTERSTITIAL = "interstitial"

#: Angle between the two knock-off displacements (deg) below which the knock-off is collinear. The ideal
#: angles are 0, 70.5, 109.5 and 180 deg; the thresholds sit half-way between neighbouring ideals.
COLLINEAR_MAX_DEG = 35.0
#: Above this angle the two atoms have exchanged places (no net defect motion): ``other``.
EXCHANGE_MIN_DEG = 145.0
#: Default inner radius as a fraction of the shortest site-site distance (tetrahedral-lattice,
#: sqrt(3)/4 a = 1.745 A at a = 4.03 A, giving 0.52 A): far outside thermal vibration at a site (rms
#: ~0.15 A per coordinate), well inside half the distance to the nearest other site.
R_IN_FRACTION = 0.3


# --------------------------------------------------------------------------------------------------- sites


@dataclass(frozen=True)
class SiteSet:
    """Sites in a periodic orthorhombic box.

    ``positions`` (n_sites, 3) Cartesian in the drift-corrected frame of the trajectory; ``kinds`` one of
    ``'lattice'`` / ``'interstitial'`` per site; ``box`` the three box lengths; ``lattice_constant`` (per
    axis) and ``repeat`` when the sites were generated from a rock-salt lattice.
    """

    positions: np.ndarray
    kinds: tuple[str, ...]
    box: np.ndarray
    lattice_constant: tuple[float, float, float] | None = None
    repeat: tuple[int, int, int] | None = None

    @property
    def n_sites(self) -> int:
        return int(self.positions.shape[0])

    def min_distance(self) -> float:
        """Shortest periodic distance between two sites."""
        tree = scipy.spatial.cKDTree(np.mod(self.positions, self.box), boxsize=self.box)
        dist, _ = tree.query(np.mod(self.positions, self.box), k=2)
        return float(dist[:, 1].min())


def _orthorhombic_box(cell: np.ndarray) -> np.ndarray:
    cell_arr = np.asarray(cell, dtype=float)
    if cell_arr.shape != (3, 3):
        raise ValueError(f"cell must be a (3, 3) matrix with lattice vectors as rows; got shape {cell_arr.shape}")
    box = np.diag(cell_arr).copy()
    off = cell_arr - np.diag(box)
    if np.any(box <= 0) or np.max(np.abs(off)) > 1e-6 * box.max():
        raise ValueError(
            "site analysis needs an orthorhombic cell (lattice vectors along x, y, z), as the conventional "
            f"cubic LiF supercells are; got {cell_arr.tolist()}"
        )
    return box


def _nearest_with_parity(points: np.ndarray, parity: int) -> np.ndarray:
    """Nearest integer points whose coordinate sum has the given parity (decoding of the D3 lattice)."""
    rounded = np.round(points)
    wrong = (rounded.sum(axis=-1).astype(np.int64) % 2) != parity
    if np.any(wrong):
        resid = points[wrong] - rounded[wrong]
        worst = np.argmax(np.abs(resid), axis=-1)
        rows = np.arange(resid.shape[0])
        step = np.where(resid[rows, worst] >= 0, 1.0, -1.0)
        fixed = rounded[wrong]
        fixed[rows, worst] += step
        rounded[wrong] = fixed
    return rounded


def lif_sites(cell: np.ndarray, anion_positions: np.ndarray, repeat: Sequence[int] | None = None) -> SiteSet:
    """Li lattice sites and tetrahedral interstitial sites of a rock-salt supercell.

    Args:
        cell: orthorhombic supercell (rows = lattice vectors), Angstrom.
        anion_positions: positions of all F atoms in one frame (the reference frame), shape (n_F, 3).
        repeat: conventional cubes per axis; inferred when ``None`` from n_F / 4 cubes and the cell lengths.

    Returns:
        A :class:`SiteSet` with 4 lattice and 8 interstitial sites per conventional cube, lattice first.
    """
    box = _orthorhombic_box(cell)
    anions = np.asarray(anion_positions, dtype=float)
    if anions.ndim != 2 or anions.shape[1] != 3 or anions.shape[0] < 4:
        raise ValueError(f"anion_positions must have shape (n_F >= 4, 3); got {anions.shape}")
    if repeat is None:
        if anions.shape[0] % 4:
            raise ValueError(f"{anions.shape[0]} F atoms is not a whole number of conventional cubes (4 F each)")
        n_cells = anions.shape[0] // 4
        a_est = (np.prod(box) / n_cells) ** (1.0 / 3.0)
        reps = np.maximum(np.round(box / a_est).astype(int), 1)
        if int(np.prod(reps)) != n_cells:
            raise ValueError(
                f"cannot infer the conventional cubes: box {box.tolist()} with {n_cells} cubes of about "
                f"{a_est:.3f} A gives {reps.tolist()}; pass repeat explicitly"
            )
    else:
        reps = np.asarray(repeat, dtype=int)
        if reps.shape != (3,) or np.any(reps < 1):
            raise ValueError(f"repeat must be three integers >= 1; got {repeat!r}")
    a_axes = box / reps
    if np.max(a_axes) / np.min(a_axes) > 1.1:
        raise ValueError(f"conventional cell lengths {a_axes.tolist()} are not close to cubic")
    half = a_axes / 2.0

    # Anions on the integer points with odd sum (in units of a/2) relative to the origin of the Li lattice.
    p = anions / half
    origin = p[0] - np.array([1.0, 0.0, 0.0])
    resid = p - origin
    resid = resid - _nearest_with_parity(resid, 1)
    origin = origin + resid.mean(axis=0)
    if np.max(np.linalg.norm(resid - resid.mean(axis=0), axis=1) * half.mean()) > 0.25 * a_axes.mean():
        raise ValueError("the F atoms of the reference frame are not on a rock-salt anion sublattice")

    n2 = 2 * reps
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in n2], indexing="ij"), axis=-1).reshape(-1, 3)
    lattice = grid[grid.sum(axis=1) % 2 == 0].astype(float)
    tetra = grid.astype(float) + 0.5
    points = np.vstack([lattice, tetra]) + origin
    positions = points * half
    kinds = (LATTICE,) * len(lattice) + (INTERSTITIAL,) * len(tetra)
    return SiteSet(
        positions=positions,
        kinds=kinds,
        box=box,
        lattice_constant=(float(a_axes[0]), float(a_axes[1]), float(a_axes[2])),
        repeat=(int(reps[0]), int(reps[1]), int(reps[2])),
    )


# ---------------------------------------------------------------------------------------------- assignment


@dataclass(frozen=True)
class Transition:
    """One atom's move from site to site (indices into the SiteSet; ``atom`` a trajectory atom index)."""

    atom: int
    from_site: int
    to_site: int
    from_kind: str
    to_kind: str
    leave_frame: int
    arrive_frame: int
    displacement: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "atom": self.atom,
            "from_site": self.from_site,
            "to_site": self.to_site,
            "from_kind": self.from_kind,
            "to_kind": self.to_kind,
            "leave_frame": self.leave_frame,
            "arrive_frame": self.arrive_frame,
            "displacement_A": list(self.displacement),
        }


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start index, length and value of every run of equal consecutive values."""
    change = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [values.size]]))
    return starts, lengths, values[starts]


def assign_sites(
    positions: np.ndarray,
    atom_indices: Sequence[int],
    sites: SiteSet,
    r_in: float | None = None,
    dwell: int = 3,
) -> tuple[np.ndarray, list[Transition]]:
    """Site of every selected atom in every frame, with the hysteresis/dwell rule of the module docstring.

    Args:
        positions: drift-corrected unwrapped positions ``(n_frames, n_atoms, 3)``, in the frame of ``sites``.
        atom_indices: the atoms to follow (the mobile Li).
        sites: where they may sit.
        r_in: inner radius (A); default ``R_IN_FRACTION`` times the shortest site-site distance.
        dwell: frames an atom must stay within ``r_in`` of a new site before it counts as arrived (>= 1).

    Returns:
        ``assignment`` (n_frames, n_selected) of site indices (column k follows ``atom_indices[k]``; an
        atom that never settles anywhere keeps -1) and the list of transitions in order of arrival.
    """
    pos = _as_trajectory(positions)
    atoms = _as_indices(atom_indices, pos.shape[1], "atom_indices")
    if isinstance(dwell, bool) or not isinstance(dwell, (int, np.integer)) or dwell < 1:
        raise ValueError(f"dwell must be an integer >= 1 (frames); got {dwell!r}")
    d_min = sites.min_distance()
    radius = R_IN_FRACTION * d_min if r_in is None else float(r_in)
    if not 0 < radius < 0.5 * d_min:
        raise ValueError(
            f"r_in = {radius:.3g} A must be > 0 and below half the shortest site-site distance "
            f"({0.5 * d_min:.3g} A) so that the site spheres do not overlap"
        )
    box = sites.box
    tree = scipy.spatial.cKDTree(np.mod(sites.positions, box), boxsize=box)
    n_frames = pos.shape[0]
    sel = pos[:, atoms, :]
    dist, nearest = tree.query(np.mod(sel, box).reshape(-1, 3), k=1)
    dist = dist.reshape(n_frames, atoms.size)
    nearest = nearest.reshape(n_frames, atoms.size)
    # Site centres in the unwrapped frame of each atom: displacements between them are exact lattice vectors.
    offset = sel - sites.positions[nearest]
    offset -= box * np.round(offset / box)
    centres = sel - offset

    assignment = np.full((n_frames, atoms.size), -1, dtype=np.int64)
    transitions: list[Transition] = []
    for k, atom in enumerate(atoms):
        inside = np.where(dist[:, k] < radius, nearest[:, k], -1)
        starts, lengths, values = _runs(inside)
        settled = (values >= 0) & (lengths >= dwell)
        current = -1
        current_since = 0
        for start, value in zip(starts[settled], values[settled], strict=True):
            if value == current:
                continue
            if current >= 0:
                # Last frame within r_in of the old site, at or after the arrival there.
                back = np.flatnonzero(inside[current_since:start] == current)
                leave = current_since + int(back[-1]) if back.size else current_since
                disp = centres[start, k] - centres[leave, k]
                transitions.append(
                    Transition(
                        atom=int(atom),
                        from_site=int(current),
                        to_site=int(value),
                        from_kind=sites.kinds[current],
                        to_kind=sites.kinds[value],
                        leave_frame=leave,
                        arrive_frame=int(start),
                        displacement=(float(disp[0]), float(disp[1]), float(disp[2])),
                    )
                )
                assignment[start:, k] = value
            else:
                # The first settled site is where the atom was from the start: no event.
                assignment[:, k] = value
            current, current_since = int(value), int(start)
    transitions.sort(key=lambda t: (t.arrive_frame, t.atom))
    return assignment, transitions


# -------------------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    """A classified group of linked transitions."""

    kind: str
    atoms: tuple[int, ...]
    start_frame: int
    end_frame: int
    sites: tuple[tuple[int, int], ...]
    angle_deg: float | None
    transitions: tuple[Transition, ...] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "atoms": list(self.atoms),
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "sites": [list(pair) for pair in self.sites],
            "angle_deg": self.angle_deg,
        }


def _angle_deg(u: Sequence[float], v: Sequence[float]) -> float:
    a, b = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def _is_chain_or_cycle(group: Sequence[Transition]) -> bool:
    """One simple path or one closed cycle of site handovers, every atom moving once."""
    froms = [t.from_site for t in group]
    tos = [t.to_site for t in group]
    if len(set(froms)) != len(froms) or len(set(tos)) != len(tos):
        return False
    if len({t.atom for t in group}) != len(group):
        return False
    step = dict(zip(froms, tos, strict=True))
    sources = set(froms) - set(tos)
    if not sources:
        start = froms[0]  # closed cycle
    elif len(sources) == 1:
        start = next(iter(sources))
    else:
        return False
    seen, site = 0, start
    while site in step and seen <= len(group):
        site = step[site]
        seen += 1
        if site == start:
            break
    if seen != len(group):
        return False
    # A chain enters and leaves through interstitial sites; a cycle only visits lattice sites.
    if sources:
        sink = next(iter(set(tos) - set(froms)))
        by_from = {t.from_site: t for t in group}
        by_to = {t.to_site: t for t in group}
        return by_from[start].from_kind == INTERSTITIAL and by_to[sink].to_kind == INTERSTITIAL
    return all(t.from_kind == LATTICE for t in group)


def _classify(group: Sequence[Transition]) -> tuple[str, float | None]:
    if len(group) == 1:
        t = group[0]
        return ("direct" if t.from_kind == INTERSTITIAL and t.to_kind == INTERSTITIAL else "other"), None
    if len(group) == 2 and group[0].atom != group[1].atom:
        first, second = group
        for x, y in ((first, second), (second, first)):
            if (
                x.from_kind == INTERSTITIAL
                and x.to_kind == LATTICE
                and y.from_site == x.to_site
                and y.to_kind == INTERSTITIAL
            ):
                angle = _angle_deg(x.displacement, y.displacement)
                if angle < COLLINEAR_MAX_DEG:
                    return "knockoff_collinear", angle
                if angle < EXCHANGE_MIN_DEG:
                    return "knockoff_noncollinear", angle
                return "other", angle
        return "other", None
    if len({t.atom for t in group}) >= 3 and _is_chain_or_cycle(group):
        return "ring", None
    return "other", None


def detect_events(transitions: Sequence[Transition], window: int = 2) -> list[Event]:
    """Group transitions into events and classify them (see the module docstring).

    Args:
        transitions: from :func:`assign_sites`.
        window: largest gap (frames) between two flight intervals that still links a site handover.
            A concerted move has overlapping intervals (gap <= 0); the default 2 frames only absorbs the
            dead zone of the inner radius. A larger window merges a move with a later, separate refill
            of the site it vacated.
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
        raise ValueError(f"window must be an integer >= 0 (frames); got {window!r}")
    trans = list(transitions)
    parent = list(range(len(trans)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_from: dict[int, list[int]] = {}
    for i, t in enumerate(trans):
        by_from.setdefault(t.from_site, []).append(i)
    for i, t in enumerate(trans):
        for j in by_from.get(t.to_site, []):
            other = trans[j]
            if other.atom == t.atom:
                continue
            gap = max(t.leave_frame, other.leave_frame) - min(t.arrive_frame, other.arrive_frame)
            if gap <= window:
                parent[find(i)] = find(j)

    groups: dict[int, list[Transition]] = {}
    for i, t in enumerate(trans):
        groups.setdefault(find(i), []).append(t)
    events = []
    for group in groups.values():
        group.sort(key=lambda t: (t.leave_frame, t.arrive_frame, t.atom))
        kind, angle = _classify(group)
        events.append(
            Event(
                kind=kind,
                atoms=tuple(sorted({t.atom for t in group})),
                start_frame=min(t.leave_frame for t in group),
                end_frame=max(t.arrive_frame for t in group),
                sites=tuple((t.from_site, t.to_site) for t in group),
                angle_deg=angle,
                transitions=tuple(group),
            )
        )
    events.sort(key=lambda e: (e.start_frame, e.end_frame))
    return events


# --------------------------------------------------------------------------------------- rates and Haven


def event_rates(counts: Mapping[str, int], duration_ps: float, confidence: float = 0.95) -> dict[str, dict]:
    """Rate of each event type with its Poisson error, upper limit and fraction of all events.

    ``rate = N / t`` (1/ps), ``rate_err = sqrt(N) / t`` (zero for N = 0: use the limit), ``upper_limit`` the
    one-sided Poisson upper limit at ``confidence`` (``chi2.ppf(cl, 2N + 2) / (2 t)``; 3.0 / t for N = 0 at
    95 %), ``fraction = N / N_total`` with its binomial error ``sqrt(p (1 - p) / N_total)``.
    """
    t = float(duration_ps)
    if not t > 0:
        raise ValueError(f"duration_ps must be > 0; got {duration_ps!r}")
    total = int(sum(int(counts.get(k, 0)) for k in EVENT_TYPES))
    out = {}
    for kind in EVENT_TYPES:
        n = int(counts.get(kind, 0))
        p = n / total if total else float("nan")
        out[kind] = {
            "count": n,
            "rate_per_ps": n / t,
            "rate_err_per_ps": math.sqrt(n) / t,
            "upper_limit_per_ps": float(scipy.stats.chi2.ppf(confidence, 2 * n + 2) / (2.0 * t)),
            "confidence": confidence,
            "fraction": p,
            "fraction_err": math.sqrt(p * (1.0 - p) / total) if total else float("nan"),
        }
    return out


def combine_event_counts(results: Sequence[MechanismResult]) -> tuple[dict[str, int], float]:
    """Summed counts per type and total duration (ps) over replicas."""
    counts = {k: 0 for k in EVENT_TYPES}
    duration = 0.0
    for result in results:
        for k in EVENT_TYPES:
            counts[k] += result.counts[k]
        duration += result.duration_ps
    return counts, duration


def fit_rate_arrhenius(
    temperatures_K: Sequence[float], counts: Sequence[Mapping[str, int]], durations_ps: Sequence[float]
) -> dict[str, dict]:
    """Arrhenius fit ``rate = nu0 exp(-Ea / kT)`` of each event type over temperatures.

    ``counts[i]`` and ``durations_ps[i]`` belong to ``temperatures_K[i]`` (replicas already summed). A
    temperature with no event of a type is left out of that type's fit (ln 0); a type with fewer than three
    temperatures with events gets ``{"fit": None, "reason": ...}``. Otherwise ``fit`` is
    :meth:`ArrheniusResult.to_dict` of :func:`aiida_lifdiff.analysis.arrhenius.fit_arrhenius` with the
    rates (1/ps) in the ``D`` fields: ``D0_cm2_s`` is the prefactor nu0 in 1/ps and ``D300_cm2_s`` the
    rate at 300 K in 1/ps (the field names are the fit's, the unit is the input's).
    """
    temps = [float(t) for t in temperatures_K]
    if not len(temps) == len(counts) == len(durations_ps):
        raise ValueError("temperatures_K, counts and durations_ps must have equal lengths")
    out = {}
    for kind in EVENT_TYPES:
        used = [
            (t, int(c.get(kind, 0)) / d, math.sqrt(int(c.get(kind, 0))) / d)
            for t, c, d in zip(temps, counts, durations_ps, strict=True)
            if int(c.get(kind, 0)) > 0
        ]
        if len(used) < 3:
            out[kind] = {"fit": None, "reason": f"events at only {len(used)} temperature(s); need 3"}
            continue
        try:
            fit = fit_arrhenius([u[0] for u in used], [u[1] for u in used], [u[2] for u in used])
        except ArrheniusFitError as exception:
            out[kind] = {"fit": None, "reason": str(exception)}
            continue
        out[kind] = {"fit": fit.to_dict(), "reason": "", "unit": "1/ps"}
    return out


def haven_ratio(
    d_tracer: float,
    d_tracer_err: float,
    d_collective: float,
    d_collective_err: float,
    n_mobile: int,
    block_tracer: Sequence[float] | None = None,
    block_collective: Sequence[float] | None = None,
) -> tuple[float, float]:
    """Haven ratio ``H = D_tracer / D_sigma = N D_tracer / D_collective`` and its error.

    Definitions (those of :func:`aiida_lifdiff.analysis.diffusion.estimate_diffusivity`):
    ``D_tracer = (1 / 6Nt) sum_i <|dr_i(t)|^2>`` averaged over all N mobile Li (lattice and interstitial),
    ``D_collective = (1 / 6t) <|sum_i dr_i(t)|^2>`` (the summed displacement, *not* divided by N: with one
    interstitial it is the diffusivity of the defect). The charge (conductivity) diffusivity is
    ``D_sigma = D_collective / N``, so ``H = N D_tracer / D_collective``. A single carrier hopping on its
    own (direct interstitial mechanism, uncorrelated) gives H = 1; the collinear interstitialcy 1/3.

    Error (first order): ``(sigma_H / H)^2 = (s_t/D_t)^2 + (s_c/D_c)^2 - 2 cov(D_t, D_c) / (D_t D_c)``.
    Without the per-block estimates the covariance is taken as zero (independent errors). Both D come
    from the same trajectories and are positively correlated, so that overestimates the error
    (conservative). With ``block_tracer`` and ``block_collective`` (``DiffusivityResult.block_D_A2_ps`` of
    the two modes, same replicas and blocks, so paired) the covariance of the two means is estimated
    from the blocks. ``nan`` when either D is not positive.
    """
    n = int(n_mobile)
    if n < 1:
        raise ValueError(f"n_mobile must be >= 1; got {n_mobile!r}")
    if not d_collective > 0 or not d_tracer > 0:
        return float("nan"), float("nan")
    h = n * d_tracer / d_collective
    var = (d_tracer_err / d_tracer) ** 2 + (d_collective_err / d_collective) ** 2
    if block_tracer is not None and block_collective is not None:
        bt, bc = np.asarray(block_tracer, dtype=float), np.asarray(block_collective, dtype=float)
        if bt.shape != bc.shape or bt.ndim != 1 or bt.size < 2:
            raise ValueError("block_tracer and block_collective must be paired 1-D arrays of >= 2 block estimates")
        cov = float(np.cov(bt, bc, ddof=1)[0, 1]) / bt.size
        var -= 2.0 * cov / (d_tracer * d_collective)
    return float(h), float(h * math.sqrt(max(var, 0.0)))


def geometric_factor(events: Sequence[Event]) -> float:
    """``g = sum_events sum_atoms |s_i|^2 / sum_events |sum_atoms s_i|^2`` over the defect-moving events.

    For uncorrelated events, ``N D_tracer(uncorrelated) / D_collective = g``, so the tracer correlation
    factor implied by a measured Haven ratio is ``f = H / g``. Ideal values: direct hop 1, collinear
    knock-off 1/2, non-collinear knock-off 3/4 (70.5 deg) or 3/2 (109.5 deg). Events with no net
    displacement (exchanges, cycles) add to the numerator only. ``nan`` without events.
    """
    num = den = 0.0
    for event in events:
        disp = np.array([t.displacement for t in event.transitions])
        num += float((disp**2).sum())
        den += float((disp.sum(axis=0) ** 2).sum())
    return num / den if den > 0 else float("nan")


def hop_diffusivities(events: Sequence[Event], duration_ps: float, n_mobile: int) -> dict[str, float]:
    """Diffusivities the detected hops give if successive hops were uncorrelated (random walks), A^2/ps.

    ``D_tracer_hops = sum_events sum_atoms |s_i|^2 / (6 N t)`` and ``D_defect_hops = sum_events |sum_atoms
    s_i|^2 / (6 t)``, to compare with the MSD estimates of the same trajectory: ``D_collective`` close to
    ``D_defect_hops`` says the events account for the defect's motion; ``D_tracer / D_tracer_hops`` is
    the tracer correlation factor f measured directly (no assumption about the defect walk).
    """
    t = float(duration_ps)
    if not t > 0 or int(n_mobile) < 1:
        raise ValueError("duration_ps must be > 0 and n_mobile >= 1")
    num = den = 0.0
    for event in events:
        disp = np.array([tr.displacement for tr in event.transitions])
        num += float((disp**2).sum())
        den += float((disp.sum(axis=0) ** 2).sum())
    return {"D_tracer_hops_A2_ps": num / (6.0 * int(n_mobile) * t), "D_defect_hops_A2_ps": den / (6.0 * t)}


# ------------------------------------------------------------------------------------------------ driver


@dataclass(frozen=True)
class MechanismResult:
    """Sites, per-frame assignment, transitions, events and rates of one trajectory."""

    sites: SiteSet = field(repr=False)
    mobile_indices: tuple[int, ...] = field(repr=False)
    assignment: np.ndarray = field(repr=False, compare=False)
    transitions: tuple[Transition, ...] = field(repr=False)
    events: tuple[Event, ...] = field(repr=False)
    counts: dict[str, int]
    duration_ps: float
    r_in_A: float
    dwell_frames: int
    window_frames: int

    @property
    def rates(self) -> dict[str, dict]:
        return event_rates(self.counts, self.duration_ps)

    def to_dict(self, with_events: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "counts": dict(self.counts),
            "duration_ps": self.duration_ps,
            "rates": self.rates,
            "r_in_A": self.r_in_A,
            "dwell_frames": self.dwell_frames,
            "window_frames": self.window_frames,
            "n_transitions": len(self.transitions),
            "n_sites": self.sites.n_sites,
        }
        if with_events:
            out["event_list"] = [e.to_dict() for e in self.events]
        return out


def analyse_mechanisms(
    positions: np.ndarray,
    cell: np.ndarray,
    times_ps: np.ndarray,
    mobile_indices: Sequence[int],
    reference_indices: Sequence[int] | None,
    sites: SiteSet | None = None,
    r_in: float | None = None,
    dwell: int = 3,
    window: int = 2,
) -> MechanismResult:
    """Sites, transitions and classified events of one unwrapped trajectory.

    Args:
        positions: unwrapped positions ``(n_frames, n_atoms, 3)`` (A).
        cell: orthorhombic cell, rows = lattice vectors (A).
        times_ps: time of each frame (only the total duration is used, for the rates).
        mobile_indices: the Li atoms.
        reference_indices: the F atoms: their mean drift is removed first, and, when ``sites`` is None,
            their frame-0 positions define the rock-salt sites (:func:`lif_sites`). ``None`` removes the
            mean drift of all atoms and then needs ``sites``.
        sites: explicit sites in the drift-corrected frame (the frame-0 frame); default from the F atoms.
        r_in, dwell: the arrival rule (:func:`assign_sites`).
        window: the linking window of :func:`detect_events` (frames).
    """
    pos = _as_trajectory(positions)
    times = np.asarray(times_ps, dtype=float)
    if times.shape != (pos.shape[0],):
        raise ValueError(f"times_ps must have one entry per frame ({pos.shape[0]}); got shape {times.shape}")
    mobile = _as_indices(mobile_indices, pos.shape[1], "mobile_indices")
    corrected = remove_drift(pos, reference_indices)
    if sites is None:
        if reference_indices is None:
            raise ValueError("without reference_indices (the F atoms) pass the sites explicitly")
        ref = _as_indices(reference_indices, pos.shape[1], "reference_indices")
        sites = lif_sites(cell, corrected[0, ref, :])
    d_min = sites.min_distance()
    radius = R_IN_FRACTION * d_min if r_in is None else float(r_in)
    assignment, transitions = assign_sites(corrected, mobile, sites, r_in=radius, dwell=dwell)
    events = detect_events(transitions, window=window)
    counts = {k: 0 for k in EVENT_TYPES}
    for event in events:
        counts[event.kind] += 1
    duration = float(times[-1] - times[0]) if times.size > 1 else 0.0
    if not duration > 0:
        raise ValueError("times_ps must span a positive duration")
    return MechanismResult(
        sites=sites,
        mobile_indices=tuple(int(i) for i in mobile),
        assignment=assignment,
        transitions=tuple(transitions),
        events=tuple(events),
        counts=counts,
        duration_ps=duration,
        r_in_A=float(radius),
        dwell_frames=int(dwell),
        window_frames=int(window),
    )
