"""Which of two related models is the parent: evidence from weight statistics.

Strong evidence, per matched pair (:func:`direction`):

* quantization: an int8/fp16 copy is made from a float model, not the other way round;
* sparsity: pruning only removes weights, so the sparser model is the child (when the fractions
  of zero weights differ by at least 5 points; not used when either model is quantized, since
  rounding makes zeros too).

Weak signals per model (:func:`model_stats`, read once per model), each a vote on an edge
(:func:`votes`), weighed together by a logistic regression of the right direction on the votes
of every true edge of forests of known lineage trained with several recipes (:func:`fit_weights`;
``direction_signals.json``, written by ``benchmarks/forests.py --fit`` on seeds the reported
figures do not use). None of them holds across training recipes: the weight signals read what
the recipe does to the weights (adversarial training, weight decay and label smoothing shrink
the layers that plain fine-tuning grows), so each weighs what it is worth over all of them:

* ``head``: the child's output layer has the larger weight norm. Training with cross-entropy
  and without strong weight decay keeps growing the classifier's weights (on separable data the
  logits' scale grows without bound, Soudry et al., JMLR 2018), whatever the data of the
  fine-tune; weight decay, label smoothing (a finite optimum of the logits) and adversarial
  training (a smoother function) can shrink it; read only between models whose outputs are
  class scores;
* ``norm``: the child's hidden layers have the larger norms (the mean over the layers of the
  log ratio of their norms, so that no one large layer decides): training grows them too;
* ``kurtosis``: in most hidden layers the child's weights have the larger kurtosis (MoTHer,
  Horwitz et al., ICLR 2025, layer by layer);
* ``loss``: on the labelled data of the run, the parent fits better (a fine-tune fits its own
  data better and the rest worse; it abstains without labels, and says the opposite if the
  data is the fine-tune's own).

The three weight signals compare layer with layer, so they abstain when the two models' weight
layers differ in number or size (a new head, pruned widths), and when B's hidden units are
grossly rescaled against A's (:func:`rescaling` above :data:`RESCALED`: a permuted and rescaled
copy has its layer norms wherever the rescaling put them, the same function).

Scores are positive when the evidence says A is the parent. The forest orients by the strong
evidence first and uses the weak signals after it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from onnx_lineage.analyses.closeness import class_count
from onnx_lineage.analyses.criteria import cross_entropy
from onnx_lineage.data import arrange_for, check_labels, feeds_for
from onnx_lineage.errors import LineageError
from onnx_lineage.model.footprint import inspect_footprint, require
from onnx_lineage.model.runner import Runner


@dataclass(frozen=True)
class Direction:
    """Strong evidence for ``a`` being the parent of ``b`` (``strong`` > 0) or the child (< 0):
    quantization and sparsity (a copy is made from its source), with its sentences."""

    strong: float
    evidence: tuple


def _zeros(layers) -> float:
    n = sum(x.weight.size for x in layers)
    return float(sum((x.weight == 0).sum() for x in layers) / n) if n else 0.0


def direction(match_result, name_a: str = "A", name_b: str = "B") -> Direction:
    """Direction evidence for one matched pair (A's layers against B's aligned parameters);
    the evidence sentences name the models ``name_a`` and ``name_b``."""
    A, B = name_a, name_b
    corr = match_result.correspondence
    la = [x for x in corr.a_layers if x.index in corr.b_aligned]
    lb_by = {x.index: x for x in corr.b_layers}
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
    return Direction(score, tuple(ev))


@dataclass(frozen=True)
class ModelStats:
    """Per-model weight statistics for the weak direction signals.

    Attributes
    ----------
    norm : float
        Euclidean norm of every dense/conv/embedding weight.
    kurtosis : float
        Excess kurtosis of those weights pooled.
    zeros : float
        Fraction of exact zeros among them.
    quantized : bool
    loss : float or None
        Cross-entropy on the run's labelled data (None: no labels, or the data cannot feed it).
    layer_norms, layer_kurtosis : tuple of float
        Per weight layer in graph order (the last one the output layer): its norm and its
        excess kurtosis.
    layer_sizes : tuple of int
        Per weight layer, its number of weights.
    classifier : bool or None
        Whether its outputs are class scores (None: not known).
    classes : int or None
        How many classes it scores (None: not a classifier, or not known). The loss signal
        compares only models of one label space.
    """

    norm: float
    kurtosis: float
    zeros: float
    quantized: bool
    loss: float | None = None
    layer_norms: tuple = ()
    layer_kurtosis: tuple = ()
    layer_sizes: tuple = ()
    classifier: bool | None = None
    classes: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _moments(w: np.ndarray) -> tuple[int, float, float, float, float]:
    """Count, mean and the sums of the 2nd, 3rd and 4th powers of the deviations from it, of one
    weight tensor (float64: one copy of that tensor)."""
    x = np.asarray(w, np.float64).ravel()
    mu = float(x.mean()) if x.size else 0.0
    c = x - mu
    c2 = c * c
    return x.size, mu, float(c2.sum()), float((c2 * c).sum()), float((c2 * c2).sum())


def _pooled(parts: list) -> tuple[int, float, float, float, float]:
    """:func:`_moments` of several tensors taken together, from theirs: each part's sums shifted
    to the pooled mean (exact, no large raw powers cancelling)."""
    n = sum(p[0] for p in parts)
    mu = sum(p[0] * p[1] for p in parts) / n
    m2 = m3 = m4 = 0.0
    for k, mean, s2, s3, s4 in parts:
        d = mean - mu
        m2 += s2 + k * d * d
        m3 += s3 + 3 * d * s2 + k * d ** 3
        m4 += s4 + 4 * d * s3 + 6 * d * d * s2 + k * d ** 4
    return n, mu, m2, m3, m4


def _kurtosis(n: int, mean: float, s2: float, s3: float, s4: float) -> float:
    """Excess kurtosis from :func:`_moments` (0 for constant values)."""
    var = s2 / n
    if var <= 1e-300:
        return 0.0
    return float((s4 / n) / var ** 2 - 3.0)


def model_stats(layers) -> ModelStats:
    """:class:`ModelStats` of a model's canonical layers (read a layer at a time: nothing the size
    of the model is allocated)."""
    ws = [x.weight for x in layers if x.kind in ("dense", "conv", "embedding", "linear")]
    quantized = any(x.quant for x in layers)
    if not ws:
        return ModelStats(0.0, 0.0, 0.0, quantized)
    parts = [_moments(w) for w in ws]
    n, mean, s2, s3, s4 = _pooled(parts)
    zeros = sum(int(np.count_nonzero(np.asarray(w) == 0)) for w in ws)
    return ModelStats(float(np.sqrt(s2 + n * mean * mean)), _kurtosis(n, mean, s2, s3, s4),
                      zeros / n, quantized,
                      layer_norms=tuple(float(np.sqrt(p[2] + p[0] * p[1] ** 2)) for p in parts),
                      layer_kurtosis=tuple(_kurtosis(*p) for p in parts),
                      layer_sizes=tuple(p[0] for p in parts))


#: Relative differences under which a weak signal abstains.
MIN_NORM_CHANGE, MIN_KURTOSIS_CHANGE, MIN_LOSS_CHANGE = 1e-6, 1e-4, 1e-3
#: :func:`rescaling` above which the weight signals abstain: the typical unit's incoming norm
#: changed by a factor over ``exp(0.2)``, about 1.22. On the forests of ``benchmarks/forests.py``
#: no fine-tune moved it by more than 0.023; the zoo's permuted and rescaled copies sit at
#: 0.30-0.46, and so does its heaviest fine-tune (a large learning rate on shifted data,
#: 0.40-0.68), whose layer norms are no steadier a clock.
RESCALED = 0.2


def rescaling(match_result) -> float:
    """How far B's hidden units are rescaled against A's: over the symmetry classes that can be
    rescaled, the largest median of ``|log|`` of the per-unit ratio of B's matched incoming norm
    to A's (0 when there are none)."""
    worst = 0.0
    for cm in match_result.correspondence.class_matches or []:
        if cm.scale is not None and cm.scale.size:
            worst = max(worst, float(np.median(np.abs(np.log(cm.scale)))))
    return worst


