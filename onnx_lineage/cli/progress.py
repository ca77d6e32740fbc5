"""Progress on stderr: what the run is doing, for every step that takes a while.

On a terminal, a rich spinner names the current step (and is erased when the run ends, so an
error stays one line). Elsewhere (CI logs, pipes) nothing, unless ``ONNX_LINEAGE_PROGRESS=1``:
then a step that runs longer than :data:`SLOW` seconds is printed once as a plain line, so a long
run says what it is doing without flooding the log with the quick steps. Silent with
``--quiet`` and ``--json``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

#: Seconds after which a step is reported on a stderr that is not a terminal.
SLOW = 3.0
#: The step the run is in, shown or not: an internal error says where it happened.
current = {"step": ""}


@contextlib.contextmanager
def steps(enabled: bool = True):
    """Yield a callback ``step(name)`` that shows ``name`` as the current step (and records it
    in :data:`current`)."""
    with _shown(enabled) as show:
        def step(name: str) -> None:
            current["step"] = name
            show(name)
        yield step


@contextlib.contextmanager
def _shown(enabled: bool):
    if not enabled:
        yield lambda name: None
        return
    if not sys.stderr.isatty():
        if os.environ.get("ONNX_LINEAGE_PROGRESS", "") not in ("", "0"):
            with _plain() as step:
                yield step
        else:
            yield lambda name: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("starting", total=None)
        yield lambda name: bar.update(task, description=name)


@contextlib.contextmanager
def _plain():
    """Steps printed as lines once they have run :data:`SLOW` seconds."""
    start = time.perf_counter()
    state = {"timer": None}
    lock = threading.Lock()

    def report(name: str) -> None:
        print(f"onnx-lineage [{time.perf_counter() - start:6.1f} s]: {name}", file=sys.stderr,
              flush=True)

    def step(name: str) -> None:
        with lock:
            if state["timer"] is not None:
                state["timer"].cancel()
            timer = threading.Timer(SLOW, report, (name,))
            timer.daemon = True
            state["timer"] = timer
            timer.start()

    try:
        yield step
    finally:
        with lock:
            if state["timer"] is not None:
                state["timer"].cancel()
