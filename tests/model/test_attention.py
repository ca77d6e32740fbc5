"""Attention blocks found in the graph, and what breaks their symmetry."""

from __future__ import annotations

import pytest

from onnx_lineage.model.attention import attention
from onnx_lineage.model.parameters import extract_layers
from tests.evidence.models import attention_model


def _blocks(model):
    return attention(model, extract_layers(model))


@pytest.mark.parametrize("shape", ["constant", "concat"])
def test_a_multi_head_block_is_found_with_its_heads(shape):
    (block,) = _blocks(attention_model(0, heads=4, shape=shape))
    assert (block.q, block.k, block.v, block.o) == (1, 2, 3, 4)
    assert (block.heads, block.head_dim) == (4, 4)


def test_a_rotary_factor_breaks_the_q_k_symmetry():
    assert _blocks(attention_model(0, rotary=True)) == []


def test_models_without_attention_have_no_block(family):
    from onnx_lineage.model.loading import load_model
    assert _blocks(load_model(family["parent"]).proto) == []


def test_a_scale_computed_from_the_shape_at_run_time_keeps_the_block():
    """Hugging Face's exports scale q and k by head_dim ** -0.25 read off q's shape at run time:
    one value for every dimension, so the block stays (it was lost: 31% of a MiniLM in a class)."""
    import numpy as np
    import onnxruntime as ort
    model = attention_model(0, heads=4, scale="computed")
    (block,) = _blocks(model)
    assert (block.heads, block.head_dim) == (4, 4)
    ids = np.random.default_rng(0).integers(0, 20, size=(3, 6))
    plain, computed = (ort.InferenceSession(m.SerializeToString()).run(None, {"ids": ids})[0]
                       for m in (attention_model(0, heads=4), model))
    np.testing.assert_allclose(plain, computed, rtol=1e-4, atol=1e-5)
