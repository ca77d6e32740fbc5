"""Where pairwise work runs: in this process, or as Ray tasks on an existing Ray cluster.

Both executors take the same picklable task function and argument tuples and return results in
the same order, so a Ray run gives the same result as a local one. With Ray, every model's bytes
and the data set are put in Ray's object store once and shared by all tasks.
"""

from __future__ import annotations

from typing import Callable

from onnx_lineage.errors import LineageError


class LocalExecutor:
    """Runs tasks one after the other in this process."""

    name = "local"

    def share(self, value):
        """Make ``value`` available to tasks (here: itself)."""
        return value

    def map(self, fn: Callable, args: list[tuple], progress=None) -> list:
        out = []
        for k, a in enumerate(args):
            out.append(fn(*a))
            if progress:
                progress(k + 1, len(args))
        return out


class RayExecutor:
    """Runs tasks on a Ray cluster (``address``: ``auto``, ``local`` for a new local instance, or
    ``ray://host:port``). Ray must be installed (the ``[ray]`` extra)."""

    name = "ray"

    def __init__(self, address: str = "auto"):
        try:
            import ray
        except ImportError:
            raise LineageError("--ray needs Ray: pip install 'onnx-lineage[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            try:
                if address == "local":
                    ray.init(include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(address=address, log_to_driver=False)
            except Exception as exc:  # ConnectionError and Ray's own types
                raise LineageError(f"cannot connect to Ray at {address!r}: "
                                   f"{str(exc).splitlines()[0][:200]}") from None
        self._remote = {}

    def share(self, value):
        """Put ``value`` in the object store once; tasks receive the reference."""
        return self.ray.put(value)

    def map(self, fn: Callable, args: list[tuple], progress=None) -> list:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self.ray.remote(fn)
        refs = [remote.remote(*a) for a in args]
        out = self.ray.get(refs)
        if progress:
            progress(len(args), len(args))
        return out


def executor(ray: str | None) -> LocalExecutor | RayExecutor:
    """The executor for ``--ray`` (None: local)."""
    return LocalExecutor() if ray is None else RayExecutor(ray)
