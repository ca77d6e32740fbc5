"""attribute: shares of linear, task-arithmetic and SLERP merges found, adapters and fine-tunes
of one parent told apart, an independent model given no share, a value-by-value recipe unfitted."""

import math

import numpy as np
import pytest

from onnx_lineage.analyses.attribution import attribute
from tests.evidence.models import random_mlp, save

SIZES = (64, 128, 128, 128, 10)


def _moved(model, seed, size=0.3):
    """``model`` plus a full-rank task vector of ``size`` times each tensor's norm."""
    rng = np.random.default_rng(seed)
    def move(t):
        d = rng.normal(size=t.shape)
        return (t + size * np.linalg.norm(t) / np.linalg.norm(d) * d).astype(np.float32)
    return [move(w) for w in model[0]], [move(b) for b in model[1]]


def _combine(models, weights, base=None):
    """Each tensor ``sum w_i x_i`` (with a base: ``q + sum w_i (x_i - q)``)."""
    def one(k, j):
        q = 0.0 if base is None else base[k][j]
        return (q + sum(w * (m[k][j] - q) for w, m in zip(weights, models))).astype(np.float32)
    return tuple([one(k, j) for j in range(len(models[0][k]))] for k in (0, 1))


def dare(models, weights, base, rng):
    """DARE: each task vector's values dropped at random (half), the rest doubled, weighed."""
    return tuple([(q + sum(w * np.where(rng.random(q.shape) < 0.5, 0.0, 2.0 * (x[k][j] - q))
                           for w, x in zip(weights, models))).astype(np.float32)
                  for j, q in enumerate(base[k])] for k in (0, 1))


def ties(models, base):
    """TIES: each task vector trimmed to its top 20%, signs elected, the agreeing values
    averaged."""
    merged = []
    for k in (0, 1):
        out = []
        for j, q in enumerate(base[k]):
            taus = np.stack([x[k][j] - q for x in models])
            cut = np.quantile(np.abs(taus), 0.8, axis=tuple(range(1, taus.ndim)), keepdims=True)
            taus = np.where(np.abs(taus) >= cut, taus, 0.0)
            agree = (np.sign(taus) == np.sign(taus.sum(0))) & (taus != 0)
            out.append((q + (taus * agree).sum(0) / np.maximum(agree.sum(0), 1)).astype(np.float32))
        merged.append(out)
    return tuple(merged)


def _slerp(x0, x1, t):
    u0, u1 = x0.ravel() / np.linalg.norm(x0), x1.ravel() / np.linalg.norm(x1)
    omega = math.acos(float(np.clip(u0 @ u1, -1, 1)))
    s0, s1 = math.sin((1 - t) * omega) / math.sin(omega), math.sin(t * omega) / math.sin(omega)
    return (s0 * x0 + s1 * x1).astype(np.float32)


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    d = tmp_path_factory.mktemp("merges")
    base = random_mlp(0, SIZES)
    p1, p2, p3 = (_moved(base, s) for s in (1, 2, 3))
    paths = {"base": save(*base, d / "base.onnx"), "p1": save(*p1, d / "p1.onnx"),
             "p2": save(*p2, d / "p2.onnx"), "p3": save(*p3, d / "p3.onnx"),
             "stranger": save(*random_mlp(9, SIZES), d / "stranger.onnx")}
    return d, paths, {"base": base, "p1": p1, "p2": p2, "p3": p3}


def _share(r, name):
    return next(s for s in r.parents if s.parent == f"{name}.onnx")


def test_a_linear_merge_s_shares_are_found(family):
    d, paths, m = family
    b = save(*_combine([m["p1"], m["p2"]], [0.3, 0.7]), d / "linear.onnx")
    r = attribute(b, [paths["p1"], paths["p2"]])
    assert r.recipe == "linear" and r.remainder_rank == 0
    assert abs(_share(r, "p1").share - 0.3) < 0.01 and abs(_share(r, "p2").share - 0.7) < 0.01
    assert "linear average" in r.statement


def test_task_arithmetic_from_a_base_with_three_parents(family):
    d, paths, m = family
    b = save(*_combine([m["p1"], m["p2"], m["p3"]], [0.5, 0.8, 0.2], base=m["base"]),
             d / "ta.onnx")
    r = attribute(b, [paths["p1"], paths["p2"], paths["p3"]], base=paths["base"])
    assert r.recipe == "task arithmetic"
    for name, w in (("p1", 0.5), ("p2", 0.8), ("p3", 0.2)):
        s = _share(r, name)
        assert abs(s.share - w) < 0.05 and w - 0.01 <= s.interval[0] <= s.interval[1] <= w + 0.01


def test_a_slerp_merge_is_told_from_a_linear_one(family):
    d, paths, m = family
    merged = ([_slerp(x, y, 0.4) for x, y in zip(m["p1"][0], m["p2"][0])],
              [_slerp(x, y, 0.4) for x, y in zip(m["p1"][1], m["p2"][1])])
    r = attribute(save(*merged, d / "slerp.onnx"), [paths["p1"], paths["p2"]])
    assert r.recipe == "slerp", r.statement


def test_an_independent_candidate_gets_no_share(family):
    d, paths, m = family
    b = save(*_combine([m["p1"], m["p2"]], [0.5, 0.5]), d / "half.onnx")
    r = attribute(b, [paths["p1"], paths["stranger"], paths["p2"]])
    stranger = _share(r, "stranger")
    assert not stranger.related and stranger.share is None and stranger.p_value > r.alpha
    assert r.recipe == "linear" and abs(_share(r, "p1").share - 0.5) < 0.01


