"""The count-sketch kernel."""

from __future__ import annotations

import numpy as np

from kernels.sketch import count_sketch


def test_count_sketch_is_the_signed_bucket_sum_and_adds_the_squares():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 40)).astype(np.float32)
    bucket = rng.integers(0, 7, 40)
    sign = rng.choice(np.array([-1.0, 1.0], np.float32), 40)
    project = np.zeros((40, 7))
    project[np.arange(40), bucket] = sign
    out, squares = np.ones((5, 7)), np.ones(5)  # added to, not overwritten
    count_sketch(x, bucket, sign, out, squares)
    np.testing.assert_allclose(out, 1 + x.astype(np.float64) @ project, rtol=1e-12)
    np.testing.assert_allclose(squares, 1 + (x.astype(np.float64) ** 2).sum(axis=1), rtol=1e-12)
    strided = np.zeros((5, 7)), np.zeros(5)  # a transposed view gives the same
    count_sketch(np.asfortranarray(x), bucket, sign, *strided)
    np.testing.assert_allclose(strided[0], out - 1, rtol=1e-12)


def test_the_column_walk_gives_the_same_sketch_of_a_transposed_table():
    from kernels.sketch import count_sketch_columns
    rng = np.random.default_rng(1)
    table = rng.normal(size=(40, 5)).astype(np.float32)  # stored (vocab, dim), read (dim, vocab)
    bucket = rng.integers(0, 7, 40)
    sign = rng.choice(np.array([-1.0, 1.0], np.float32), 40)
    rows = np.zeros((5, 7)), np.zeros(5)
    count_sketch(np.ascontiguousarray(table.T), bucket, sign, *rows)
    out_t, squares = np.zeros((7, 5)), np.zeros(5)
    count_sketch_columns(table, bucket, sign, out_t, squares)
    np.testing.assert_allclose(out_t.T, rows[0], rtol=1e-12)
    np.testing.assert_allclose(squares, rows[1], rtol=1e-12)
