"""aiida-lifdiff: provenance-tracked Li diffusion in LiF with classical and machine-learned potentials."""

__version__ = "0.1.0"