def votes(a: ModelStats, b: ModelStats, rescaled: bool = False) -> dict[str, int]:
    """Each weak signal's vote on the edge ``a -> b``: +1 (``a`` the parent), -1, 0 (abstains:
    the difference is too small, the weight layers differ, ``rescaled`` (the pair's units are
    rescaled against each other), or quantization or pruning changed the statistic)."""
    out = {"loss": 0, "head": 0, "norm": 0, "kurtosis": 0}
    if a.loss is not None and b.loss is not None and a.classes == b.classes and \
            abs(b.loss - a.loss) >= MIN_LOSS_CHANGE * max(a.loss, b.loss, 1e-12):
        out["loss"] = int(np.sign(b.loss - a.loss))
    if rescaled or a.quantized or b.quantized or abs(a.zeros - b.zeros) >= 0.05 or \
            not a.layer_sizes or a.layer_sizes != b.layer_sizes:
        return out
    na, nb = np.asarray(a.layer_norms), np.asarray(b.layer_norms)
    if a.classifier and b.classifier:  # the growth of a classifier under cross-entropy
        rel = (nb[-1] - na[-1]) / max(na[-1], 1e-12)
        out["head"] = 0 if abs(rel) < MIN_NORM_CHANGE else int(np.sign(rel))
    hidden = (na[:-1] > 0) & (nb[:-1] > 0)
    if hidden.any():
        growth = float(np.mean(np.log(nb[:-1][hidden] / na[:-1][hidden])))
        out["norm"] = 0 if abs(growth) < MIN_NORM_CHANGE else int(np.sign(growth))
    ka, kb = np.asarray(a.layer_kurtosis[:-1]), np.asarray(b.layer_kurtosis[:-1])
    dk = kb - ka
    moved = np.abs(dk) >= MIN_KURTOSIS_CHANGE * np.maximum(np.abs(ka), 1.0)
    out["kurtosis"] = int(np.sign(np.sum(np.sign(dk[moved]))))
    return out


