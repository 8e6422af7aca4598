"""Programs that run on compute nodes (torch, ase, mace-torch; never AiiDA).

``lifdiff-md`` (:mod:`aiida_lifdiff.runner.md`) is the batched NVT runner; its input schema,
outputs and exit codes are documented there.
"""
