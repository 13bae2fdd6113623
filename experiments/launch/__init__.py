"""Sweeps: a YAML spec expanded into trials, run as train.py processes.

- `spec`: expansion and checking of a spec (grid, zip, cases, random, seeds).
- `runner`: runs the trials locally, resumably, with a status file.
- `ray_launcher`: the same trials as Ray tasks.
- `flags`: the runner's flags, shared by the sweep and table binaries.

Modules are imported directly; the package re-exports nothing (the sweep
binary starts without TensorFlow).
"""
