"""Which of two related models is the parent: evidence from weight statistics.

* quantization: an int8/fp16 copy is made from a float model, not the other way round (strong);
* sparsity: pruning only removes weights, so the sparser model is the child (strong, when the
  fractions of zero weights differ by at least 5 points; not used when either model is quantized,
  since rounding makes zeros too);
* norm drift: training without strong weight decay tends to grow the parameter norm, so the model
  with the larger norm is more likely the child (weak; ignored under 0.1%).

Scores are positive when the evidence says A is the parent. The strong and the weak evidence are
kept apart: the forest orients by the strong evidence first and uses the weak one last.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Direction:
    """Evidence for ``a`` being the parent of ``b`` (> 0) or the child (< 0).

    ``strong``: quantization and sparsity (a copy is made from its source); ``weak``: norm drift.
    """

    strong: float
    weak: float
    evidence: tuple

    @property
    def score(self) -> float:
        return self.strong + self.weak


def _zeros(layers) -> float:
    n = sum(x.weight.size for x in layers)
    return float(sum((x.weight == 0).sum() for x in layers) / n) if n else 0.0


def direction(match_result, name_a: str = "A", name_b: str = "B") -> Direction:
    """Direction evidence for one matched pair (A's layers against B's aligned parameters);
    the evidence sentences name the models ``name_a`` and ``name_b``."""
    A, B = name_a, name_b
    weak = 0.0
    la = [x for x in match_result.a_layers if x.index in match_result.b_aligned]
    lb_by = {x.index: x for x in match_result.b_layers}
    b_of = {p["a"]: p["b"] for p in match_result.pairs}
    lb = [lb_by[b_of[x.index]] for x in la]
    score, ev = 0.0, []
    qa, qb = any(x.quant for x in la), any(x.quant for x in lb)
    if qb and not qa:
        score += 2.0
        ev.append(f"{B} is quantized, {A} is float")
    elif qa and not qb:
        score -= 2.0
        ev.append(f"{A} is quantized, {B} is float")
    za, zb = _zeros(la), _zeros(lb)
    if qa or qb:
        za = zb = 0.0  # rounding to int8 makes zeros of its own: not pruning evidence
    if zb - za >= 0.05:
        score += 2.0
        ev.append(f"{B} is sparser ({zb:.0%} zeros against {za:.0%})")
    elif za - zb >= 0.05:
        score -= 2.0
        ev.append(f"{A} is sparser ({za:.0%} zeros against {zb:.0%})")
    # raw norms: permutation leaves them alone; per-unit rescaling (obfuscation) does not, but a
    # rescaled copy is functionally the same model, with no direction to find
    na = np.sqrt(sum(float((x.weight.astype(np.float64) ** 2).sum()) for x in la))
    nb = np.sqrt(sum(float((x.weight.astype(np.float64) ** 2).sum()) for x in lb))
    rel = (nb - na) / max(na, 1e-12)
    if abs(rel) >= 0.001 and not (qa or qb) and abs(za - zb) < 0.05:
        weak = float(np.clip(rel * 10, -1.0, 1.0))
        ev.append(f"{B if rel > 0 else A} has the larger weight norm ({abs(rel):.1%})")
    return Direction(score, weak, tuple(ev))
