"""The blend kernel against NumPy."""

import numpy as np
import pytest

from kernels.blend import blend


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0, 1.5])
def test_blend_matches_numpy(alpha):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 1001)).astype(np.float32)
    out = np.empty_like(a)
    blend(a, b, alpha, out)
    np.testing.assert_allclose(out, (1 - alpha) * a + alpha * b, rtol=1e-6, atol=1e-6)


def test_blend_writes_into_a_view():
    a, b = np.zeros(4, np.float32), np.ones(4, np.float32)
    buf = np.full(10, -1.0, np.float32)
    blend(a, b, 0.5, buf[3:7])
    np.testing.assert_array_equal(buf, [-1, -1, -1, .5, .5, .5, .5, -1, -1, -1])


@pytest.mark.parametrize("alpha", [0.0, 0.7, 1.0])
def test_blend_2d_reads_transposed_views(alpha):
    from kernels.blend import blend_2d
    rng = np.random.default_rng(2)
    a = rng.normal(size=(130, 70)).astype(np.float32)
    b = rng.normal(size=(70, 130)).astype(np.float32).T  # strided
    out = np.empty((130, 70), np.float32)
    blend_2d(a, b, alpha, out)
    expected = np.empty_like(out)
    blend(a.ravel(), np.ascontiguousarray(b).ravel(), alpha, expected.ravel())
    np.testing.assert_array_equal(out, expected)
