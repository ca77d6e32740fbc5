"""Fixtures of the matching tests."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest


@pytest.fixture()
def same_function():
    """``same_function(a, b)`` asserts that two saved models with one input ``x`` of shape
    ``[n, 1, 8, 8]`` give the same outputs in onnxruntime on random rows."""
    def check(a, b):
        x = np.random.default_rng(0).normal(size=(3, 1, 8, 8)).astype(np.float32)
        out = [ort.InferenceSession(str(p)).run(None, {"x": x})[0] for p in (a, b)]
        np.testing.assert_allclose(*out, atol=1e-5)
    return check
