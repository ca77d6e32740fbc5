"""Peak memory: of this process, and of a command run in a child process.

``ru_maxrss`` is in KB on Linux; every figure here is in MB (KB / 1024). A child's peak comes
from the kernel when it is reaped (``os.wait4``), so it is the child's own, not the sum with this
process; but it starts from this process's own high-water mark (Linux carries it across the fork
and exec), so a process that runs children to measure them must stay smaller than they are. RSS
counts the pages of memory-mapped files a run has read (clean, given back under pressure);
:class:`AnonPeak` samples the anonymous part alone, what the run itself holds.
"""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class AnonPeak(threading.Thread):
    """Samples a process's anonymous resident memory (``RssAnon`` in ``/proc/PID/status``) every
    0.2 s: the part of its RSS that is not pages of mapped files (which are clean, shared with
    the page cache, and dropped by the kernel under pressure). ``peak_mb`` stays None where
    ``/proc`` is not there."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.path, self.peak_mb, self.done = Path(f"/proc/{pid}/status"), None, threading.Event()

    def run(self):
        while not self.done.wait(0.2):
            try:
                text = self.path.read_text()
            except OSError:
                return
            kb = next((int(line.split()[1]) for line in text.splitlines()
                       if line.startswith("RssAnon:")), None)
            if kb is not None:
                self.peak_mb = max(self.peak_mb or 0.0, kb / 1024)


@dataclass(frozen=True)
class ChildRun:
    """One command run by :func:`run_child`: its exit code, wall seconds, peak RSS (MB, from
    ``wait4``), peak anonymous RSS (MB, sampled; None unless asked for) and its output."""

    exit_code: int
    seconds: float
    peak_rss_mb: float
    peak_anon_mb: float | None
    stdout: bytes
    stderr: bytes


def run_child(cmd: list[str], cwd: Path, env: dict | None = None,
              anon: bool = False) -> ChildRun:
    """Run ``cmd`` in a child process (in ``cwd``; ``env``: variables added to this process's
    environment) and wait for it; with ``anon``, sample its anonymous memory (:class:`AnonPeak`).
    Its output goes to temporary files, read once it has ended."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd,
                                env=None if env is None else {**os.environ, **env})
        sampler = AnonPeak(proc.pid) if anon else None
        if sampler:
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        if sampler:
            sampler.done.set()
            sampler.join()
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(proc.returncode, seconds, usage.ru_maxrss / 1024,
                        sampler.peak_mb if sampler else None, out.read(), err.read())
