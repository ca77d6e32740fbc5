"""Monte Carlo permutation p-values, written once for any statistic.

Under a null that makes the observed data exchangeable with its randomly transformed copies, the
observed statistic is one of ``T + 1`` exchangeable draws, and ``p = (1 + k) / (1 + T)`` (``k``:
copies at least as extreme) is exact. Stopping once ``h`` copies are at least as extreme and
reporting ``p = h / t`` after ``t`` draws is exact too (Besag and Clifford, 1991): an evidently
large p-value need not cost ``T`` draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class MonteCarlo:
    """Outcome of :func:`monte_carlo`.

    Attributes
    ----------
    p_value : float
    draws : int
        Copies drawn.
    reached : int
        Copies at least as extreme as the observation.
    stopped : bool
        Stopped early after ``reached`` extreme copies.
    """

    p_value: float
    draws: int
    reached: int
    stopped: bool


def monte_carlo(observed: float, draw: Callable[[], float],
                extreme: Callable[[float, float], bool], copies: int,
                stop_after: int | None = None) -> MonteCarlo:
    """Exact Monte Carlo p-value of ``observed`` against up to ``copies`` draws of the null.

    Parameters
    ----------
    observed : float
        The statistic of the data.
    draw : callable
        Computes the statistic of one random copy under the null.
    extreme : callable
        ``extreme(copy, observed)``: whether a copy is at least as extreme (ties count).
    copies : int
        Most draws ``T``.
    stop_after : int, optional
        Stop after this many extreme copies (sequential p-value ``h / t``).
    """
    reached = 0
    for t in range(1, copies + 1):
        if extreme(draw(), observed):
            reached += 1
            if stop_after is not None and reached >= stop_after:
                return MonteCarlo(reached / t, t, reached, True)
    return MonteCarlo((1 + reached) / (1 + copies), copies, reached, False)
