"""Depth changes: a shallower model's layers put beside the deeper one's they came from."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnx_lineage.analyses.determination import determine
from onnx_lineage.matching import match
from onnx_lineage.model.parameters import extract_layers
from tests.residual import residual_model, token_data


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("depth")
    built = {"teacher": residual_model(0, blocks=6),
             # blocks 1, 3 and 5 of the teacher, its embedding table, then a little training
             "cousin": residual_model(0, blocks=6, take=[1, 3, 5], noise=0.05),
             "stranger": residual_model(7, blocks=3)}
    paths = {}
    for name, model in built.items():
        paths[name] = d / f"{name}.onnx"
        onnx.save(model, paths[name])
    return paths


def _blocks(path) -> dict:
    """Layer index -> (block, node name) for the feed-forward layers."""
    return {x.index: x.node for x in extract_layers(onnx.load(path))}


def test_the_cousins_blocks_are_paired_with_the_teachers_they_came_from(models):
    m = match(models["teacher"], models["cousin"])
    nodes_a, nodes_b = _blocks(models["teacher"]), _blocks(models["cousin"])
    ff = [(nodes_a[p["a"]], nodes_b[p["b"]]) for p in m.pairs if nodes_a[p["a"]].startswith("ff")]
    assert ff == [("ff1_1", "ff1_0"), ("ff2_1", "ff2_0"), ("ff1_3", "ff1_1"),
                  ("ff2_3", "ff2_1"), ("ff1_5", "ff1_2"), ("ff2_5", "ff2_2")]
    assert all(p["cosine"] > 0.99 for p in m.pairs)
    assert any(t.startswith("depth differs (21 layers in A, 12 in B)") and "1-3, 7-9, 13-15" in t
               for t in m.transforms)


def test_the_cousin_is_related_and_its_layers_are_the_shared_ones(models):
    r = determine(models["teacher"], models["cousin"], token_data(), seed=0)
    assert r.verdict == "related" and r.p_value < 1e-9
    assert {1, 2, 3, 7, 8, 9} & set(r.shared_layers) == set()


def test_a_shallower_stranger_is_not_related(models):
    r = determine(models["teacher"], models["stranger"], token_data(), seed=0)
    assert r.verdict != "related" and r.p_value > 0.01


#: An embedding model's proportions: a table of many rows, a stream of tens of units.
_WIDE = {"width": 48, "hidden_units": 96, "vocab": 3000}


def _embedding_cousin(path) -> onnx.ModelProto:
    """An embedding model of 3 blocks trained on its own from the teacher's word embeddings (a
    little moved), as a sentence encoder distilled from another's vocabulary: its blocks share
    nothing with the teacher's."""
    from onnx import numpy_helper
    teacher = onnx.load(path)
    table = next(numpy_helper.to_array(t) for t in teacher.graph.initializer if t.name == "E")
    cousin = residual_model(11, blocks=3, tail="output", **_WIDE)
    moved = table + 0.3 * table.std() * np.random.default_rng(4).normal(size=table.shape)
    for t in cousin.graph.initializer:
        if t.name == "E":
            t.CopyFrom(numpy_helper.from_array(moved.astype(np.float32), "E"))
    return cousin


def test_an_embedding_models_cousin_is_related_through_the_embeddings_alone(tmp_path):
    # the stream is the model's output (pinned): it is compared in place, and its order is what
    # the shared embeddings carry; the cousin's own blocks are not named as shared
    teacher = tmp_path / "teacher.onnx"
    onnx.save(residual_model(0, blocks=6, tail="output", **_WIDE), teacher)
    cousin, stranger = tmp_path / "cousin.onnx", tmp_path / "stranger.onnx"
    onnx.save(_embedding_cousin(teacher), cousin)
    onnx.save(residual_model(11, blocks=3, tail="output", **_WIDE), stranger)
    r = determine(teacher, cousin, token_data(), seed=0)
    assert r.verdict == "related" and r.p_value < 1e-6
    kinds = {x.index: x.kind for x in extract_layers(onnx.load(teacher))}
    assert 0 in r.shared_layers and kinds[0] == "embedding"
    assert not [i for i in r.shared_layers if kinds[i] == "dense"]
    s = determine(teacher, stranger, token_data(), seed=0)
    assert s.verdict != "related" and s.p_value > 0.01
