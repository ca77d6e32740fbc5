"""Similarity sums for unit matching: exact, or sketched when very large."""

from __future__ import annotations

import numpy as np


def test_a_sketched_similarity_finds_a_noisy_permuted_copy_and_is_equivariant(monkeypatch):
    from onnx_lineage.matching import permutation as P
    monkeypatch.setattr(P, "SKETCH_ABOVE", 1e5)
    monkeypatch.setattr(P, "SKETCH_DIM", 256)
    monkeypatch.setattr(P, "SKETCH_RATIO", 2)
    rng = np.random.default_rng(0)
    n = 300
    blocks_a = [rng.normal(size=(n, 400)), rng.normal(size=(n, 500))]
    truth = rng.permutation(n)
    blocks_b = [x[truth] + 0.5 * rng.normal(size=x.shape) for x in blocks_a]
    total = P.CosineSum(n, n, 900)
    for x, y in zip(blocks_a, blocks_b):
        total.add(x, y)
    assert total.sketched
    sim = total.result()
    assert np.array_equal(P.best_assignment(sim), np.argsort(truth))
    exact = sum(P.unit_cosine(x, y) for x, y in zip(blocks_a, blocks_b))
    assert np.abs(sim - exact).std() < 3 * np.sqrt(2 * 2 / 256)  # about the stated variance
    relabel = rng.permutation(n)  # B's units relabelled: the columns follow
    again = P.cosine_sum([(x, y[relabel]) for x, y in zip(blocks_a, blocks_b)])
    np.testing.assert_allclose(again, sim[:, relabel], rtol=1e-5, atol=1e-5)


def test_permuting_keeps_a_transposed_weight_transposed_and_half_precision_half():
    """A weight stored (in, out) and read transposed stays transposed in memory when B's units
    are permuted (the sweep then blends it without a strided walk); float16 stays float16."""
    from onnx_lineage.matching.permutation import permute_inputs, take_columns, take_rows
    rng = np.random.default_rng(5)
    stored = rng.normal(size=(6, 4)).astype(np.float16)
    w = stored.T  # canonical (out 4, in 6), a view
    perm = rng.permutation(4)
    rows = take_rows(w, perm)
    np.testing.assert_array_equal(rows, w[perm])
    assert rows.T.flags.c_contiguous and rows.dtype == np.float16
    cols = take_columns(w, rng.permutation(6))
    assert cols.T.flags.c_contiguous
    inputs = permute_inputs(w, np.arange(6)[::-1], 1, None)
    np.testing.assert_array_equal(inputs, w[:, ::-1])
    assert inputs.dtype == np.float16 and inputs.T.flags.c_contiguous
    scaled = permute_inputs(w, np.arange(6), 1, np.full(6, 2.0, np.float32))
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, w.astype(np.float32) / 2)


def _two_junctions(seed: int, monkeypatch):
    """Two junctions on separate layers (a transformer's feed-forward blocks between residual
    streams), A's weights and B's permuted copy, and a list that counts similarity sums."""
    import onnx_lineage.matching.permutation as permutation
    rng = np.random.default_rng(seed)
    a = {k: {"weight": rng.normal(size=shape).astype(np.float32)}
         for k, shape in ((0, (12, 5)), (1, (4, 12)), (2, (9, 4)), (3, (3, 9)))}
    perms = {0: rng.permutation(12), 2: rng.permutation(9)}
    b = {0: {"weight": a[0]["weight"][perms[0]]}, 1: {"weight": a[1]["weight"][:, perms[0]]},
         2: {"weight": a[2]["weight"][perms[2]]}, 3: {"weight": a[3]["weight"][:, perms[2]]}}
    chains = [permutation.Chain(0, 0, 1, 1, homogeneous=False),
              permutation.Chain(2, 2, 3, 3, homogeneous=False)]
    calls = []
    real = permutation._summed
    monkeypatch.setattr(permutation, "_summed", lambda *x, **k: calls.append(1) or real(*x, **k))
    return a, b, perms, chains, calls


def test_a_junction_nothing_else_moved_is_aligned_once(monkeypatch):
    """Each permuted copy is undone in the first pass, and the second pass, which the first
    pass's moves call for, does not compute either similarity again."""
    from onnx_lineage.matching.permutation import align_units
    a, b, perms, chains, calls = _two_junctions(7, monkeypatch)
    done = align_units(a, b, chains)
    assert len(calls) == 2
    for k in range(4):
        np.testing.assert_array_equal(b[k]["weight"], a[k]["weight"])
    np.testing.assert_array_equal(perms[0][done[0].perm], np.arange(12))


