"""The batched search: the one-kernel path from class scores equals the label path."""

import numpy as np
import pytest

from onnx_lineage.analyses.boundary import search
from onnx_lineage.analyses.rays import ContinuousSpace
from onnx_lineage.errors import ModelError


def linear_problem(rays=300, d=16, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((100, d), dtype=np.float32)
    w = rng.standard_normal((d, classes)).astype(np.float32)
    u = rng.standard_normal((rays, d)).astype(np.float32)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    origin = rng.integers(0, 100, rays)
    space = ContinuousSpace(x, np.zeros(d, np.float32), np.ones(d, np.float32), (d,))
    return space, w, u, origin, np.argmax(x[origin] @ w, axis=1)


def test_score_path_equals_label_path():
    space, w, u, origin, base = linear_problem()
    kw = {"t0": space.scale / 64, "tmax": 2 * space.scale, "rtol": 1e-3}
    by_labels = search(lambda m, c, o: np.argmax(m @ w, axis=1), space, u, origin, base, **kw)
    by_scores = search(None, space, u, origin, base, score_fn=lambda m, c, o: m @ w, **kw)
    assert by_labels.found.any() and (~by_labels.found).any()  # both outcomes occur
    np.testing.assert_array_equal(by_scores.distance, by_labels.distance)
    np.testing.assert_array_equal(by_scores.flip, by_labels.flip)
    assert (by_scores.queries, by_scores.steps) == (by_labels.queries, by_labels.steps)


def test_non_finite_scores_name_the_model():
    space, w, u, origin, base = linear_problem(rays=10)

    def scores(m, c, o):
        s = m @ w
        s[3, 1] = np.nan
        return s

    with pytest.raises(ModelError, match="^mymodel: .*NaN"):
        search(None, space, u, origin, base, score_fn=scores, t0=0.1, tmax=5.0, name="mymodel")
