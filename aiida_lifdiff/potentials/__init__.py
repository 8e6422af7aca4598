"""Interatomic potentials and how each engine uses them (no AiiDA imports)."""