def test_unit_rows_are_unit_length_at_any_scale_and_zero_rows_stay_zero():
    from onnx_lineage.matching.permutation import row_norms, unit_rows
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 50)).astype(np.float32)
    a[1] *= 1e30  # squares overflow float32
    a[2] *= 1e-40  # subnormal values
    a[3] = 0
    a[4] *= 1e-20  # squares underflow float32
    wide = a.astype(np.float64)
    norms = np.linalg.norm(wide, axis=1)
    np.testing.assert_allclose(row_norms(a), norms, rtol=1e-5)
    u = unit_rows(a)
    assert u.dtype == np.float32 and np.all(np.isfinite(u))
    np.testing.assert_array_equal(u[3], 0)
    rows = [0, 1, 2, 4, 5]
    # subnormal inputs carry fewer digits: the row scaled from them agrees to their precision
    np.testing.assert_allclose(u[rows], wide[rows] / norms[rows, None], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(u[rows].astype(np.float64), axis=1), 1, rtol=1e-5)


def test_an_exact_similarity_sum_is_the_weighted_sum_of_the_blocks_cosines():
    from onnx_lineage.matching.permutation import CosineSum, unit_cosine
    rng = np.random.default_rng(4)
    blocks = [(rng.normal(size=(30, d)), rng.normal(size=(20, d))) for d in (9, 4, 13)]
    total = CosineSum(30, 20, 26)
    for w, block in zip((1, 0.5, 2), blocks):
        total.add(*block, weight=w)
    assert not total.sketched
    expected = sum(w * unit_cosine(x, y) for w, (x, y) in zip((1, 0.5, 2), blocks))
    np.testing.assert_allclose(total.result(), expected, rtol=1e-5, atol=1e-6)


def test_the_matching_is_found_slab_by_slab_and_falls_back_to_the_whole_matrix(monkeypatch):
    """A noisy permuted copy: every row's best column differs, found a slab at a time without
    the whole matrix; an unrelated B: rows collide, and the assignment on the whole matrix is
    the one ``best_assignment`` gives. Announcing fewer features than come makes room."""
    from onnx_lineage.matching import permutation as P
    monkeypatch.setattr(P, "SLAB_ROWS", 64)
    rng = np.random.default_rng(5)
    n = 300
    xs = [rng.normal(size=(n, 40)), rng.normal(size=(n, 30))]
    truth = rng.permutation(n)
    for ys in ([x[truth] + 0.3 * rng.normal(size=x.shape) for x in xs],
               [rng.normal(size=x.shape) for x in xs]):
        total = P.CosineSum(n, n, 50)  # fewer than the 70 to come
        for x, y in zip(xs, ys):
            total.add(x, y)
        whole = total.result()
        assert whole.shape == (n, n)
        np.testing.assert_array_equal(total.matching(), P.best_assignment(whole))
    np.testing.assert_array_equal(
        P.best_matching([(x, x[truth]) for x in xs]), np.argsort(truth))


def test_the_screen_proves_a_copys_columns_and_never_a_wrong_one():
    """Each row's best column on a quarter of the features is kept only where the bound proves
    it: every proven column is the exact similarities' argmax, whatever the noise, the blocks'
    weights, zero rows or exact ties; a near copy's rows are all proven, unrelated ones none."""
    from onnx_lineage.matching import permutation as P
    rng = np.random.default_rng(11)
    n = 200
    proven_share = {}
    for noise in (0.0, 0.05, 0.3, 1.0, 3.0, None):
        xs = [rng.normal(size=(n, 256)), rng.normal(size=(n, 97))]
        truth = rng.permutation(n)
        ys = ([rng.normal(size=x.shape) for x in xs] if noise is None else
              [x[truth] + noise * rng.normal(size=x.shape) for x in xs])
        xs[0][:3] = xs[1][:3] = 0.0  # zero units (a pruned model's): all their similarities tie
        ys[1][truth[5]] = ys[1][truth[6]]  # two of B's units alike on one block
        total = P.CosineSum(n, n, 353)
        for w, x, y in zip((1.0, 1.0, 0.5), (xs[0], xs[0][:, :0], xs[1]),
                           (ys[0], ys[0][:, :0], ys[1])):  # a block without features between
            total.add(x, y, weight=w)
        whole = total.result()
        cols = P._Screen(*total._operands(), total._spans).best(0, n)
        proven = cols >= 0
        np.testing.assert_array_equal(cols[proven], np.argmax(whole, axis=1)[proven])
        assert not proven[:3].any()
        proven_share[noise] = proven.mean()
    assert proven_share[0.0] >= 0.97 and proven_share[0.05] >= 0.97  # all but the zero rows, the tie
    assert proven_share[None] == 0.0


