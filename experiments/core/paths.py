"""The checkout's fixed places: its root, its cache and the shared data beside it.

Every module that needs a path relative to the checkout takes it from here, so
moving a module never changes where the suite looks for its files.
"""

from __future__ import annotations

import os

# experiments/core/paths.py -> the checkout's root, three levels up.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Unpacked data, the compiled worker shim and other rebuildable files (git-ignored).
CACHE_DIR = os.path.join(REPO_ROOT, ".cache")
# The project's real data sets, beside the checkout on development and CI machines.
SHARED_DATA_DIR = os.path.join(REPO_ROOT, "..", "shared", "data")
