"""Closeness: identities, ladders on the demo family, label-only and batch-dependent models."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_lineage.analyses.closeness import closeness
from onnx_lineage.data import Dataset
from onnx_lineage.errors import LineageError
from tests.conftest import fixture_path


def test_a_model_is_at_closeness_one_to_itself(family):
    r = closeness(family["parent"], family["parent"], points=64)
    assert r.closeness == 1.0 and r.matching_rate == 1.0
    assert r.mean_distance["a"] == r.mean_distance["b"]


def test_functionally_identical_copies(family):
    r = closeness(family["parent"], family["obfuscated"], points=64)
    assert r.closeness >= 0.98
    r = closeness(fixture_path("torch_mlp_legacy"), fixture_path("sklearn_mlp_from_torch"), points=64)
    assert r.closeness >= 0.98


def test_int8_copy_is_close(family):
    r = closeness(family["parent"], family["int8"], points=128)
    assert r.closeness >= 0.9
    assert any("one row at a time" in n for n in r.notes)


def test_more_fine_tuning_is_less_close(family):
    light = closeness(family["parent"], family["finetuned_light"], points=128).closeness
    heavy = closeness(family["parent"], family["finetuned_heavy"], points=128).closeness
    assert 1.0 > light > heavy


def test_deterministic_with_seed(family):
    r1 = closeness(family["parent"], family["noisy"], points=64, seed=5)
    r2 = closeness(family["parent"], family["noisy"], points=64, seed=5)
    assert r1.closeness == r2.closeness and r1.queries == r2.queries


def test_interval_and_budget(family):
    r = closeness(family["parent"], family["finetuned_heavy"], points=512, budget=2000,
                  round_size=32)
    assert r.ci95[0] <= r.closeness <= r.ci95[1]
    assert r.points < 512 and any("budget" in n for n in r.notes)


def test_label_only_models(digits):
    r = closeness(fixture_path("sklearn_mlp"), fixture_path("sklearn_mlp"), output="labels", points=32)
    assert r.closeness == 1.0


def test_discrete_token_inputs_follow_a_path():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, (120, 7))
    mask = np.ones((120, 7), np.int64)
    data = Dataset({"input_ids": ids, "attention_mask": mask})
    r = closeness(fixture_path("torch_encoder"), fixture_path("torch_encoder"), data, points=32)
    assert r.closeness == 1.0 and r.path.startswith("discrete")


def test_regression_labels_are_derived(digits, tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = np.random.default_rng(0).normal(size=(64, 1)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "reg",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
                          [numpy_helper.from_array(w, "w")])
    p = tmp_path / "reg.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), p)
    r = closeness(p, p, points=32)
    assert r.closeness == 1.0 and "quantile bins" in r.labels


def test_bad_options_are_refused(family):
    with pytest.raises(LineageError):
        closeness(family["parent"], family["parent"], points=0)
    with pytest.raises(ValueError, match="unknown direction"):
        closeness(family["parent"], family["parent"], directions=("sideways",))


def test_padded_batches_give_the_same_closeness(monkeypatch):
    """Under CUDA, convolutional models run batches padded to few shapes, with earlier query
    points as padding; the answers are those of unpadded batches."""
    from onnx_lineage.model import runner as runner_module
    a, b = fixture_path("torch_cnn_bn"), fixture_path("torch_cnn_folded")
    kw = {"points": 48, "seed": 4, "device": "cpu", "round_size": 24}
    ref = closeness(a, b, **kw)
    monkeypatch.setattr(runner_module, "PAD_PROVIDERS", ("CPUExecutionProvider",))
    padded = []
    run_batch = runner_module.Runner._run_batch

    def spy(self, names, batch, rows):
        (x,) = batch.values()
        padded.append(len(x) - rows)
        return run_batch(self, names, batch, rows)
    monkeypatch.setattr(runner_module.Runner, "_run_batch", spy)
    got = closeness(a, b, **kw)
    assert sum(padded) > 0  # padding happened
    assert got.queries == ref.queries  # and is not counted
    assert got.closeness == pytest.approx(ref.closeness, abs=1e-9)
    np.testing.assert_allclose(got.distances["a"], ref.distances["a"], rtol=1e-9, equal_nan=True)
