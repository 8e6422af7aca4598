"""Input writers and output readers for the MD engines (no AiiDA imports)."""
