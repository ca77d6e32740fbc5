"""The forest's geometry and direction evidence: distances, spanning tree, signals, notes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnx_lineage.zoo import direction
from onnx_lineage.zoo.direction import ModelStats, model_stats, votes
from onnx_lineage.zoo.forest import (
    PairOutcome,
    edge_confidence,
    evidence_clock,
    follow_clock,
    follow_inheritance,
    orient,
    spanning_forest,
)
from onnx_lineage.zoo.forest import shape_notes


def _outcomes(points: dict) -> list[PairOutcome]:
    names = sorted(points)
    return [PairOutcome(a, b, True, 0.0, 0.0, (), distance=float(np.linalg.norm(points[a] - points[b])))
            for i, a in enumerate(names) for b in names[i + 1:]]


def test_a_star_with_children_trained_apart_stays_a_star():
    rng = np.random.default_rng(0)
    root = rng.normal(size=400)
    points = {"root": root, **{f"c{k}": root + rng.normal(size=400) for k in range(4)}}
    kept = spanning_forest(sorted(points), _outcomes(points))
    assert {frozenset((o.a, o.b)) for o in kept} == {frozenset(("root", f"c{k}")) for k in range(4)}


def test_adapters_hang_from_the_model_they_differ_from_by_the_least_rank():
    """Two adapters of one parent trained alike sit closer to each other than to it; their
    difference has the rank of both, so each hangs from the parent."""
    outcomes = [PairOutcome("parent", "lora_4", True, 0.0, 0.0, (), distance=0.3, adapter=4),
                PairOutcome("parent", "lora_8", True, 0.0, 0.0, (), distance=0.35, adapter=8),
                PairOutcome("lora_4", "lora_8", True, 0.0, 0.0, (), distance=0.2, adapter=12),
                PairOutcome("parent", "tuned", True, 0.0, 0.0, (), distance=0.25),
                PairOutcome("lora_4", "tuned", True, 0.0, 0.0, (), distance=0.1)]
    kept = spanning_forest(["lora_4", "lora_8", "parent", "tuned"], outcomes)
    assert {frozenset((o.a, o.b)) for o in kept} == {
        frozenset(("parent", "lora_4")), frozenset(("parent", "lora_8")),
        frozenset(("lora_4", "tuned"))}


def test_a_quantized_copy_hangs_from_its_source_even_where_its_rounding_reads_as_a_low_rank():
    """q, an int8 copy of a1 (a1 itself a low-rank change of a): q differs from a by a low rank
    too (its rounding is within the bound), but it is a leaf attached by distance."""
    outcomes = [PairOutcome("a", "a1", True, 0.0, 0.0, (), distance=0.2, adapter=1),
                PairOutcome("a", "q", True, 0.0, 0.0, (), distance=0.21, adapter=1),
                PairOutcome("a1", "q", True, 0.0, 0.0, (), distance=0.01)]
    kept = spanning_forest(["a", "a1", "q"], outcomes, leaves=frozenset({"q"}))
    assert {frozenset((o.a, o.b)) for o in kept} == {frozenset(("a", "a1")),
                                                     frozenset(("a1", "q"))}


def test_a_chain_stays_a_chain():
    rng = np.random.default_rng(1)
    steps = np.cumsum(rng.normal(size=(4, 400)), axis=0)
    points = {f"g{k}": steps[k] for k in range(4)}
    kept = spanning_forest(sorted(points), _outcomes(points))
    assert {frozenset((o.a, o.b)) for o in kept} == {frozenset((f"g{k}", f"g{k + 1}"))
                                                      for k in range(3)}


def _stats(norms, kurtosis, loss=0.3, quantized=False, sizes=None, classifier=True):
    sizes = sizes or tuple(10 for _ in norms)
    return ModelStats(float(np.sqrt(np.sum(np.square(norms)))), 0.0, 0.0, quantized, loss,
                      tuple(norms), tuple(kurtosis), sizes, classifier)


def test_weak_signals_vote_for_the_parent_and_abstain_on_quantized_copies():
    parent = _stats([3.0, 2.0, 1.0], [0.5, 0.1, 0.0], loss=0.3)
    # hidden norms: one shrinks a little, one grows more (mean log ratio > 0); kurtosis rises
    # in both hidden layers; the head grows; the child fits the data worse
    child = _stats([2.9, 2.4, 1.1], [0.7, 0.2, -0.5], loss=0.5)
    assert votes(parent, child) == {"loss": 1, "head": 1, "norm": 1, "kurtosis": 1}
    assert votes(child, parent) == {"loss": -1, "head": -1, "norm": -1, "kurtosis": -1}
    int8 = _stats([3.1, 2.1, 1.2], [0.9, 0.3, 0.1], loss=None, quantized=True)
    assert votes(parent, int8) == {"loss": 0, "head": 0, "norm": 0, "kurtosis": 0}


def test_the_output_layer_is_read_only_between_classifiers():
    """The output layer's growth is a property of cross-entropy: a regressor's (or a model of
    unknown outputs) does not vote on it; the other signals still do."""
    parent = _stats([3.0, 2.0, 1.0], [0.5, 0.1, 0.0], loss=None, classifier=False)
    child = _stats([2.9, 2.4, 1.1], [0.7, 0.2, -0.5], loss=None, classifier=False)
    assert votes(parent, child) == {"loss": 0, "head": 0, "norm": 1, "kurtosis": 1}
    unknown = _stats([2.9, 2.4, 1.1], [0.7, 0.2, -0.5], loss=None, classifier=None)
    assert votes(_stats([3.0, 2.0, 1.0], [0.5, 0.1, 0.0]), unknown)["head"] == 0


def test_weight_signals_abstain_when_the_layers_differ():
    """A new head or pruned widths: no layer-by-layer comparison, only the loss votes."""
    parent = _stats([3.0, 2.0, 1.0], [0.5, 0.1, 0.0], loss=0.3)
    new_head = _stats([3.1, 2.1, 1.5], [0.6, 0.2, 0.0], loss=0.5, sizes=(10, 10, 20))
    assert votes(parent, new_head) == {"loss": 1, "head": 0, "norm": 0, "kurtosis": 0}


def test_model_stats_read_the_weights():
    class L:
        def __init__(self, w):
            self.weight, self.kind, self.quant = w, "dense", ""
    rng = np.random.default_rng(0)
    w = np.array([[0.0, 1.0], [-1.0, 3.0]], np.float32)
    v = rng.standard_t(5, size=(30, 7)).astype(np.float32) + 0.2
    s = model_stats([L(w), L(v)])
    both = np.concatenate([w.ravel(), v.ravel()]).astype(np.float64)

    def kurt(x):
        c = x - x.mean()
        return np.mean(c ** 4) / np.mean(c ** 2) ** 2 - 3.0
    assert s.norm == pytest.approx(np.linalg.norm(both)) and s.zeros == 1 / both.size
    assert s.kurtosis == pytest.approx(kurt(both)) and not s.quantized
    assert s.layer_sizes == (4, 210)
    assert s.layer_norms == pytest.approx((np.sqrt(11), np.linalg.norm(v.astype(np.float64))))
    assert s.layer_kurtosis == pytest.approx((kurt(w.ravel().astype(np.float64)),
                                              kurt(v.ravel().astype(np.float64))))
    # far from zero, a raw fourth moment would cancel away the kurtosis; the deviations keep it
    far = model_stats([L(w + np.float32(300)), L(v + np.float32(300))])
    shifted = np.concatenate([(w + np.float32(300)).ravel(), (v + np.float32(300)).ravel()])
    assert far.kurtosis == pytest.approx(kurt(shifted.astype(np.float64)), rel=1e-6)


def test_the_root_follows_the_weighted_signals():
    stats = {"p": _stats([1.0, 1.0], [0.0, 0.0], 0.2), "c": _stats([1.0, 1.1], [0.0, 0.0], 0.4)}
    edge = PairOutcome("c", "p", True, 0.9, 0.0, (), distance=0.1)
    directed, roots = orient(["c", "p"], [edge], None, stats, {"loss": 1.3, "head": 0.6})
    assert roots == ["p"] and directed[0][:2] == ("p", "c")
    assert edge_confidence("p", "c", edge, stats, {"loss": 1.3, "head": 0.6}) == pytest.approx(
        1 / (1 + np.exp(-1.9)))


def test_copies_get_no_weak_evidence():
    """Two copies of one model (aligned weights within COPY_DISTANCE): whatever their layer
    norms (a rescaled copy's are arbitrary), the weak signals do not orient their edge."""
    stats = {"p": _stats([1.0, 1.0], [0.0, 0.0], 0.2), "c": _stats([3.0, 1.5], [0.0, 0.0], 0.2)}
    copy = PairOutcome("p", "c", True, 1.0, 0.0, (), distance=0.0)
    assert edge_confidence("p", "c", copy, stats, {"head": 3.0, "norm": 2.0}) == 0.5
    apart = PairOutcome("p", "c", True, 0.9, 0.0, (), distance=0.1)
    assert edge_confidence("p", "c", apart, stats, {"head": 3.0, "norm": 2.0}) > 0.99


def test_a_rescaled_copy_silences_the_weight_signals(tmp_path):
    """B = A with its hidden units permuted and rescaled (the same function): the pair reads as
    rescaled, and on such an edge only the loss votes; a slightly perturbed copy does not."""
    from onnx_lineage.matching import match
    from onnx_lineage.zoo.direction import RESCALED, rescaling
    from tests.evidence.models import permuted, random_mlp, save
    rng = np.random.default_rng(0)
    ws, bs = random_mlp(0)
    scale = np.exp(rng.uniform(-1.0, 1.0, 16))
    ob = permuted(ws, bs, 0, rng.permutation(16), scale)
    near = ([w * (1 + 0.01 * rng.normal(size=w.shape)).astype(np.float32) for w in ws], bs)
    a = save(ws, bs, tmp_path / "a.onnx")
    assert rescaling(match(a, save(*ob, tmp_path / "ob.onnx"))) > RESCALED
    assert rescaling(match(a, save(*near, tmp_path / "near.onnx"))) < 0.05
    parent = _stats([3.0, 2.0, 1.0], [0.5, 0.1, 0.0], loss=0.3)
    child = _stats([2.9, 2.4, 1.1], [0.7, 0.2, -0.5], loss=0.5)
    assert votes(parent, child, rescaled=True) == {"loss": 1, "head": 0, "norm": 0, "kurtosis": 0}
    edge = PairOutcome("p", "c", True, 0.9, 0.0, (), distance=0.1, rescaled=True)
    stats = {"p": parent, "c": child}
    assert edge_confidence("p", "c", edge, stats, {"head": 3.0, "loss": 0.5}) == pytest.approx(
        1 / (1 + np.exp(-0.5)))


def _clocked(heads: dict) -> dict:
    """Statistics that differ only in the output layer's norm (the clock)."""
    return {n: _stats([1.0, h], [0.0, 0.0], loss=None) for n, h in heads.items()}


def _edge(a, b, d, **kw):
    return PairOutcome(a, b, True, 0.9, 0.0, (), distance=d, **kw)


def test_an_edge_against_the_clock_is_rehung_from_the_nearest_earlier_model():
    """Two siblings trained alike sit closer to each other than to their parent: the spanning
    tree hangs c3 below c2, but the clock puts c3 before c2, so c3 hangs from the root."""
    stats = _clocked({"r": 1.0, "c2": 1.3, "c3": 1.2})
    e_r2, e_23, e_r3 = _edge("r", "c2", 0.10), _edge("c2", "c3", 0.08), _edge("r", "c3", 0.11)
    directed = [("r", "c2", e_r2), ("c2", "c3", e_23)]
    edges, roots = follow_clock(directed, ["r"], [e_r2, e_23, e_r3], stats)
    assert roots == ["r"] and {(p, c) for p, c, _ in edges} == {("r", "c2"), ("r", "c3")}


def test_the_first_model_by_the_clock_becomes_the_root():
    """A root chosen in the middle of a chain whose clock runs the other way: the chain turns
    round at the first model, the same edges."""
    stats = _clocked({"a": 1.0, "b": 1.1, "c": 1.2})
    e_ab, e_bc = _edge("a", "b", 0.1), _edge("b", "c", 0.1)
    edges, roots = follow_clock([("c", "b", e_bc), ("b", "a", e_ab)], ["c"], [e_ab, e_bc], stats)
    assert roots == ["a"] and {(p, c) for p, c, _ in edges} == {("a", "b"), ("b", "c")}


def test_edges_the_clock_cannot_read_are_kept():
    """Rescaled pairs and copies: the clock is silent, the edge stays as oriented."""
    stats = _clocked({"r": 1.0, "x": 0.5, "y": 0.4})
    e_rx, e_ry = _edge("r", "x", 0.1, rescaled=True), _edge("r", "y", 0.0)
    edges, roots = follow_clock([("r", "x", e_rx), ("r", "y", e_ry)], ["r"], [e_rx, e_ry], stats)
    assert roots == ["r"] and [(p, c) for p, c, _ in edges] == [("r", "x"), ("r", "y")]


def _shares(table: dict):
    """``share(q, p, c)`` from a table (None where absent: it cannot tell)."""
    return lambda q, p, c: table.get((q, p, c))


def _related(*names):
    return [_edge(a, b, 0.1) for i, a in enumerate(names) for b in names[i + 1:]]


def test_a_sibling_hung_below_a_sibling_moves_up():
    """c3 below c2 (siblings trained alike), carrying little of c2's own change: c3 hangs from r."""
    stats = _clocked({"r": 1.0, "c2": 1.2, "c3": 1.3})
    out = _related("r", "c2", "c3")
    e = {frozenset((o.a, o.b)): o for o in out}
    directed = [("r", "c2", e[frozenset(("r", "c2"))]), ("c2", "c3", e[frozenset(("c2", "c3"))])]
    edges = follow_inheritance(directed, out, _shares({("r", "c2", "c3"): 0.1}), stats)
    assert {(p, c) for p, c, _ in edges} == {("r", "c2"), ("r", "c3")}
    assert all(frozenset((p, c)) == frozenset((o.a, o.b)) for p, c, o in edges)
    edges = follow_inheritance(directed, out, _shares({("r", "c2", "c3"): 0.8}), stats)
    assert {(p, c) for p, c, _ in edges} == {("r", "c2"), ("c2", "c3")}


def test_a_grandchild_beside_its_parent_moves_down_only_after_it_by_the_clock():
    """g2 trained back towards r's task sits beside g1; it carries g1's own change, and the clock
    puts g1 first: g2 hangs from g1. With the clock the other way round, nothing moves."""
    out = _related("r", "g1", "g2")
    e = {frozenset((o.a, o.b)): o for o in out}
    directed = [("r", "g1", e[frozenset(("r", "g1"))]), ("r", "g2", e[frozenset(("r", "g2"))])]
    share = _shares({("r", "g1", "g2"): 0.9, ("r", "g2", "g1"): 0.9})
    edges = follow_inheritance(directed, out, share, _clocked({"r": 1.0, "g1": 1.1, "g2": 1.2}))
    assert {(p, c) for p, c, _ in edges} == {("r", "g1"), ("g1", "g2")}
    edges = follow_inheritance(directed, out, _shares({("r", "g1", "g2"): 0.9}),
                               _clocked({"r": 1.0, "g1": 1.3, "g2": 1.2}))
    assert {(p, c) for p, c, _ in edges} == {("r", "g1"), ("r", "g2")}


def test_an_adapter_is_not_moved_to_a_sibling_it_differs_from_by_a_higher_rank():
    """Two adapters of r trained alike carry each other's displacement (share 0.9) and the
    clock puts a4 first; but a16 - r has rank 16, a16 - a4 rank 20: a16 stays under r."""
    from dataclasses import replace
    ranks = {frozenset(("r", "a4")): 4, frozenset(("r", "a16")): 16, frozenset(("a4", "a16")): 20}
    out = [replace(o, adapter=ranks[frozenset((o.a, o.b))]) for o in _related("r", "a4", "a16")]
    e = {frozenset((o.a, o.b)): o for o in out}
    directed = [("r", "a4", e[frozenset(("r", "a4"))]), ("r", "a16", e[frozenset(("r", "a16"))])]
    share = _shares({("r", "a4", "a16"): 0.9, ("r", "a16", "a4"): 0.9})
    edges = follow_inheritance(directed, out, share, _clocked({"r": 1.0, "a4": 1.1, "a16": 1.2}))
    assert {(p, c) for p, c, _ in edges} == {("r", "a4"), ("r", "a16")}


def test_quantized_copies_and_silent_shares_move_nothing():
    out = _related("r", "q", "x")
    e = {frozenset((o.a, o.b)): o for o in out}
    directed = [("r", "q", e[frozenset(("r", "q"))]), ("r", "x", e[frozenset(("r", "x"))])]
    stats = _clocked({"r": 1.0, "q": 1.1, "x": 1.2})
    edges = follow_inheritance(directed, out, _shares({("r", "q", "x"): 0.9}), stats,
                               leaves=frozenset({"q"}))
    assert {(p, c) for p, c, _ in edges} == {("r", "q"), ("r", "x")}
    assert follow_inheritance(directed, out, _shares({}), stats) == directed


def test_signal_weights_are_log_odds_of_the_measured_accuracy(tmp_path, monkeypatch):
    fitted = {"signals": {"loss": {"right": 78, "wrong": 20, "undecided": 2, "accuracy": 0.8},
                          "coin": {"right": 5, "wrong": 5, "undecided": 0, "accuracy": 0.5}}}
    (tmp_path / "direction_signals.json").write_text(json.dumps(fitted))
    monkeypatch.setattr(direction, "__file__", str(tmp_path / "direction.py"))
    direction.signal_weights.cache_clear()
    try:
        w = direction.signal_weights()
    finally:
        direction.signal_weights.cache_clear()
    assert w["loss"] == pytest.approx(np.log(79 / 21)) and w["coin"] == pytest.approx(0.0)


def test_checkpoints_of_one_run_are_reported_as_a_chain():
    related = [{"a": "e0", "b": "e1", "distance": 1.0}, {"a": "e1", "b": "e2", "distance": 1.0},
               {"a": "e0", "b": "e2", "distance": 1.98}]
    edges = [{"parent": "e0", "child": "e1", "direction": "undecided"},
             {"parent": "e1", "child": "e2", "direction": "undecided"}]
    (note,) = shape_notes(edges, related)
    assert "e0 - e1 - e2" in note and "chain" in note
    related[2]["distance"] = 1.41  # trained apart: e1 could be the parent of both
    (note,) = shape_notes(edges, related)
    assert "cannot tell" in note


def test_copies_at_distance_zero_are_named_not_read_as_a_line():
    related = [{"a": "p", "b": "copy", "distance": 0.0}, {"a": "copy", "b": "c", "distance": 0.0},
               {"a": "p", "b": "c", "distance": 0.0}]
    edges = [{"parent": "p", "child": "copy", "direction": "undecided", "distance": 0.0},
             {"parent": "copy", "child": "c", "direction": "undecided", "distance": 0.0}]
    notes = shape_notes(edges, related)
    assert len(notes) == 2 and all("same weights" in n for n in notes)


def test_model_outputs_give_the_loss_and_whether_it_is_a_classifier(family, transfer):
    """A real classifier on the digits: its loss, classifier=True and its 10 classes; without
    labels, the loss is unknown but the model is still known to be a classifier; a 2-class model
    under the digits' 10 labels has no loss (the labels are not clipped into its classes)."""
    import dataclasses

    from onnx_lineage.data import digits
    from onnx_lineage.model.loading import load_model
    from onnx_lineage.zoo.direction import model_outputs
    model, data = load_model(family["parent"]), digits()
    loss, classifier, classes = model_outputs(model, data)
    assert classifier is True and classes == 10 and 0.0 < loss < np.log(10)
    assert model_outputs(model, dataclasses.replace(data, y=None)) == (None, True, 10)
    assert model_outputs(load_model(transfer), data) == (None, True, 2)


def _saved_signals(tmp_path, monkeypatch, saved: dict):
    (tmp_path / "direction_signals.json").write_text(json.dumps(saved))
    monkeypatch.setattr(direction, "__file__", str(tmp_path / "direction.py"))
    direction.signal_weights.cache_clear()
    direction.clock_signal.cache_clear()


def test_fitted_weights_are_read_before_accuracies(tmp_path, monkeypatch):
    tally = {"right": 96, "wrong": 0, "undecided": 0, "accuracy": 1.0}
    _saved_signals(tmp_path, monkeypatch, {"signals": {"head": tally},
                                           "weights": {"head": 1.25, "loss": -0.5}})
    try:
        assert direction.signal_weights() == {"head": 1.25, "loss": -0.5}
    finally:
        direction.signal_weights.cache_clear()
        direction.clock_signal.cache_clear()


@pytest.mark.parametrize("right, wrong, clock", [(96, 0, "head"), (122, 16, None), (40, 0, "head"),
                                                 (20, 0, None)])
def test_a_signal_is_the_clock_only_where_it_was_near_never_wrong(tmp_path, monkeypatch, right,
                                                                   wrong, clock):
    """head right on 96 of 96 fitted edges: (97 / 98) >= 0.97, the clock; 122 of 138 (an 88%
    signal, as over the training recipes): no clock; 40 of 40 (41 / 42) is one, 20 of 20 too few
    to tell (21 / 22)."""
    signals = {"head": {"right": right, "wrong": wrong, "undecided": 0},
               "kurtosis": {"right": 10, "wrong": 0, "undecided": 0}}
    _saved_signals(tmp_path, monkeypatch, {"signals": signals})
    try:
        assert direction.clock_signal() == clock
    finally:
        direction.signal_weights.cache_clear()
        direction.clock_signal.cache_clear()


def test_fit_weights_is_a_logistic_regression_without_intercept():
    """One signal right on r of n edges, wrong on the rest, and no penalty: the maximum
    likelihood weight is the log-odds of its accuracy, log(r / (n - r))."""
    v = np.array([[1.0]] * 30 + [[-1.0]] * 10)
    assert direction.fit_weights(v, ridge=0.0)[0] == pytest.approx(np.log(3.0), abs=1e-8)
    # two signals voting alike on every edge share the weight one of them would get alone
    both = direction.fit_weights(np.hstack([v, v]), ridge=0.0)
    assert both == pytest.approx([np.log(3.0) / 2] * 2, abs=1e-6)
    # a signal at chance beside a good one weighs nothing; the penalty keeps a perfect one finite
    coin = np.array([[1.0, 1.0], [1.0, -1.0]] * 20)
    assert direction.fit_weights(coin, ridge=0.0)[1] == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(direction.fit_weights(np.ones((50, 1)))[0])
    assert direction.fit_weights(np.ones((50, 1)))[0] > 3.0


def test_the_evidence_clock_reads_only_a_confident_posterior():
    """Output-layer norms 1.0 < 1.2 and a loss that says the same: with weights 1.0 and 1.5 the
    posterior of r -> c is sigmoid(2.5) = 0.92 (read at 0.9, not at 0.95); with the head alone,
    sigmoid(1.0) = 0.73, read only at level 0.5; with no evidence, never."""
    stats = {"r": _stats([1.0, 1.0], [0.0, 0.0], loss=0.2),
             "c": _stats([1.0, 1.2], [0.0, 0.0], loss=0.4)}
    e = _edge("r", "c", 0.1)
    both, head = {"head": 1.0, "loss": 1.5}, {"head": 1.0}
    assert evidence_clock(stats, both, 0.9)("r", "c", e) == 1
    assert evidence_clock(stats, both, 0.9)("c", "r", e) == -1
    assert evidence_clock(stats, both, 0.95)("r", "c", e) == 0
    assert evidence_clock(stats, head, 0.9)("r", "c", e) == 0
    assert evidence_clock(stats, head, 0.5)("c", "r", e) == -1
    assert evidence_clock(stats, {}, 0.5)("r", "c", e) == 0


def test_an_edge_the_evidence_clock_cannot_read_is_kept_where_the_head_clock_would_turn_it():
    """The adversarially trained child's output layer shrank (1.0 -> 0.9) but it fits the data
    worse: with the head as the clock, c becomes the root; with the evidence clock of weights
    that let the loss outweigh the head, the edge stays r -> c."""
    stats = {"r": _stats([1.0, 1.0], [0.0, 0.0], loss=0.2),
             "c": _stats([1.0, 0.9], [0.0, 0.0], loss=0.6)}
    e = _edge("r", "c", 0.1)
    _, roots = follow_clock([("r", "c", e)], ["r"], [e], stats)
    assert roots == ["c"]
    edges, roots = follow_clock([("r", "c", e)], ["r"], [e], stats,
                                evidence_clock(stats, {"head": 1.0, "loss": 3.5}))
    assert roots == ["r"] and [(p, c) for p, c, _ in edges] == [("r", "c")]


def test_each_weak_sentence_says_whether_it_counts_for_the_direction_or_against_it():
    from onnx_lineage.zoo.direction import weak_evidence
    said = weak_evidence("p", "c", {"head": 1, "norm": 1, "loss": -1, "kurtosis": 0},
                         {"head": 2.0, "norm": -0.7, "loss": 0.8, "kurtosis": 1.4})
    assert said == ["c has the larger output-layer norm (weight +2.00: for p -> c)",
                    "c has the larger hidden-layer norms (weight -0.70: against p -> c)",
                    "p fits the data worse (weight +0.80: against p -> c)"]
