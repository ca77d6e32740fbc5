"""Width-pruned children: layers with fewer units, compared on the units they kept."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from onnx_lineage.analyses.determination import determine
from onnx_lineage.data import Dataset
from onnx_lineage.demo.family import mlp_to_onnx
from onnx_lineage.matching import match
from tests.evidence.models import random_mlp, save, width_pruned

SIZES = (64, 128, 128, 128, 10)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("pruned")
    ws, bs = random_mlp(0, SIZES)
    other = random_mlp(1, SIZES)
    return {"parent": save(ws, bs, d / "parent.onnx"),
            "child": save(*width_pruned(ws, bs, 32, noise=0.05), d / "child.onnx"),
            "stranger": save(*width_pruned(*other, 32), d / "stranger.onnx"),
            "new_head": save(ws[:3] + [ws[3][:4]], bs[:3] + [bs[3][:4]], d / "head.onnx"),
            "x": np.random.default_rng(0).random((300, 64)).astype(np.float32)}


def _run(path_or_model, x):
    blob = path_or_model.SerializeToString() if hasattr(path_or_model, "SerializeToString") \
        else str(path_or_model)
    return ort.InferenceSession(blob).run(None, {"x": x})[0]


def test_a_pruned_child_is_paired_layer_by_layer_and_reported(models):
    m = match(models["parent"], models["child"])
    assert len(m.pairs) == 4 and m.coverage == {"a": 1.0, "b": 1.0}
    assert [(p["a"], p["pruned"], p["kept"], p["units"]) for p in m.pruned] == [
        (0, "b", 96, 128), (1, "b", 96, 128), (2, "b", 96, 128)]
    assert all(p["coverage"] == 0.75 for p in m.pruned)
    assert "pruned units: B keeps 96 of 128" in m.pairs[1]["transforms"]
    assert m.pairs[0]["cosine"] > 0.8


@pytest.mark.parametrize("aligned", [True, False])
def test_the_padded_child_computes_the_childs_function(models, aligned):
    m = match(models["parent"], models["child"])
    params = m.correspondence.b_aligned if aligned else m.correspondence.b_own
    ws = [params[i]["weight"] for i in range(4)]
    bs = [params[i]["bias"] for i in range(4)]
    assert all(w.shape == (o, i) for w, i, o in zip(ws, SIZES, SIZES[1:]))
    x = models["x"][:20]
    np.testing.assert_allclose(_run(mlp_to_onnx(ws, bs), x), _run(models["child"], x),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("a, b", [("parent", "child"), ("child", "parent")])
def test_a_pruned_child_is_related_either_way(models, a, b):
    r = determine(models[a], models[b], Dataset({"x": models["x"]}), seed=0)
    assert r.verdict == "related" and r.p_value < 1e-9
    order = r.test("unit_order")
    assert all(c.successions == c.kept - 1 for c in order.classes)


@pytest.mark.parametrize("a, b", [("parent", "stranger"), ("stranger", "parent")])
def test_an_independent_pruned_model_is_not_related(models, a, b):
    r = determine(models[a], models[b], Dataset({"x": models["x"]}), seed=0)
    assert r.verdict != "related" and r.p_value > 0.01


def test_a_new_head_is_not_mistaken_for_pruning(models):
    m = match(models["parent"], models["new_head"])
    assert m.pruned == [] and [p["a"] for p in m.pairs] == [0, 1, 2]
