"""Row-wise argmax with the finiteness check, against numpy."""

import numpy as np
import pytest

from kernels.labels import argmax_rows


def test_matches_numpy_argmax_with_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 4, (200, 7)).astype(np.float32)  # many ties: first index wins, as numpy
    labels = np.empty(200, np.int64)
    assert argmax_rows(s, labels)
    np.testing.assert_array_equal(labels, np.argmax(s, axis=1))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_are_reported(bad):
    s = np.zeros((4, 3), np.float32)
    s[2, 1] = bad
    assert not argmax_rows(s, np.empty(4, np.int64))
