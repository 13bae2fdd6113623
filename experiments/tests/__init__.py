"""Tests of the binaries as a user runs them (subprocesses, exit codes, one-line errors)."""
