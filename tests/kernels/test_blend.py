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


def test_widen_half_is_exact_on_every_half_precision_value():
    from kernels.blend import widen_half
    bits = np.arange(1 << 16, dtype=np.uint16)
    out = np.empty(bits.size, np.uint32)
    widen_half(bits, out)
    expected = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(expected)
    assert np.isnan(out.view(np.float32)[nan]).all()
    np.testing.assert_array_equal(out[~nan], expected.view(np.uint32)[~nan])  # bit for bit


@pytest.mark.parametrize("halves", [(True, False), (False, True), (True, True)])
def test_blend_mixed_equals_blending_the_widened_endpoints(halves):
    from kernels.blend import blend_mixed
    rng = np.random.default_rng(3)
    n = 10_007  # several chunks and a partial one
    ends = [rng.normal(size=n).astype(np.float16 if h else np.float32) for h in halves]
    args = []
    for x, h in zip(ends, halves):
        args += [x.view(np.uint16) if h else np.empty(0, np.uint16),
                 np.empty(0, np.float32) if h else x, h]
    out, expected = np.empty(n, np.float32), np.empty(n, np.float32)
    blend_mixed(*args, 0.3, out, np.empty(2 * 1024, np.uint32))
    blend(ends[0].astype(np.float32), ends[1].astype(np.float32), 0.3, expected)
    np.testing.assert_array_equal(out, expected)