#: Ridge penalty of :func:`fit_weights` (a Gaussian prior of variance 1 / RIDGE on each weight):
#: a signal never wrong on the fitted edges gets a large weight, not an infinite one.
RIDGE = 0.5


def fit_weights(v: np.ndarray, ridge: float = RIDGE, iterations: int = 50) -> np.ndarray:
    """Weights of the weak signals, fitted together: a logistic regression without intercept of
    "the edge points the right way" on the signals' votes, by Newton's method.

    Each true parent -> child edge, read as ``parent -> child``, is a row of votes ``x`` (+1 for
    the right direction, -1, 0); the same edge read the other way round is ``-x``, wrong. The
    model ``P(parent -> child) = 1 / (1 + exp(-w . x))`` is symmetric (no intercept: reading
    an edge backwards flips every vote), so the likelihood of the true readings alone is
    maximised, with the penalty ``ridge / 2 * |w|^2``. Fitted together, two signals that vote
    alike share their weight (a sum of separate log-odds would count their agreement twice),
    and a signal that turns round with the training recipe loses weight.

    Parameters
    ----------
    v : ndarray of shape (n_edges, n_signals)
        The votes on true edges, read parent to child.

    Returns
    -------
    ndarray of shape (n_signals,), float64
    """
    x = np.asarray(v, np.float64)
    w = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (1.0 - p) - ridge * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(x.shape[1])
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]  # singular without a penalty
        w += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return w


