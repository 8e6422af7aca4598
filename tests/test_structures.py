"""Tests of the LiF supercell builder (pure ASE, fast)."""

import numpy as np
import pytest

from aiida_lifdiff.structures import INTERSTITIAL_SITES, build_lif_supercell, species_indices


@pytest.mark.parametrize(("repeat", "n_atoms"), [(1, 9), (2, 65), (3, 217), ((2, 2, 3), 97)])
def test_atom_counts_and_composition(repeat, n_atoms):
    atoms = build_lif_supercell(repeat)
    assert len(atoms) == n_atoms
    n_f = (n_atoms - 1) // 2
    assert len(species_indices(atoms, "F")) == n_f
    assert len(species_indices(atoms, "Li")) == n_f + 1
    assert atoms.pbc.all()


def test_cell_and_perfect_lattice():
    atoms = build_lif_supercell(2, lattice_constant=4.03, interstitial_site="none")
    assert len(atoms) == 64
    assert atoms.info["interstitial_index"] is None
    np.testing.assert_allclose(atoms.cell[:], np.eye(3) * 8.06, atol=1e-12)
    # Rock salt: every Li has 6 F at a/2 and nothing closer.
    distances = atoms.get_all_distances(mic=True)
    li, f = species_indices(atoms, "Li"), species_indices(atoms, "F")
    nearest = np.sort(distances[np.ix_(li, f)], axis=1)
    np.testing.assert_allclose(nearest[:, :6], 2.015, atol=1e-9)
    assert (nearest[:, 6] > 2.8).all()
    same = distances[np.ix_(li, li)] + np.eye(len(li)) * 100
    assert same.min() == pytest.approx(4.03 / np.sqrt(2))


def test_tetrahedral_interstitial_is_last_and_in_place():
    a = 4.03
    atoms = build_lif_supercell(3, lattice_constant=a)
    assert atoms[-1].symbol == "Li"
    assert atoms.info["interstitial_index"] == len(atoms) - 1
    np.testing.assert_allclose(atoms[-1].position, [a / 4, a / 4, a / 4], atol=1e-12)
    # Order contract: the first 216 atoms are the perfect crystal.
    perfect = build_lif_supercell(3, lattice_constant=a, interstitial_site="none")
    np.testing.assert_allclose(atoms.positions[:-1], perfect.positions)
    assert atoms.get_chemical_symbols()[:-1] == perfect.get_chemical_symbols()
    # The tetrahedral site has 4 Li + 4 F at sqrt(3) a / 4.
    d = atoms.get_distances(len(atoms) - 1, range(len(atoms) - 1), mic=True)
    near = np.argsort(d)[:8]
    np.testing.assert_allclose(d[near], np.sqrt(3) * a / 4, atol=1e-9)
    assert sorted(atoms[i].symbol for i in near) == ["F"] * 4 + ["Li"] * 4
    assert np.sort(d)[8] > np.sqrt(3) * a / 4 + 0.5


def test_face_site_is_midpoint_between_two_tetrahedral_sites():
    a = 4.03
    atoms = build_lif_supercell(2, lattice_constant=a, interstitial_site="face")
    np.testing.assert_allclose(atoms[-1].position, [0.0, a / 4, a / 4], atol=1e-12)
    d = atoms.get_distances(len(atoms) - 1, range(len(atoms) - 1), mic=True)
    near = np.argsort(d)[:4]
    np.testing.assert_allclose(d[near], np.sqrt(2) * a / 4, atol=1e-9)
    assert sorted(atoms[i].symbol for i in near) == ["F", "F", "Li", "Li"]


def test_lattice_constant_scales_positions():
    atoms = build_lif_supercell((1, 2, 1), lattice_constant=4.2)
    np.testing.assert_allclose(atoms.cell.lengths(), [4.2, 8.4, 4.2])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repeat": 0}, "integers >= 1"),
        ({"repeat": -2}, "integers >= 1"),
        ({"repeat": 2.0}, "int >= 1"),
        ({"repeat": True}, "int >= 1"),
        ({"repeat": (2, 2)}, "exactly 3 entries"),
        ({"repeat": (2, 0, 2)}, "integers >= 1"),
        ({"repeat": "2"}, "exactly 3 entries"),
        ({"lattice_constant": 0.0}, "positive"),
        ({"lattice_constant": -4.03}, "positive"),
        ({"lattice_constant": float("nan")}, "positive"),
        ({"lattice_constant": 0.403}, "plausible range"),
        ({"lattice_constant": 40.3}, "plausible range"),
        ({"lattice_constant": "abc"}, "number"),
        ({"interstitial_site": "octahedral"}, "unknown interstitial_site 'octahedral'"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_lif_supercell(**kwargs)


def test_unusual_but_possible_lattice_constant_warns():
    with pytest.warns(UserWarning, match="differs by more than 15%"):
        build_lif_supercell(1, lattice_constant=5.5)


def test_site_table():
    assert INTERSTITIAL_SITES["tetrahedral"] == (0.25, 0.25, 0.25)
    assert INTERSTITIAL_SITES["none"] is None


def test_species_indices():
    atoms = build_lif_supercell(1)
    assert species_indices(atoms, "Li") == [0, 2, 4, 6, 8]
    assert species_indices(atoms, "Na") == []
    with pytest.raises(ValueError, match="not a chemical symbol"):
        species_indices(atoms, "li")
