"""Progress on stderr: a rich spinner per step, only when stderr is a terminal.

Silent with ``--json``, with ``--quiet``, or when stderr is not a terminal (CI logs, pipes).
"""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def steps(enabled: bool = True):
    """Yield a callback ``step(name)`` that shows ``name`` as the current step."""
    if not enabled or not sys.stderr.isatty():
        yield lambda name: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("starting", total=None)
        yield lambda name: bar.update(task, description=name)
