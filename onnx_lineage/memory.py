"""The memory budget of a run: one figure that data arrays, tensor sizes from shape inference and
batch sizes are checked against before anything is allocated.

The budget is, in order: the run's own (:func:`limited`, an analysis's ``max_memory``: it holds
for that call and the code it runs on its thread), what :func:`set_budget` was given for the
process (the CLI's ``--max-memory``: one command, one process), the environment variable
``ONNX_LINEAGE_MAX_MEMORY``, or half of the machine's physical memory.
Sizes are written as bytes or with a unit: ``512M``, ``4G``, ``1.5GiB``.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import numpy as np

from onnx_lineage.errors import LineageError, UsageError

ENV = "ONNX_LINEAGE_MAX_MEMORY"
#: Share of the machine's physical memory a run may plan for when nothing else is set.
DEFAULT_FRACTION = 0.5
#: Used when the machine's memory cannot be read.
FALLBACK_BYTES = 4 * 1024**3

_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2,
          "MIB": 1024**2, "G": 1024**3, "GB": 1024**3, "GIB": 1024**3, "T": 1024**4,
          "TB": 1024**4, "TIB": 1024**4}
_process: int | None = None
_run: ContextVar[int | None] = ContextVar("onnx_lineage_run_budget", default=None)


class MemoryBudgetError(LineageError):
    """Something would need more memory than the run's budget."""


def parse_size(text: str) -> int:
    """``"512M"``, ``"4G"``, ``"1.5GiB"`` or plain bytes, as bytes (binary units)."""
    s = str(text).strip().upper().replace(" ", "")
    number = s.rstrip("BKMGTI")
    unit = s[len(number):]
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"not a size: {text!r} (write bytes, or e.g. 512M, 4G)") from None
    if unit not in _UNITS or value <= 0:
        raise UsageError(f"not a size: {text!r} (write bytes, or e.g. 512M, 4G)")
    return int(value * _UNITS[unit])


def machine_memory() -> int | None:
    """Physical memory of this machine in bytes, or None where it cannot be read."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _bytes(nbytes: int | str) -> int:
    return parse_size(nbytes) if isinstance(nbytes, str) else int(nbytes)


def set_budget(nbytes: int | str | None) -> None:
    """Set the process's budget (None: back to the environment variable or the default)."""
    global _process
    _process = None if nbytes is None else _bytes(nbytes)


@contextmanager
def limited(nbytes: int | str | None) -> Iterator[None]:
    """The budget of the code run in the block (None: the budget it already has)."""
    if nbytes is None:
        yield
        return
    token = _run.set(_bytes(nbytes))
    try:
        yield
    finally:
        _run.reset(token)


def budget() -> int:
    """The memory budget in bytes (see the module docstring)."""
    for value in (_run.get(), _process):
        if value is not None:
            return value
    if os.environ.get(ENV):
        return parse_size(os.environ[ENV])
    total = machine_memory()
    return int(total * DEFAULT_FRACTION) if total else FALLBACK_BYTES


def describe(nbytes: float) -> str:
    """``1.5 GiB``-style text for a byte count."""
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def check(nbytes: float, what: str) -> None:
    """Raise a :class:`MemoryBudgetError` naming the budget when ``what`` needs ``nbytes`` more
    than it allows."""
    limit = budget()
    if nbytes > limit:
        raise MemoryBudgetError(f"{what} needs {describe(nbytes)}, over the memory budget of "
                                f"{describe(limit)} (--max-memory or {ENV})")


#: Arrays from this size (numpy's huge-page threshold) get a mapping of their own from
#: :func:`plain_empty`.
PLAIN_FROM = 4 << 20


def plain_empty(shape, dtype=np.float32) -> np.ndarray:
    """An uninitialised array, like ``np.empty``, in an anonymous private mapping of its own.

    For large arrays written once whole (the blend buffer, a permuted copy of a weight, a
    similarity matrix): numpy advises the kernel to back every array over 4 MB with huge pages,
    and where the kernel then defragments memory on the spot (``transparent_hugepage/defrag``
    set to ``madvise``, a common default) the first write of such an array can stall for seconds
    (numpy issue 31590). Pages come as they are written and count as anonymous memory, as with
    ``np.empty``; the mapping goes with the last array that uses it.
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < PLAIN_FROM or not hasattr(mmap, "MAP_PRIVATE"):  # small: numpy advises none
        return np.empty(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE), dtype).reshape(shape)


#: Copies from this size that stand for a weight read in place (a permuted copy of B's) go to a
#: temporary file (:func:`spilled_empty`).
SPILL_FROM = 16 << 20
#: Disk space left free beside a spilled copy.
SPILL_MARGIN = 1 << 30
_spills: "weakref.WeakSet[mmap.mmap]" = weakref.WeakSet()


def spilled_empty(shape, dtype=np.float32) -> np.ndarray:
    """An uninitialised array, like :func:`plain_empty`, whose memory is a shared mapping of an
    unlinked temporary file: for copies of weights that were read in place (B's weights in A's
    unit order). Its pages are the page cache's, as the original's were: written back and
    dropped under pressure, and let go by :func:`~onnx_lineage.model.weights.release_pages`, so a permuted 7B model
    is not held in anonymous memory (13.5 GB) while it is matched and tested. Small arrays,
    platforms without shared mappings, or a disk without room get :func:`plain_empty`."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < SPILL_FROM or not hasattr(mmap, "MAP_SHARED"):
        return plain_empty(shape, dtype)
    folder = tempfile.gettempdir()
    if shutil.disk_usage(folder).free < size + SPILL_MARGIN:
        return plain_empty(shape, dtype)
    with tempfile.TemporaryFile(dir=folder) as f:  # unlinked: gone with its last mapping
        f.truncate(size)
        m = mmap.mmap(f.fileno(), size, flags=mmap.MAP_SHARED)
    _spills.add(m)
    return np.frombuffer(m, dtype).reshape(shape)


def spilled_maps() -> list:
    """The mappings behind every spilled array still alive (:func:`spilled_empty`), whose pages
    :func:`~onnx_lineage.model.weights.release_pages` lets go with the mapped weights'."""
    return list(_spills)
