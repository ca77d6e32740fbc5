"""Units read by a recurrent layer: the frame layer of a stateful detector feeds a GRU through a
Transpose; its units are a class, the GRU's own units stay fixed (the state is an input)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from onnx_lineage.analyses.determination import determine
from onnx_lineage.data import Dataset
from onnx_lineage.matching import match
from tests.conftest import fixture_path
from tests.graphs import vad_variant

FRAME_W, FRAME_B, GRU_W = "onnx::MatMul_103", "frame.bias", "onnx::GRU_121"


def _variant(tmp_path, name, perm=None, noise=0.0, fresh=False):
    """The detector with its frame units permuted (the same function), weight noise (a new
    release) or every weight drawn again at the same scale (an independent model)."""
    def edit(tensor, a):
        if perm is None:
            return a
        return {FRAME_W: lambda: a[:, perm], FRAME_B: lambda: a[perm],
                GRU_W: lambda: a[..., perm]}.get(tensor, lambda: a)()
    return vad_variant(tmp_path, name, edit, noise, fresh, seed=7)


@pytest.fixture()
def data():
    rng = np.random.default_rng(0)
    return Dataset({"input": rng.normal(size=(120, 64)).astype(np.float32),
                    "state": np.zeros((1, 120, 16), np.float32), "sr": np.array(16000)})


def _outputs(path, data):
    feeds = {"input": data.arrays["input"][:8], "state": data.arrays["state"][:, :8],
             "sr": data.arrays["sr"]}
    return ort.InferenceSession(str(path)).run(None, feeds)[0]


def test_units_read_by_a_gru_are_permuted_back(tmp_path, data):
    perm = np.random.default_rng(1).permutation(12)
    a, b = fixture_path("torch_vad_state"), _variant(tmp_path, "perm", perm=perm)
    np.testing.assert_allclose(_outputs(a, data), _outputs(b, data), atol=1e-6)
    m = match(a, b)
    assert all(p["cosine"] > 0.9999 for p in m.pairs)
    assert "permutation" in m.pairs[0]["transforms"] and not m.limits


@pytest.mark.parametrize("kind, related", [("release", True), ("independent", False)])
def test_a_new_release_is_related_an_independent_detector_is_not(tmp_path, data, kind, related):
    b = _variant(tmp_path, kind, noise=0.05 if related else 0.0, fresh=not related)
    r = determine(fixture_path("torch_vad_state"), b, data, seed=0)
    assert (r.verdict == "related") is related
    assert (r.p_value < 1e-6) if related else (r.p_value > 0.01)
