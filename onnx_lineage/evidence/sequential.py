"""A Monte Carlo decision that does not move with the seed: Gandy's sequential procedure.

A Monte Carlo test decides whether its ideal p-value ``p`` (the share of all random copies at
least as extreme as the observation) is at most a level ``l``, from ``S_n``, the extreme copies
among ``n`` drawn. With a fixed number of copies the decision is a coin whenever ``p`` is near
``l``: two independent models whose ``p`` is 1/300 get ``related`` at one seed and ``unrelated``
at the next. Gandy (2009, "Sequential implementation of Monte Carlo tests with uniformly bounded
resampling risk", JASA 104) draws copies until ``S_n`` crosses one of two boundaries, computed
beforehand under ``p = l`` so that, for every ``p``, the chance of the decision that a run with
infinitely many copies would not make, the *resampling risk*, is at most ``risk``:

* ``U_n``, the smallest count such that reaching it by step ``n`` has probability (under
  ``p = l``, and counting the paths stopped earlier at the upper boundary) at most
  ``risk * n / (n + spending)``: stop and decide ``p > l``;
* ``L_n``, the largest count with the same property from below: stop and decide ``p <= l``.

Far from the level the procedure stops early (an independent model whose copies often reach it:
a handful of copies); a p-value near zero needs about ``ln(1 / risk) / l`` copies; a ``p`` within
about a fifth to twice ``l`` often reaches the most copies allowed undecided. There the p-value
reported is the upper end of the interval below (conservative): it rejects only if even that is
at most ``l``, so a ``p`` near the level does not accuse at one seed and acquit at the next.

The decision is reported with ``(1 + S_n) / (1 + n)`` as the p-value, on the side of the level
that the boundary decided (at every boundary, :class:`Boundaries` checks it), and a Clopper-Pearson
interval for ``p`` as its Monte Carlo error. Under the null ``p`` is at least uniform, so the
chance of deciding ``p <= l`` is at most the integral of that chance over ``p`` in ``[0, 1]``;
:func:`size` computes it from the boundaries, the chance exactly at each ``p`` of a grid, the
integral by trapezoids (``tests/evidence/test_sequential.py`` holds it to the level).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
from scipy.special import betaincinv

#: The bound on the chance that another seed decides otherwise (Gandy's epsilon).
RISK = 1e-3
#: Gandy's spending parameter ``k``: by step ``n``, ``risk * n / (n + k)`` of the risk is spent.
SPENDING = 1000
#: The Monte Carlo interval's confidence.
CONFIDENCE = 0.99


@dataclass(frozen=True)
class Decision:
    """Outcome of :func:`decide`.

    Attributes
    ----------
    p_value : float
        ``(1 + reached) / (1 + draws)`` where a boundary decided (at most the level exactly when
        ``below``); at the limit, the interval's upper end.
    draws : int
        Copies drawn.
    reached : int
        Copies at least as extreme as the observation.
    outcome : str
        ``below`` (the ideal p-value is at most the level), ``above``, or ``limit`` (the most
        copies were drawn without crossing a boundary: ``below`` only if the interval's upper end
        is at most the level).
    interval : tuple of float
        Clopper-Pearson interval for the ideal p-value at :data:`CONFIDENCE`.
    risk : float
        The bound on the chance that another seed gives the other decision (1 at the limit: no
        bound).
    level : float
        The level decided at.
    """

    p_value: float
    draws: int
    reached: int
    outcome: str
    interval: tuple
    risk: float
    level: float

    @property
    def below(self) -> bool:
        """Whether the decision is ``p <= level``."""
        return self.p_value <= self.level

    def to_dict(self) -> dict:
        """The JSON ``monte_carlo`` block of a test."""
        return {"copies": self.draws, "as_extreme": self.reached, "decided": self.outcome,
                "interval": [float(self.interval[0]), float(self.interval[1])],
                "confidence": CONFIDENCE, "resampling_risk": self.risk}


class Boundaries:
    """Gandy's stopping boundaries for one level, computed step by step as far as asked.

    ``lower[n - 1]`` and ``upper[n - 1]`` are ``L_n`` and ``U_n`` (``L_n = -1``: no count stops
    from below yet; once the count 0 has stopped, every count below the window has). Each step
    propagates the probability of the paths not yet stopped, under ``p = level``, over the counts
    still between the boundaries (a few dozen at most). One object serves every test at its level
    (:func:`boundaries`), from any thread.
    """

    def __init__(self, level: float, risk: float = RISK, spending: int = SPENDING):
        if not 0.0 < level < 1.0:
            raise ValueError(f"the level must lie in (0, 1), not {level}")
        self.level, self.risk, self.spending = float(level), float(risk), int(spending)
        self.lower: list[int] = []
        self.upper: list[int] = []
        self._mass = np.ones(1)  # over the counts first, first + 1, ... not yet stopped
        self._first = 0
        self._spent_up = 0.0
        self._spent_low = 0.0
        self._lock = threading.Lock()

    def at(self, n: int) -> tuple[int, int]:
        """``(L_n, U_n)`` for ``n >= 1``."""
        if len(self.upper) < n:
            with self._lock:
                while len(self.upper) < n:
                    self._step()
        return self.lower[n - 1], self.upper[n - 1]

    def _step(self) -> None:
        n = len(self.upper) + 1
        budget = self.risk * n / (n + self.spending)
        mass = np.zeros(self._mass.size + 1)
        mass[:-1] += self._mass * (1.0 - self.level)
        mass[1:] += self._mass * self.level
        tail = np.cumsum(mass[::-1])[::-1]  # mass at this count or more
        stops = np.flatnonzero(self._spent_up + tail <= budget)
        top = int(stops[0]) if stops.size else mass.size
        if top < mass.size:
            self._spent_up += float(tail[top])
            mass[top:] = 0.0
        head = np.cumsum(mass)  # mass at this count or less
        stops = np.flatnonzero(self._spent_low + head <= budget)
        bottom = int(stops[-1]) if stops.size else -1
        if bottom >= 0:
            self._spent_low += float(head[bottom])
            mass[:bottom + 1] = 0.0
        self.upper.append(self._first + top)
        self.lower.append(self._first + bottom)  # below the window: no path left there
        live = np.flatnonzero(mass > 0.0)
        if live.size == 0:  # every path stopped: nothing left to propagate
            live = np.array([0])
        self._first += int(live[0])
        self._mass = mass[live[0]:live[-1] + 1]


@lru_cache(maxsize=16)
def boundaries(level: float, risk: float = RISK, spending: int = SPENDING) -> Boundaries:
    """The (shared, growing) boundaries for ``level``."""
    return Boundaries(level, risk, spending)


def interval(reached: int, draws: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Clopper-Pearson interval for a binomial proportion: ``reached`` of ``draws``."""
    tail = (1.0 - confidence) / 2
    lo = 0.0 if reached == 0 else float(betaincinv(reached, draws - reached + 1, tail))
    hi = 1.0 if reached == draws else float(betaincinv(reached + 1, draws - reached, 1 - tail))
    return lo, hi


