"""Symmetry classes and their equivariant matching."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_lineage.matching.classes import match_classes, symmetry_classes
from onnx_lineage.matching import match
from onnx_lineage.matching.permutation import Reader
from tests.evidence.models import permuted, random_mlp, save


def _matches(pa, pb, seed=0):
    m = match(pa, pb)
    classes = symmetry_classes(m)
    c = m.correspondence
    return classes, match_classes(classes, c.a_params, c.b_own, np.random.default_rng(seed))


def test_an_mlp_has_one_class_per_hidden_layer(tmp_path):
    ws, bs = random_mlp(0)
    p = save(ws, bs, tmp_path / "a.onnx")
    classes, matches = _matches(p, p)
    assert [(c.rows, c.columns, c.width, c.rescalable) for c in classes] == [
        ((0,), (Reader(1),), 16, True), ((1,), (Reader(2),), 12, True)]
    assert all(m.fixed_points == m.cls.width and m.similarity > 0.999999 for m in matches)


def test_the_matching_is_equivariant(tmp_path):
    """Relabelling B's units of one class relabels that class's matching, and no other."""
    a, b = random_mlp(0), random_mlp(1)
    pa, pb = save(*a, tmp_path / "a.onnx"), save(*b, tmp_path / "b.onnx")
    sigma = np.random.default_rng(5).permutation(16)
    pb2 = save(*permuted(*b, 0, sigma), tmp_path / "b2.onnx")
    _, m1 = _matches(pa, pb)
    _, m2 = _matches(pa, pb2)
    inverse = np.argsort(sigma)
    assert np.array_equal(m2[0].perm, inverse[m1[0].perm])
    assert np.array_equal(m2[1].perm, m1[1].perm)
    assert m2[0].similarity == m1[0].similarity and m2[1].similarity == m1[1].similarity


def test_the_workers_and_their_share_of_the_blas_threads_do_not_change_the_matching(tmp_path):
    """One worker or several give the same matchings, and the BLAS library has its own thread
    count back afterwards (the workers divide the cores among themselves only while they run)."""
    from threadpoolctl import threadpool_info
    a, b = random_mlp(0), random_mlp(1)
    m = match(save(*a, tmp_path / "a.onnx"), save(*b, tmp_path / "b.onnx"))
    classes = symmetry_classes(m)
    before = [(x["internal_api"], x["num_threads"]) for x in threadpool_info()]
    c = m.correspondence
    runs = [match_classes(classes, c.a_params, c.b_own, np.random.default_rng(5), workers=w)
            for w in (1, 2, 3)]
    assert [(x["internal_api"], x["num_threads"]) for x in threadpool_info()] == before
    for other in runs[1:]:
        assert all(np.array_equal(x.perm, y.perm) and x.similarity == y.similarity
                   for x, y in zip(runs[0], other))


def test_a_permuted_and_rescaled_copy_is_matched_exactly(tmp_path):
    a = random_mlp(0)
    rng = np.random.default_rng(3)
    p0, p1 = rng.permutation(16), rng.permutation(12)
    b = permuted(*permuted(*a, 0, p0, rng.uniform(0.5, 2, 16)), 1, p1, rng.uniform(0.5, 2, 12))
    _, matches = _matches(save(*a, tmp_path / "a.onnx"), save(*b, tmp_path / "b.onnx"))
    assert np.array_equal(matches[0].perm, np.argsort(p0))
    assert np.array_equal(matches[1].perm, np.argsort(p1))
    assert min(m.similarity for m in matches) > 0.99999  # the rescaling of layer 0 is undone


def test_permute_is_function_preserving_and_reversible(tmp_path):
    ws, bs = random_mlp(2)
    m = match(save(ws, bs, tmp_path / "a.onnx"), save(ws, bs, tmp_path / "b.onnx"))
    params = dict(m.correspondence.b_own)
    cls = symmetry_classes(m)[0]
    perm = np.random.default_rng(0).permutation(cls.width)
    cls.permute(params, perm)
    assert np.array_equal(params[0]["weight"], m.correspondence.b_own[0]["weight"][perm])
    assert np.array_equal(params[1]["weight"], m.correspondence.b_own[1]["weight"][:, perm])
    cls.permute(params, np.argsort(perm))
    own = m.correspondence.b_own
    assert all(np.array_equal(params[i]["weight"], own[i]["weight"]) for i in (0, 1))


def test_permuting_one_layer_at_a_time_gives_the_whole_permutations_layers(tmp_path):
    """``only``: the layer's part of the class's permutation, nothing else copied (the basin
    test's copies are made so, a layer in hand at a time)."""
    ws, bs = random_mlp(2)
    m = match(save(ws, bs, tmp_path / "a.onnx"), save(ws, bs, tmp_path / "b.onnx"))
    cls = symmetry_classes(m)[0]
    perm = np.random.default_rng(1).permutation(cls.width)
    whole = dict(m.correspondence.b_own)
    cls.permute(whole, perm)
    for layer in cls.layers:
        part = {layer: m.correspondence.b_own[layer]}
        cls.permute(part, perm, only={layer})
        assert set(part) == {layer}
        assert all(np.array_equal(part[layer][k], whole[layer][k]) for k in whole[layer])


def test_a_depthwise_conv_follows_the_channels_that_feed_it(tmp_path, digits):
    import onnx

    from onnx_lineage.data import feeds_for
    from onnx_lineage.model.runner import Runner
    from tests.evidence.models import mobile_block
    perm = np.random.default_rng(4).permutation(8)
    pa, pb = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(mobile_block(0), pa)
    onnx.save(mobile_block(0, perm=perm), pb)
    ra, rb = Runner(onnx.load(pa), device="cpu"), Runner(onnx.load(pb), device="cpu")
    feeds, _ = feeds_for(ra.inputs, digits.subset(np.arange(20)))
    np.testing.assert_allclose(ra.predict(feeds).scores, rb.predict(feeds).scores, atol=1e-5)
    classes, matches = _matches(str(pa), str(pb))
    first = classes[0]
    assert first.rows == (0,) and first.per_unit == (1,) and first.columns == (Reader(2),)
    assert not first.rescalable  # a depthwise bias breaks positive homogeneity
    assert np.array_equal(matches[0].perm, np.argsort(perm))
    assert matches[0].similarity > 0.99999 and matches[1].fixed_points == 12
    m = match(str(pa), str(pb))
    assert not any("units not aligned" in x for x in m.limits)
    assert min(p["cosine"] for p in m.pairs) > 0.99999  # match undoes it too


def test_global_pooling_written_as_a_reduce_mean_keeps_the_channels(tmp_path):
    import onnx

    from tests.evidence.models import mobile_block
    paths = []
    for pool in ("GlobalAveragePool", "ReduceMean"):
        paths.append(tmp_path / f"{pool}.onnx")
        onnx.save(mobile_block(0, pool=pool), paths[-1])
    found = [[(c.rows, c.columns) for c in _matches(str(p), str(p))[0]] for p in paths]
    assert found[0] == found[1] == [((0,), (Reader(2),)), ((2,), (Reader(3),))]


def test_a_wide_class_is_assigned_near_optimally_among_its_candidates():
    from scipy.optimize import linear_sum_assignment

    from onnx_lineage.matching.classes import assignment
    from onnx_lineage.matching.permutation import SPARSE_ABOVE
    from onnx_lineage.matching.permutation import unit_cosine
    rng = np.random.default_rng(0)
    n = SPARSE_ABOVE + 88
    a = rng.normal(size=(n, 40))
    truth = rng.permutation(n)
    copy = a[truth] + 0.3 * rng.normal(size=(n, 40))  # a noisy, permuted copy
    assert np.array_equal(assignment([a], [copy], rng.permutation(n)), np.argsort(truth))
    other = 0.8 * a[truth] + rng.normal(size=(n, 40))  # barely related
    sim = unit_cosine(a, other)
    perm = assignment([a], [other], rng.permutation(n))
    _, dense = linear_sum_assignment(sim, maximize=True)
    assert sorted(perm) == list(range(n))
    assert sim[np.arange(n), perm].sum() == pytest.approx(sim[np.arange(n), dense].sum(), rel=1e-3)


def test_dimensions_permuted_within_heads_are_the_same_function_and_are_undone(tmp_path):
    import onnx

    from onnx_lineage.model.runner import Runner
    from tests.evidence.models import attention_model, within_heads
    rng = np.random.default_rng(1)
    qk, vo = within_heads(rng, 4, 4), within_heads(rng, 4, 4)
    pa, pb = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(attention_model(0), pa)
    onnx.save(attention_model(0, qk=qk, vo=vo), pb)
    ids = {"ids": rng.integers(0, 20, (10, 6))}
    np.testing.assert_allclose(Runner(onnx.load(pa), device="cpu").run(ids)[0],
                               Runner(onnx.load(pb), device="cpu").run(ids)[0], atol=1e-5)
    classes, matches = _matches(str(pa), str(pb))
    heads = [(c.name, c.span) for c in classes if c.kind == "attention"]
    assert len(heads) == 8 and heads[0] == ("layer 1 q/k head 0", (0, 4))
    for c, mt in zip(classes, matches):
        if c.kind == "attention":
            want = (qk if "q/k" in c.name else vo)[c.span[0]:c.span[1]] - c.span[0]
            assert np.array_equal(mt.perm, np.argsort(want)) and mt.similarity > 0.99999
    params = dict(match(str(pa), str(pb)).correspondence.b_own)
    for c, mt in zip(classes, matches):  # putting B's dimensions back in A's order gives A
        if c.kind == "attention":
            c.permute(params, mt.perm)
    m = match(str(pa), str(pa))
    for layer in (1, 2, 3, 4):
        np.testing.assert_allclose(params[layer]["weight"], m.correspondence.b_own[layer]["weight"],
                                   atol=1e-6)


def test_match_matches_the_classes_once_and_aligns_streams_and_junctions_by_them(tmp_path,
                                                                                monkeypatch):
    """``match`` matches the classes (the exact tests read them) and B's stream and
    feed-forward junctions are aligned by those matchings, not by similarities computed again:
    a permuted, noisy residual model comes out in A's order, and the matchings are those the
    classes get when matched from scratch with the same generator."""
    import onnx

    import onnx_lineage.matching.permutation as permutation
    from onnx_lineage.evidence import data_free
    from tests.residual import permutations, residual_model

    def save(name, model):
        onnx.save(model, tmp_path / f"{name}.onnx")
        return tmp_path / f"{name}.onnx"

    p, q = permutations()
    a = save("a", residual_model())
    b = save("b", residual_model(stream=p, hidden=q, noise=0.02))
    computed = []
    real = permutation.cosine_sum
    monkeypatch.setattr(permutation, "cosine_sum",
                        lambda *x, **k: computed.append(1) or real(*x, **k))
    m = match(a, b, rng=np.random.default_rng(3))
    assert not computed  # neither the stream nor the two junctions compared again
    assert all(pair["cosine"] > 0.99 for pair in m.pairs)
    assert any("residual stream of B" in t for t in m.transforms)
    assert any("hidden units of B permuted" in t for t in m.transforms)
    c = m.correspondence
    fresh = match_classes(symmetry_classes(m), c.a_params, c.b_own, np.random.default_rng(3))
    for x, y in zip(m.correspondence.class_matches, fresh):
        np.testing.assert_array_equal(x.perm, y.perm)
        assert x.similarity == y.similarity
    ev = data_free(m)
    assert ev.matches is m.correspondence.class_matches  # read, not matched again
    assert ev.unit_order.p_value > 0.01 and ev.aligned.p_value < 1e-6  # permuted: aligned tells


@pytest.mark.parametrize("stream", [False, True])
def test_units_concatenated_into_one_reader_are_classes_over_their_blocks(tmp_path, stream):
    """Two convolutions (or a residual stream and a convolution) concatenated on the channels:
    each is a class over its block of the reader's inputs; a copy with both blocks permuted is
    matched back exactly, by the classes and by match's weight matching."""
    import onnx

    from tests.evidence.models import concat_block
    pa, pb = (np.array([2, 0, 3, 1]), np.array([1, 2, 0]))
    paths = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    onnx.save(concat_block(0, stream=stream), paths[0])
    onnx.save(concat_block(0, (pa, pb), stream=stream), paths[1])
    classes, matches = _matches(str(paths[0]), str(paths[1]))
    first = (0, 2) if stream else (0,)  # the stream: its writers, the first conv and the skip's
    reader = 3 if stream else 2
    blocks = {c.rows: c.columns for c in classes}
    assert blocks[first][-1] == Reader(reader, span=(0, 4))
    assert blocks[(1,)] == (Reader(reader, span=(4, 7)),)
    perm = {m.cls.rows: m.perm for m in matches}
    assert np.array_equal(perm[first], np.argsort(pa)) and np.array_equal(perm[(1,)], np.argsort(pb))
    assert min(m.similarity for m in matches) > 0.99999
    m = match(str(paths[0]), str(paths[1]))
    assert min(p["cosine"] for p in m.pairs) > 0.99999  # B's blocks put back in A's order
    assert m.limits == []


@pytest.mark.parametrize("opset", [21, 18])
def test_a_group_norm_makes_one_class_per_group_and_a_permuted_copy_is_matched_back(
        tmp_path, opset):
    import onnx

    from tests.evidence.models import groupnorm_block
    perm = np.array([1, 0, 2, 3, 5, 4])  # within the groups (0, 1), (2, 3), (4, 5)
    paths = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    onnx.save(groupnorm_block(0, opset=opset), paths[0])
    onnx.save(groupnorm_block(0, perm, opset=opset), paths[1])
    classes, matches = _matches(str(paths[0]), str(paths[1]))
    groups = [m for m in matches if m.cls.rows == (0,)]
    assert [m.cls.span for m in groups] == [(0, 2), (2, 4), (4, 6)]
    assert np.array_equal(np.concatenate([2 * k + m.perm for k, m in enumerate(groups)]),
                          np.argsort(perm))
    m = match(str(paths[0]), str(paths[1]))
    assert min(p["cosine"] for p in m.pairs) > 0.99999


def test_a_gated_linear_unit_is_one_class_over_both_halves_and_a_permuted_copy_is_matched(
        tmp_path):
    import onnx

    from tests.evidence.models import glu_mlp
    perm = np.array([3, 1, 0, 5, 4, 2])
    paths = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    onnx.save(glu_mlp(0), paths[0])
    onnx.save(glu_mlp(0, perm), paths[1])
    classes, matches = _matches(str(paths[0]), str(paths[1]))
    (cm,) = matches
    assert cm.cls.tiles == ((0, 2),) and cm.cls.width == 6
    assert np.array_equal(cm.perm, np.argsort(perm)) and cm.similarity > 0.99999
    m = match(str(paths[0]), str(paths[1]))
    assert m.limits == [] and min(p["cosine"] for p in m.pairs) > 0.99999
    params = {k: dict(v) for k, v in m.correspondence.b_own.items()}
    cm.cls.permute(params, cm.perm)  # both halves of B's rows, and its reader's columns
    for layer in (0, 1):
        np.testing.assert_allclose(params[layer]["weight"],
                                   m.correspondence.a_params[layer]["weight"],
                                   rtol=1e-6)
    np.testing.assert_allclose(params[0]["bias"], m.correspondence.a_params[0]["bias"], rtol=1e-6)
