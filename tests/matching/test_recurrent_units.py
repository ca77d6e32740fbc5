"""A recurrent layer's hidden units as a class: matched in place, gates together."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from onnx_lineage.evidence.unit_order import unit_order_test
from onnx_lineage.matching import match
from tests.conftest import fixture_path
from tests.graphs import vad_variant

H, GATES = 16, 3
W, R, B, HEAD = "onnx::GRU_121", "onnx::GRU_122", "onnx::GRU_123", "head.weight"


def _variant(tmp_path, name, perm=None, noise=0.0, fresh=False):
    """The stateful detector (a GRU of 16 units read by a dense head) with its GRU units permuted
    in every gate, in the recurrent weights' columns, the biases and the head (the same
    probabilities; the state comes out permuted), with weight noise, or drawn again."""
    def edit(tensor, a):
        if perm is None:
            return a
        rows = np.concatenate([g * H + perm for g in range(GATES)])
        if tensor == W:
            return a[:, rows]
        if tensor == R:
            return a[:, rows][..., perm]
        if tensor == B:
            return a[:, np.concatenate([rows, GATES * H + rows])]
        return a[:, perm] if tensor == HEAD else a
    return vad_variant(tmp_path, name, edit, noise, fresh, seed=3)


def _hidden(m):
    (row,) = [r for r in unit_order_test(m.correspondence.class_matches, 0.01).classes
              if r.name.endswith("hidden units")]
    return row


def _probabilities(path):
    rng = np.random.default_rng(0)
    feeds = {"input": rng.normal(size=(8, 64)).astype(np.float32),
             "state": np.zeros((1, 8, H), np.float32), "sr": np.array(16000)}
    return ort.InferenceSession(str(path)).run(None, feeds)[0]


def test_permuting_the_gru_units_in_every_gate_keeps_the_function(tmp_path):
    perm = np.random.default_rng(1).permutation(H)
    np.testing.assert_allclose(_probabilities(fixture_path("torch_vad_state")),
                               _probabilities(_variant(tmp_path, "perm", perm=perm)), atol=1e-5)


@pytest.mark.parametrize("kind", ["same", "release"])
def test_a_release_keeps_the_order_of_its_recurrent_units(tmp_path, kind):
    b = _variant(tmp_path, kind, noise=0.0 if kind == "same" else 0.05)
    row = _hidden(match(fixture_path("torch_vad_state"), b))
    assert row.fixed_points == H and row.p_value < 1e-12


def test_permuted_units_are_matched_but_not_counted_in_order(tmp_path):
    perm = np.random.default_rng(1).permutation(H)
    m = match(fixture_path("torch_vad_state"), _variant(tmp_path, "perm", perm=perm))
    # A's unit u is B's unit perm^-1[u]: found, and only its fixed points count as kept order
    (cm,) = [c for c in m.correspondence.class_matches if c.cls.gates]
    np.testing.assert_array_equal(cm.perm, np.argsort(perm))
    assert _hidden(m).fixed_points == int(np.sum(perm == np.arange(H)))
    assert not any("hidden units" in t for t in m.transforms)  # compared in place


def test_an_independent_gru_keeps_no_order(tmp_path):
    row = _hidden(match(fixture_path("torch_vad_state"), _variant(tmp_path, "new", fresh=True)))
    assert row.p_value > 0.001


def test_a_recurrent_class_is_pinned_and_refuses_to_be_permuted(tmp_path):
    (cm,) = [c for c in match(fixture_path("torch_vad_state"),
                              _variant(tmp_path, "same")).correspondence.class_matches
            if c.cls.gates]
    assert cm.cls.pinned
    with pytest.raises(ValueError, match="never permuted"):
        cm.cls.permute({}, np.arange(H))
