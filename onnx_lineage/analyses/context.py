"""What every analysis of a pair starts from, in one place: its memory budget, both models
loaded, the data arranged for them (the built-in digits by default), the random generator, the
progress callback and the clock (:func:`begin`); and the template every analysis follows
(:class:`Analysis`): its settings are its fields, calling it begins a run and hands it to the
analysis' own :meth:`Analysis.run`.
"""

from __future__ import annotations

import abc
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator, final

import numpy as np

from onnx_lineage import memory
from onnx_lineage.data import Dataset, arrange_for, digits
from onnx_lineage.model.footprint import Footprint, require
from onnx_lineage.model.loading import LoadedModel, as_loaded
from onnx_lineage.results import Result


def _silent(name: str) -> None:
    """No progress to show."""


@dataclass
class Run:
    """One analysis of a pair, under way.

    Attributes
    ----------
    a, b : LoadedModel
    data : Dataset
        Arranged for both models (:func:`~onnx_lineage.data.arrange_for`).
    rng : numpy Generator
        Every random draw of the analysis, in order (one generator: the same ``seed``, the same
        numbers).
    step : callable
        Called with a description of each step as it starts.
    started : float
        ``time.perf_counter()`` when the run began.
    seed : int
        The seed the run was asked for (``rng`` was seeded with it unless one was given).
    """

    a: LoadedModel
    b: LoadedModel
    data: Dataset
    rng: np.random.Generator
    step: Callable[[str], None] = _silent
    started: float = field(default_factory=time.perf_counter)
    seed: int = 0

    def seconds(self) -> float:
        """Wall time since the run began."""
        return time.perf_counter() - self.started


@contextmanager
def begin(a, b, data: Dataset | None = None, *, seed: int = 0,
          rng: np.random.Generator | None = None, progress=None, first: str = "",
          max_memory: int | str | None = None) -> Iterator[Run]:
    """A run on models ``a`` and ``b`` (paths or LoadedModel) and ``data`` (default: the built-in
    digits), for the block it opens: ``rng`` continues a generator already in use (else one
    seeded with ``seed``); ``first``: the description of the first step (reading the models);
    ``max_memory``: the run's memory budget, for everything in the block, the reading included
    (None: the budget already in force, :mod:`onnx_lineage.memory`)."""
    started = time.perf_counter()
    step = progress or _silent
    with memory.limited(max_memory):
        if first:
            step(first)
        a, b = as_loaded(a), as_loaded(b)
        data = arrange_for(digits() if data is None else data, a, b)
        yield Run(a, b, data, np.random.default_rng(seed) if rng is None else rng, step,
                  started=started, seed=seed)


class Analysis(abc.ABC):
    """One analysis of a pair, on one template (foolbox's attacks, Polygraphy's runners): a
    subclass holds its settings as fields (a frozen dataclass) and implements :meth:`run`, its
    own steps only; calling it (``__call__``, the same for every analysis) begins the run with
    :func:`begin` (memory budget, both models loaded, data arranged, generator, progress, clock)
    and returns what :meth:`run` makes of it.

    Attributes
    ----------
    first : str
        The description of the first step (reading the models), shown as the run begins.
    """

    first: ClassVar[str] = ""
    #: The command's name in messages (``determine``).
    command: ClassVar[str] = "the analysis"

    @final
    def __call__(self, a, b, data: Dataset | None = None, *, seed: int = 0,
                 rng: np.random.Generator | None = None, progress=None,
                 max_memory: int | str | None = None) -> Result:
        """The analysis of ``a`` and ``b`` (paths or LoadedModel) on ``data``; the arguments are
        :func:`begin`'s."""
        with begin(a, b, data, seed=seed, rng=rng, progress=progress, first=self.first,
                   max_memory=max_memory) as run:
            estimate, fits = self.footprint(run)
            require(estimate, f"{self.command} of {run.a.name} and {run.b.name}", fits)
            return self.run(run)

    def footprint(self, run: Run) -> tuple[Footprint, tuple]:
        """What the run will hold at once, estimated from the graphs and the data before it
        starts (:mod:`onnx_lineage.model.footprint`), and ``(what, Footprint)`` of smaller runs
        that would answer part of the question, for the message when it exceeds the budget."""
        return Footprint(), ()

    @abc.abstractmethod
    def run(self, run: Run) -> Result:
        """The analysis' own steps on a run that has begun."""