def test_rows_the_screen_cannot_prove_are_computed_in_full(monkeypatch):
    """Half of B's units copy A's and half are unrelated: the matching is still the assignment
    on the whole matrix, and a slab mostly unproven turns the screen off."""
    from onnx_lineage.matching import permutation as P
    monkeypatch.setattr(P, "SLAB_ROWS", 50)
    rng = np.random.default_rng(12)
    n = 200
    x = rng.normal(size=(n, 64))
    y = x + 0.05 * rng.normal(size=x.shape)
    y[1::2] = rng.normal(size=(n // 2, 64))  # every other unit unrelated
    truth = rng.permutation(n)
    screens = []
    real = P._Screen
    monkeypatch.setattr(P, "_Screen", lambda *a: screens.append(real(*a)) or screens[-1])
    total = P.CosineSum(n, n, 64)
    total.add(x, y[truth])
    np.testing.assert_array_equal(total.matching(), P.best_assignment(total.result()))
    assert len(screens) == 1
    unrelated = P.CosineSum(n, n, 64)
    unrelated.add(x, rng.normal(size=x.shape))
    calls = []
    monkeypatch.setattr(real, "best", lambda self, *a: calls.append(a) or np.full(50, -1))
    np.testing.assert_array_equal(unrelated.matching(), P.best_assignment(unrelated.result()))
    assert len(calls) == 1  # the first slab only


def test_a_given_matching_is_taken_at_a_junctions_first_alignment(monkeypatch):
    """align_units takes a matching it is given for a junction instead of computing the
    similarities; a junction it is not given is computed as before."""
    from onnx_lineage.matching.permutation import align_units
    a, b, perms, chains, calls = _two_junctions(8, monkeypatch)
    done = align_units(a, b, chains, given={0: np.argsort(perms[0])})
    assert len(calls) == 1  # junction 2 only
    for k in range(4):
        np.testing.assert_array_equal(b[k]["weight"], a[k]["weight"])
    np.testing.assert_array_equal(perms[0][done[0].perm], np.arange(12))


def test_a_sketched_block_read_transposed_gives_the_same_similarities(monkeypatch):
    """An embedding table is held as a transposed view of its stored rows: sketched in its own
    memory order, it gives what its contiguous copy gives."""
    from onnx_lineage.matching import permutation as P
    monkeypatch.setattr(P, "SKETCH_ABOVE", 1e3)
    monkeypatch.setattr(P, "SKETCH_DIM", 16)
    monkeypatch.setattr(P, "SKETCH_RATIO", 2)
    rng = np.random.default_rng(9)
    x = rng.normal(size=(300, 20)).astype(np.float32).T  # (20 units, 300 features), a view
    y = rng.normal(size=(20, 300)).astype(np.float32)
    sums = []
    for block in (x, np.ascontiguousarray(x)):
        total = P.CosineSum(20, 20, 300, seed=4)
        total.add(block, y)
        assert total.sketched
        sums.append(total.result())
    np.testing.assert_allclose(sums[0], sums[1], rtol=1e-6, atol=1e-7)


def test_sketched_units_are_screened_on_a_quarter_of_the_sketch(monkeypatch):
    """Sketched classes (a 7B decoder's SwiGLU units) are screened too, on the sketch's leading
    quarter: a noisy copy's rows are proven without the full product, and the matching is the
    assignment on the whole matrix of sketched similarities, for a copy and for unrelated units."""
    from onnx_lineage.matching import permutation as P
    monkeypatch.setattr(P, "SKETCH_ABOVE", 1e5)
    monkeypatch.setattr(P, "SKETCH_RATIO", 2)
    monkeypatch.setattr(P, "SLAB_ROWS", 100)
    rng = np.random.default_rng(13)
    n = 400
    xs = [rng.normal(size=(n, 2000)), rng.normal(size=(n, 2500))]
    truth = rng.permutation(n)
    proven = []
    real = P._Screen.best
    monkeypatch.setattr(P._Screen, "best", lambda self, *a: proven.append(
        float(np.mean(real(self, *a) >= 0))) or real(self, *a))
    for ys in ([x[truth] + 0.05 * rng.normal(size=x.shape) for x in xs],
               [rng.normal(size=x.shape) for x in xs]):
        total = P.CosineSum(n, n, 4500, seed=3)
        for x, y in zip(xs, ys):
            total.add(x, y)
        assert total.sketched
        np.testing.assert_array_equal(total.matching(), P.best_assignment(total.result()))
    assert min(proven[:4]) == 1.0  # the copy, at the sketch's real size: every row proven
    assert proven[4] == 0.0  # unrelated: none, and the screen is dropped after its first slab
