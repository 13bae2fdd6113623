"""Infrastructure every binary and library package uses; depends on nothing else here.

- `errors`: UsageError, the one exception for mistakes a user can fix.
- `stops`: Ctrl-C / SIGTERM end as one line, never raised inside TensorFlow.
- `binary`: the one opening every binary shares (flags, stderr, guarded exit).
- `settings`: settings groups (frozen dataclasses whose fields are flags).
- `tff_worker`: the lifetime of TFF's worker_binary (loopback-only, dies with us).
- `child_processes`: children that cannot outlive us.
- `results`: the one results layout (hparams.json, metrics.csv, checkpoints).
- `progress`, `resources`, `stderr_filter`, `paths`: progress bar, memory
  checks, TensorFlow's benign noise filtered, the checkout's fixed places.

Nothing is re-exported here: `experiments/__init__.py` imports `stops` and
`stderr_filter` before TensorFlow loads, and this package must stay that light.
"""
