"""Child or sibling: the share of a model's own change that another carries."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_lineage.zoo import inheritance
from onnx_lineage.zoo.inheritance import CHILD_SHARE, displacement_share

SHAPES = [(64, 32), (32, 16, 3, 3), (10, 32)]


def _model(rng, scale=1.0):
    return {k: {"weight": scale * rng.normal(size=s), "bias": rng.normal(size=s[0])}
            for k, s in enumerate(SHAPES)}


def _low_rank(rng, rank=3, size=3.0):
    """A change shared by trainings alike: a few directions per layer, larger than a run's own."""
    out = {}
    for k, s in enumerate(SHAPES):
        n, d = s[0], int(np.prod(s[1:]))
        m = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))
        out[k] = {"weight": (size * m / np.linalg.norm(m) * np.sqrt(n * d) * 0.05).reshape(s),
                  "bias": np.zeros(n)}
    return out


def _plus(*models, weights=None):
    weights = weights or [1.0] * len(models)
    return {k: {key: sum(w * m[k][key] for w, m in zip(weights, models)) for key in models[0][k]}
            for k in models[0]}


@pytest.fixture
def family():
    rng = np.random.default_rng(0)
    q = _model(rng)
    drift = _low_rank(rng)
    own = [_model(rng, 0.05) for _ in range(3)]
    return q, drift, own


def test_a_child_carries_its_parents_own_change_even_after_training_back(family):
    """q -> p -> c, c trained back half-way along the task's pull: still carries p's own change."""
    q, drift, (n1, n2, _) = family
    p = _plus(q, drift, n1)
    c = _plus(p, drift, n2, weights=[1.0, -0.5, 1.0])
    share = displacement_share(q, p, c)
    assert share > CHILD_SHARE and share == pytest.approx(1.0, abs=0.25)


def test_siblings_trained_alike_carry_little_of_each_others_change(family):
    """q -> p and q -> c along the same pull: near 0 once the shared directions are out, though
    the plain projection would call c p's child."""
    q, drift, (n1, n2, _) = family
    p, c = _plus(q, drift, n1), _plus(q, drift, n2)
    assert abs(displacement_share(q, p, c)) < 0.2
    assert displacement_share(q, p, c, shared_rank=0) > CHILD_SHARE


def test_a_copy_of_the_grandparent_tells_nothing(family):
    q, drift, (n1, _, _) = family
    assert displacement_share(q, q, _plus(q, drift, n1)) is None
    assert displacement_share({}, {}, {}) is None


def test_large_layers_use_the_randomized_subspace(monkeypatch):
    """Above EXACT_SVD_BELOW the shared directions come from subspace iteration: the same share
    as the full SVD's, to a few percent."""
    rng = np.random.default_rng(1)
    n, d = 600, 520
    base = rng.normal(size=(n, d))
    m = rng.normal(size=(n, 4)) @ rng.normal(size=(4, d))
    drift = 2.0 * m / np.linalg.norm(m) * np.sqrt(n * d) * 0.05
    p = base + drift + 0.05 * rng.normal(size=(n, d))
    c = p - 0.5 * drift + 0.05 * rng.normal(size=(n, d))
    q_, p_, c_ = ({0: {"weight": x}} for x in (base, p, c))
    fast = displacement_share(q_, p_, c_)
    monkeypatch.setattr(inheritance, "EXACT_SVD_BELOW", 10_000)
    assert fast == pytest.approx(displacement_share(q_, p_, c_), rel=0.05)


def test_the_sentence_says_which():
    assert inheritance.evidence("q", "p", "c", 0.9).endswith("a child of p")
    assert "sibling" in inheritance.evidence("q", "p", "c", 0.1)
