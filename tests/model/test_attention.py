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
