"""The runner: output kinds, fixed batches, several inputs, batch-dependent models."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_lineage.data import Dataset, feeds_for
from onnx_lineage.errors import DataError, LineageError
from onnx_lineage.model.loading import load_model
from onnx_lineage.model.runner import Runner
from tests.conftest import fixture_path


def runner(name, **kw):
    return Runner(load_model(fixture_path(name)).proto, device="cpu", name=name, **kw)


@pytest.mark.parametrize("name,kind", [("torch_mlp_legacy", "logits"),
                                       ("sklearn_mlp", "probabilities"),
                                       ("sklearn_logreg", "probabilities"),
                                       ("keras_mlp", "logits")])
def test_output_kind_is_chosen_from_the_graph(name, kind):
    assert runner(name).output_kind == kind


def test_label_only_output_can_be_forced(digits):
    r = runner("sklearn_mlp", output="labels")
    feeds, _ = feeds_for(r.inputs, digits)
    labels = r.predict(feeds)
    assert labels.scores is None
    probs = runner("sklearn_mlp").predict(feeds)
    np.testing.assert_array_equal(labels.labels, probs.labels)


def test_the_provider_that_really_runs_is_reported():
    assert runner("torch_mlp_legacy").provider == "CPUExecutionProvider"


def test_unknown_output_kind_is_refused():
    with pytest.raises(LineageError, match="unknown output kind"):
        runner("torch_mlp_legacy", output="banana")


def test_fixed_batch_models_are_looped_and_padded(digits):
    r = runner("torch_mlp_dynamo")  # exported with a static batch of 4
    assert r.fixed_batch == 4
    sub = digits.subset(np.arange(10))  # 10 rows: not a multiple of 4
    feeds, _ = feeds_for(r.inputs, sub)
    got = r.predict(feeds).scores
    legacy = runner("torch_mlp_legacy")
    ref = legacy.predict(feeds_for(legacy.inputs, sub)[0]).scores
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_batch_dependent_models_run_row_by_row(digits):
    r = runner("torch_mlp_int8_dynamic")
    assert r.batch_dependent and r.batch_size == 1
    feeds, _ = feeds_for(r.inputs, digits.subset(np.arange(40)))
    whole = r.predict(feeds).scores
    alone = np.concatenate([r.predict({k: v[i:i + 1] for k, v in feeds.items()}).scores
                            for i in range(40)])
    np.testing.assert_array_equal(whole, alone)
    # the same model forced into one batch gives other answers: the detection matters
    batched = Runner(r.model, device="cpu", batch_size=40)
    batched.batch_size = 40
    assert not np.array_equal(batched.predict(feeds).scores, whole)


def test_several_inputs_are_fed_by_name():
    r = runner("torch_encoder")
    rng = np.random.default_rng(0)
    data = Dataset({"input_ids": rng.integers(0, 50, (6, 7)),
                    "attention_mask": np.ones((6, 7), np.int64), "extra": np.zeros(6)})
    feeds, ignored = feeds_for(r.inputs, data)
    assert ignored == ["extra"]
    assert r.predict(feeds).scores.shape == (6, 3)


def test_missing_input_names_what_is_missing():
    r = runner("torch_encoder")
    with pytest.raises(DataError, match="attention_mask"):
        feeds_for(r.inputs, Dataset({"input_ids": np.zeros((2, 3), np.int64)}))


def test_rows_are_reshaped_to_the_model_input(digits):
    r = runner("torch_cnn_folded")
    feeds, _ = feeds_for(r.inputs, digits)
    assert feeds["x"].shape == (len(digits), 1, 8, 8)
    acc = (r.predict(feeds).labels == digits.y).mean()
    assert acc > 0.9


def test_wrong_row_shape_is_a_data_error():
    r = runner("torch_mlp_legacy")
    with pytest.raises(DataError, match="expects rows of shape"):
        feeds_for(r.inputs, Dataset({"x": np.zeros((3, 5), np.float32)}))