def test_a_fine_tune_of_one_parent_is_not_called_a_merge(family):
    d, paths, m = family
    b = save(*_moved(m["p1"], 11, size=0.05), d / "ft.onnx")
    r = attribute(b, [paths["p1"], paths["p2"]], base=paths["base"])
    assert r.recipe == "fine-tune" and "p1.onnx trained further" in r.statement
    # no share of a model trained after is tested: its sibling's share would not be valid
    assert _share(r, "p1").p_share is None and _share(r, "p2").p_share is None


def test_each_parent_of_a_merge_has_a_p_value_for_a_share_of_zero(family):
    d, paths, m = family
    b = save(*_combine([m["p1"], m["p2"], m["p3"]], [0.5, 0.8, 0.0], base=m["base"]),
             d / "two_of_three.onnx")
    r = attribute(b, [paths["p1"], paths["p2"], paths["p3"]], base=paths["base"])
    # B is exactly p1 and p2's merge: each is needed, p3 is not
    assert _share(r, "p1").p_share <= 1e-300 and _share(r, "p2").p_share <= 1e-300
    assert _share(r, "p3").p_share == 1.0 and abs(_share(r, "p3").share) < 0.01


def test_an_adapter_on_one_parent_gives_its_rank(family):
    d, paths, m = family
    rng = np.random.default_rng(5)
    ws = [w + (0.05 * np.linalg.norm(w) / 20 * rng.normal(size=(w.shape[0], 4))
               @ rng.normal(size=(4, w.shape[1])) / np.sqrt(w.shape[0] * 4 / 20)).astype(np.float32)
          for w in m["p1"][0]]
    r = attribute(save(ws, m["p1"][1], d / "adapter.onnx"), [paths["p1"], paths["p2"]],
                  base=paths["base"])
    assert r.recipe == "adapter" and r.remainder_rank == 4
    assert "p1.onnx with a low-rank adapter of rank 4" in r.statement


def test_dare_is_read_value_by_value_with_its_shares(family):
    d, paths, m = family
    merged = dare([m["p1"], m["p2"]], [0.4, 0.8], m["base"], np.random.default_rng(6))
    r = attribute(save(*merged, d / "dare.onnx"), [paths["p1"], paths["p2"]], base=paths["base"])
    assert r.recipe == "dare", r.statement
    assert abs(_share(r, "p1").share - 0.4) < 0.05 and abs(_share(r, "p2").share - 0.8) < 0.05
    # value by value B is exactly their merge, and not without either
    assert _share(r, "p1").p_share <= 1e-300 and _share(r, "p2").p_share <= 1e-300


def test_dare_of_task_vectors_that_leave_most_values_unchanged_is_read(tmp_path):
    """Each parent changed a tenth of the values of every tensor (as a fine-tune changes only
    the embedding rows of the tokens its text holds): a value of B that is one parent's times
    its coefficient is then rare among all values, common among those the parent changed."""
    base, rng = random_mlp(0, SIZES), np.random.default_rng(7)

    def sparse(t, moved):
        return np.where(rng.random(t.shape) < 0.1, moved, t).astype(np.float32)
    parents = []
    for s in (1, 2, 3):
        moved = _moved(base, s)
        parents.append(tuple([sparse(t, x) for t, x in zip(base[k], moved[k])] for k in (0, 1)))
    paths = [save(*p, tmp_path / f"p{i}.onnx") for i, p in enumerate(parents)]
    merged = [[(q + sum(w * np.where(rng.random(q.shape) < 0.5, 0.0, 2.0 * (x[k][j] - q))
                        for w, x in zip((0.9, 0.8, 0.4), parents))).astype(np.float32)
               for j, q in enumerate(base[k])] for k in (0, 1)]
    r = attribute(save(*merged, tmp_path / "dare.onnx"), paths,
                  base=save(*base, tmp_path / "base.onnx"))
    assert r.recipe == "dare", r.statement
    assert all(abs(s.share - w) < 0.05 for s, w in zip(r.parents, (0.9, 0.8, 0.4)))


def test_ties_is_read_value_by_value(family):
    d, paths, m = family
    merged = ties([m["p1"], m["p2"], m["p3"]], m["base"])
    r = attribute(save(*merged, d / "ties.onnx"), [paths["p1"], paths["p2"], paths["p3"]],
                  base=paths["base"])
    assert r.recipe == "ties", r.statement
    assert all(abs(_share(r, n).share - 1.0) < 0.05 for n in ("p1", "p2", "p3"))


def test_a_merge_fine_tuned_after_is_left_unfitted(family):
    d, paths, m = family
    merged = _moved(_combine([m["p1"], m["p2"]], [0.5, 0.5]), 12, size=0.05)
    r = attribute(save(*merged, d / "merged_ft.onnx"), [paths["p1"], paths["p2"]],
                  base=paths["base"])
    assert r.recipe == "unfitted" and "does not fit" in r.statement


def test_a_model_related_to_no_candidate_gets_no_shares(family):
    d, paths, m = family
    r = attribute(paths["stranger"], [paths["p1"]])
    assert r.recipe == "none" and all(s.share is None for s in r.parents)


def test_a_base_unrelated_to_b_is_said_to_be(family):
    d, paths, m = family
    b = save(*_combine([m["p1"], m["p2"]], [0.5, 0.5]), d / "half_again.onnx")
    r = attribute(b, [paths["p1"], paths["p2"]], base=paths["stranger"])
    assert any("stranger.onnx is not related" in n for n in r.notes)
    assert not attribute(b, [paths["p1"], paths["p2"]], base=paths["base"]).notes
