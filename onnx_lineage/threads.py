"""Threads for the hot loops: a pool when the work pays for it, the caller's thread when not, and
the BLAS library's thread count divided among the pool's workers while they run.

Starting a pool and its threads, and asking the loaded libraries for their thread controls, each
cost about a millisecond: more than the whole of a small model's matching. :func:`pool` therefore
runs the tasks in the calling thread when one worker is asked for, and :func:`blas_threads` finds
the BLAS libraries once per process.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache

from threadpoolctl import ThreadpoolController


class InPlace:
    """An executor that runs each task as it is submitted, in the caller's thread."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def submit(self, fn, *args) -> Future:
        done: Future = Future()
        done.set_result(fn(*args))
        return done


def pool(workers: int):
    """A thread pool of ``workers`` (tasks start in the order submitted), or :class:`InPlace`
    for one worker."""
    return ThreadPoolExecutor(max_workers=workers) if workers > 1 else InPlace()


@cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()  # inspects every loaded library: once per process


def blas_threads(threads: int):
    """Context in which the BLAS libraries use ``threads`` threads each (restored on exit)."""
    if threads < 1:
        return contextlib.nullcontext()
    return _controller().limit(limits=threads, user_api="blas")