def decide(observed: float, draw: Callable[[], float], extreme: Callable[[float, float], bool],
           level: float, most: int, risk: float = RISK) -> Decision:
    """Draw copies until Gandy's boundaries decide whether the p-value is at most ``level``.

    Parameters
    ----------
    observed : float
        The statistic of the data.
    draw : callable
        Computes the statistic of one random copy under the null.
    extreme : callable
        ``extreme(copy, observed)``: whether a copy is at least as extreme (ties count).
    level : float
        The level the decision is made at.
    most : int
        Most copies drawn (at the limit the estimate decides, without a bound on the risk).
    risk : float
        Bound on the resampling risk.
    """
    bounds = boundaries(level, risk)
    reached = 0
    for n in range(1, most + 1):
        reached += int(extreme(draw(), observed))
        lower, upper = bounds.at(n)
        if reached >= upper or reached <= lower:
            return _decision(reached, n, "above" if reached >= upper else "below", risk, level)
    return _decision(reached, most, "limit", 1.0, level)


def _decision(reached: int, draws: int, outcome: str, risk: float, level: float) -> Decision:
    bounds = interval(reached, draws)
    p = bounds[1] if outcome == "limit" else (1 + reached) / (1 + draws)
    return Decision(p_value=p, draws=draws, reached=reached, outcome=outcome, interval=bounds,
                    risk=risk, level=level)


def reject_chance(bounds: Boundaries, p, most: int) -> np.ndarray:
    """For each ideal p-value in ``p``: the chance that :func:`decide` with these boundaries and
    at most ``most`` copies decides ``p <= level`` (at the limit: by the interval's upper end).

    The counts' distribution is propagated over the window between the boundaries only (the
    same for every ``p``): ``mass[i, j]`` is the chance under ``p[i]`` of count ``first + j``
    with no boundary crossed yet.
    """
    p = np.asarray(p, dtype=float)[:, None]
    mass, first = np.ones((p.shape[0], 1)), 0
    rejected = np.zeros(p.shape[0])
    for n in range(1, most + 1):
        grown = np.zeros((p.shape[0], mass.shape[1] + 1))
        grown[:, :-1] += mass * (1.0 - p)
        grown[:, 1:] += mass * p
        lower, upper = bounds.at(n)
        lo = max(lower + 1 - first, 0)
        hi = min(upper - first, grown.shape[1])
        rejected += grown[:, :lo].sum(axis=1)
        mass, first = grown[:, lo:max(hi, lo)], first + lo
    counts = first + np.arange(mass.shape[1])
    below = np.array([interval(int(k), most)[1] <= bounds.level for k in counts], dtype=bool)
    return rejected + (mass * below[None, :]).sum(axis=1)


def size(bounds: Boundaries, most: int, grid: int = 801) -> float:
    """The chance that :func:`decide` rejects when the ideal p-value is uniform on ``[0, 1]``
    (its largest value under the null): ``reject_chance`` integrated over ``p`` (trapezoids on a
    grid dense near the level, where the chance falls from 1 to 0; above ``4 * level`` it is
    nil to double precision for the risks used here)."""
    level = bounds.level
    p = np.linspace(0.0, 4 * level, grid)
    return float(np.trapezoid(reject_chance(bounds, p, most), p))
