"""What each independence test says about one symmetry class (or one layer): a frozen type per
test, its fields in the order of the JSON's ``tests[].classes`` rows (``docs/json.md``).

Every row has ``name`` (the class, unique within its test together with ``layers``), ``layers``
(A's layers it spans) and ``p_value`` (None where the test gives no per-class p-value: the basin
test's copies permute every class at once).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OrderRow:
    """The unit-order test on a class of equal width: how many of B's units the matching pairs
    with the unit of the same index in A (``fixed_points``, also the ``statistic``)."""

    name: str
    layers: list
    units: int
    statistic: int
    fixed_points: int
    in_order: str
    p_value: float
    similarity: float


@dataclass(frozen=True)
class SuccessionRow:
    """The unit-order test on a width-pruned class: of the ``kept`` units of the narrower model,
    how many follow their predecessor in the matched order (``successions``, the ``statistic``)."""

    name: str
    layers: list
    units: int
    statistic: int
    successions: int
    kept: int
    p_value: float
    in_order: str
    similarity: float


@dataclass(frozen=True)
class AlignedRow:
    """The aligned test on a class: the median cosine of matched incoming weights
    (``similarity``, the ``statistic``) against independent pairs of its ``fan_in`` and width."""

    name: str
    layers: list
    units: int
    statistic: float
    similarity: float
    fan_in: int
    p_value: float


@dataclass(frozen=True)
class ValuesRow:
    """The same-values test on one of A's layers against B's layer ``b``: ``agree`` of
    ``compared`` trained values equal to the coarser model's rounding in the best ``order``,
    against ``expected`` by chance (``statistic`` is ``agree / compared``)."""

    name: str
    layers: list
    b: int
    order: str
    agree: int
    compared: int
    statistic: float
    expected: float
    p_value: float
    log10_p: float


@dataclass(frozen=True)
class FunctionRow:
    """The function test on a gated class: of the ``compared`` units matched, how many the
    matching through the gate projections and the one through the up projections send to the
    same unit of B (``agree``, the ``statistic``); ``similarity`` is the median absolute
    correlation of the gate matching's pairs on the rows."""

    name: str
    layers: list
    units: int
    statistic: int
    agree: int
    compared: int
    p_value: float
    similarity: float


@dataclass(frozen=True)
class BasinRow:
    """A class the basin test's copies permute (the test's p-value is over all of them)."""

    name: str
    layers: list
    units: int

    @property
    def p_value(self) -> None:
        """None: the copies permute every class together."""
        return None
