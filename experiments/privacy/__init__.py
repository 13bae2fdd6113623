"""Differential privacy and its audit.

- `accounting`: epsilon for every mechanism and sampling the binaries accept
  (RDP and PLD), calibration of the noise to a target epsilon.
- `settings`: the DP and canary flags.
- `local_dp`: clients clip and noise their own updates.
- `canaries`: the memorisation audit's canaries and their exposure.

Modules are imported directly; the package re-exports nothing (the privacy
planner loads `accounting` without TensorFlow).
"""
