"""B - A low-rank: a merged adapter's rank found in every layer, through permutation and
rescaling; full fine-tunes, noise, rounding, pruning and independent models not called adapters."""

import numpy as np
import pytest

from onnx_lineage.analyses.lowrank import MAX_RANK, Difference, difference, rank_above
from onnx_lineage.matching import match
from tests.evidence.models import permuted, random_mlp, save

SIZES = (64, 128, 128, 128, 10)


def adapted(ws, bs, ranks, seed=1, layers=None):
    """Every weight (or ``layers``) plus a product U V of the given rank, at about 5% of its size."""
    rng = np.random.default_rng(seed)
    out = [w.copy() for w in ws]
    for k in (range(len(ws)) if layers is None else layers):
        o, i = ws[k].shape
        r = ranks[k] if isinstance(ranks, (list, tuple)) else ranks
        u, v = rng.normal(size=(o, r)), rng.normal(size=(r, i))
        d = u @ v
        out[k] = (ws[k] + 0.05 * np.linalg.norm(ws[k]) / np.linalg.norm(d) * d).astype(np.float32)
    return out, bs


@pytest.fixture
def parent():
    return random_mlp(0, SIZES)


def _diff(tmp_path, a, b) -> Difference:
    return difference(match(save(*a, tmp_path / "a.onnx"), save(*b, tmp_path / "b.onnx")))


@pytest.mark.parametrize("rank", [1, 4, 16, 64])
def test_a_merged_adapter_s_rank_is_found_exactly_in_every_layer(tmp_path, parent, rank):
    ranks = [min(rank, 32), rank, rank, min(rank, 5)]  # at most half of each smaller side
    d = _diff(tmp_path, parent, adapted(*parent, ranks))
    assert d.adapter and d.rank == rank
    assert [x.rank for x in d.layers] == ranks
    assert f"rank {rank}" in d.statement


def test_the_rank_is_found_through_permuted_units(tmp_path, parent):
    ws, bs = adapted(*parent, [8, 8, 8, 5])
    rng = np.random.default_rng(3)
    for layer in (0, 1, 2):
        ws, bs = permuted(ws, bs, layer, rng.permutation(128))
    d = _diff(tmp_path, parent, (ws, bs))
    assert d.adapter and [x.rank for x in d.layers] == [8, 8, 8, 5]


def test_layers_with_rescaled_units_are_not_read_and_say_so(tmp_path, parent):
    # an adapter and a rescaling: with B's own norms a scale is mixed in, with A's the norms'
    # change is: neither reading is low-rank, and the layers are not read
    ws, bs = adapted(*parent, [8, 8, 8, 5])
    rng = np.random.default_rng(3)
    ws, bs = permuted(ws, bs, 1, rng.permutation(128), rng.uniform(0.5, 2.0, 128))
    d = _diff(tmp_path, parent, (ws, bs))
    assert [x.unread for x in d.layers] == ["", "units rescaled", "units rescaled", ""]
    assert [x.rank for x in d.layers] == [8, None, None, 5]
    assert d.adapter and d.statement.startswith("layer(s) 1, 2 not read")


def test_an_adapter_beside_a_head_trained_in_full_is_said_to_be_both(tmp_path, parent):
    ws, bs = adapted(*parent, 4, layers=[0, 1, 2])
    ws[3] = ws[3] + 0.05 * np.random.default_rng(9).normal(size=ws[3].shape).astype(np.float32)
    d = _diff(tmp_path, parent, (ws, bs))
    assert not d.adapter and d.rank is None
    assert [x.low for x in d.layers] == [True, True, True, False]
    assert "full rank in layer(s) 3" in d.statement


@pytest.mark.parametrize("what", ["noise", "independent"])
def test_full_rank_differences_are_no_adapter(tmp_path, parent, what):
    if what == "noise":
        rng = np.random.default_rng(5)
        other = ([w + 0.01 * w.std() * rng.normal(size=w.shape).astype(np.float32)
                  for w in parent[0]], parent[1])
    else:
        other = random_mlp(7, SIZES)
    d = _diff(tmp_path, parent, other)
    assert not d.adapter and d.rank is None and all(not x.low for x in d.layers)
    assert "full rank" in d.statement


def test_a_copy_and_its_float16_rounding_have_no_difference(tmp_path, parent):
    assert "no change beyond" in _diff(tmp_path, parent, parent).statement
    half = ([w.astype(np.float16).astype(np.float32) for w in parent[0]], parent[1])
    d = _diff(tmp_path, parent, half)
    # stored as float32, so the rounding allowed is float32's: half precision is a change
    assert not d.adapter


def test_units_pruned_in_b_are_left_out(tmp_path, parent):
    ws, bs = adapted(*parent, 4)
    ws, bs = [w.copy() for w in ws], [b.copy() for b in bs]
    ws[1][:20] = 0  # 20 units of the second hidden layer zeroed, their reader's columns too
    bs[1][:20] = 0
    ws[2][:, :20] = 0
    d = _diff(tmp_path, parent, (ws, bs))
    assert d.adapter and d.rank == 4
    assert d.layers[1].shape == [108, 128] and d.layers[2].shape == [128, 108]


def test_sketched_ranks_are_exact_up_to_the_largest_and_full_beyond():
    rng = np.random.default_rng(0)
    m, n = 400, 500
    for r in (3, MAX_RANK):
        d = rng.normal(size=(m, r)) @ rng.normal(size=(r, n))
        noise = 1e-9 * rng.normal(size=(m, n))
        assert rank_above(d + noise, 1e-9 * np.sqrt(m * n) * 1.01) == r
    full = rng.normal(size=(m, n))
    assert rank_above(full, 1e-6) is None
    assert rank_above(np.zeros((m, n)), 0.0) == 0


def test_a_rescaled_copy_is_a_to_its_rounding_at_a_s_unit_norms(tmp_path, parent):
    rng = np.random.default_rng(4)
    ws, bs = permuted(*parent, 1, rng.permutation(128), rng.uniform(0.5, 2.0, 128))
    d = _diff(tmp_path, parent, (ws, bs))
    assert [x.rank for x in d.layers] == [0, 0, 0, 0] and not d.adapter
    assert "no change beyond" in d.statement



def test_determine_and_its_reports_say_so_for_a_related_pair_only(tmp_path, parent):
    from onnx_lineage.analyses.determination import determine
    from onnx_lineage.report.render import headline
    a = save(*parent, tmp_path / "a.onnx")
    r = determine(a, save(*adapted(*parent, [2, 2, 2, 2]), tmp_path / "b.onnx"), copies=0)
    assert r.related and r.difference["adapter"] and r.difference["rank"] == 2
    assert "low-rank adapter merged into A's weights, rank 2" in headline(r, None)
    r = determine(a, save(*random_mlp(7, SIZES), tmp_path / "c.onnx"), copies=0)
    assert not r.related and r.difference is None and "adapter" not in headline(r, None)


def test_each_layers_file_pages_are_let_go_once_read(tmp_path, parent, monkeypatch):
    """A 7B pair's weights are read whole here: without letting each layer's mapped pages go,
    the process held every page of both files (23 GB resident on the 7B pair)."""
    import onnx_lineage.analyses.lowrank as L
    calls = []
    monkeypatch.setattr(L, "release_pages", lambda: calls.append(1))
    d = _diff(tmp_path, parent, adapted(*parent, [2, 2, 2, 2]))
    assert len(calls) == len(d.layers) == 4