@lru_cache(maxsize=1)
def signal_weights() -> dict[str, float]:
    """The weight of each weak signal in the log-odds of an edge's direction: as fitted together
    (:func:`fit_weights`, ``weights`` in ``direction_signals.json``), or, from a file of
    accuracies alone, the log-odds of each signal's accuracy, ``log(acc / (1 - acc))`` (0 for a
    signal no better than chance, negative for one measured backwards)."""
    path = Path(__file__).with_name("direction_signals.json")
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    if "weights" in saved:
        return {k: float(v) for k, v in saved["weights"].items()}
    out = {}
    for name, t in saved["signals"].items():
        decided = t["right"] + t["wrong"]
        acc = (t["right"] + 1) / (decided + 2)  # Laplace: a few votes weigh little
        out[name] = float(np.clip(math.log(acc / (1 - acc)), -3.0, 3.0))
    return out


#: A signal serves as the clock (:func:`.forest.follow_clock`) from this accuracy up on the
#: fitted forests (Laplace: (right + 1) / (decided + 2)): near never wrong, whatever the recipe.
CLOCK_ACCURACY = 0.97


@lru_cache(maxsize=1)
def clock_signal() -> str | None:
    """The signal the forest may trust as a clock: the most accurate one on the fitted forests
    if its accuracy (Laplace) is at least :data:`CLOCK_ACCURACY`, else None (none holds across
    the training recipes measured, and no edge is corrected by one signal alone)."""
    path = Path(__file__).with_name("direction_signals.json")
    if not path.exists():
        return None
    acc = {name: (t["right"] + 1) / (t["right"] + t["wrong"] + 2)
           for name, t in json.loads(path.read_text())["signals"].items()}
    best = max(sorted(acc), key=lambda k: acc[k], default=None)
    return best if best is not None and acc[best] >= CLOCK_ACCURACY else None


#: Rows of the data each model's loss is measured on.
LOSS_ROWS = 512


def model_outputs(model, data, seed: int = 0) -> tuple[float | None, bool | None, int | None]:
    """What a model's outputs say for the direction signals: its cross-entropy on up to
    :data:`LOSS_ROWS` labelled rows of ``data`` (the same rows for every model; the ``loss``
    signal), whether its outputs are class scores (the ``head`` signal reads only
    classifiers), and how many classes it scores. The loss is None without labels, for outputs
    that are not class scores, when the data cannot feed the model or holds labels outside its
    classes; ``classifier`` and ``classes`` are None when no session of it can be made."""
    try:
        require(inspect_footprint(model.proto), f"the loss of {model.name}")
        runner = Runner(model.proto, name=model.name)
    except LineageError:  # no session of it fits, or none can be made
        return None, None, None
    classifier = runner.output_kind in ("logits", "probabilities")
    try:
        classes = (class_count(runner, arrange_for(data, model))
                   if classifier and data is not None else None)
    except LineageError:
        classes = None
    if data is None or data.y is None or not classifier:
        return None, classifier, classes
    try:
        check_labels(data, classes, model.name)
        d = arrange_for(data, model)
        if len(d) > LOSS_ROWS:
            d = d.subset(np.sort(np.random.default_rng(seed).choice(len(d), LOSS_ROWS,
                                                                   replace=False)))
        feeds, _ = feeds_for(runner.inputs, d, model.name)
        return cross_entropy(runner.predict(feeds).scores, runner.output_kind, d.y), True, classes
    except LineageError:
        return None, True, classes


def weak_evidence(parent: str, child: str, edge_votes: dict, weights: dict) -> list[str]:
    """Sentences for the weak signals' votes on ``parent -> child`` (:func:`votes`) that carry
    weight, each saying whether it counts for that direction or against it (a signal fitted with
    a negative weight counts against the direction it reads as)."""
    said = {"head": "has the larger output-layer norm",
            "norm": "has the larger hidden-layer norms",
            "kurtosis": "has the larger weight kurtosis in most hidden layers",
            "loss": "fits the data worse"}
    return [f"{child if v > 0 else parent} {said[k]} (weight {weights[k]:+.2f}: "
            f"{'for' if v * weights[k] > 0 else 'against'} {parent} -> {child})"
            for k, v in edge_votes.items() if v and weights.get(k)]
