"""``njit`` with on-disk caching when a cache folder is writable, and without it otherwise.

Numba's ``cache=True`` makes importing fail when the package folder, ``$HOME/.cache`` and
``NUMBA_CACHE_DIR`` are all unwritable; in that case the kernels compile in memory instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numba


def _writable(path: Path) -> bool:
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return os.access(path, os.W_OK)


def _cache_ok() -> bool:
    candidates = [Path(__file__).parent / "__pycache__", Path.home() / ".cache"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        candidates.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    return any(_writable(p) for p in candidates)


CACHE = _cache_ok()


def njit(*args, **kwargs):
    """``numba.njit`` with ``cache`` set as this folder's writability allows."""
    kwargs.setdefault("cache", CACHE)
    return numba.njit(*args, **kwargs)
