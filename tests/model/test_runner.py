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


def test_fixed_batch_padding_is_not_counted_as_queries(digits):
    r = runner("torch_mlp_dynamo")
    feeds, _ = feeds_for(r.inputs, digits.subset(np.arange(10)))
    r.predict(feeds)
    assert r.forward_rows == 10  # three passes of 4 rows, two of them padding


def test_padded_shapes_plan_equal_power_of_two_batches():
    r = runner("torch_cnn_bn")
    r.pad_shapes, r.batch_size = True, 755
    assert r.plan(1000) == [(0, 500, 512), (500, 1000, 512)]
    assert r.plan(1001) == [(0, 501, 512), (501, 1001, 512)]
    assert r.plan(3) == [(0, 3, 4)]
    assert r.plan(700) == [(0, 700, 755)]  # never past the memory bound
    r.pad_shapes = False
    assert r.plan(1000) == [(0, 755, 755), (755, 1000, 245)]


def test_padded_shapes_give_the_unpadded_answers(digits):
    """CUDA sessions pad batches to few shapes; the padding never reaches the answers."""
    r = runner("torch_cnn_bn")
    feeds, _ = feeds_for(r.inputs, digits.subset(np.arange(300)))
    ref = r.predict(feeds).scores
    r.forward_rows = 0
    r.pad_shapes, r.batch_size = True, 128
    got = r.predict(feeds).scores  # batches of 100 rows padded to 128
    assert got.shape == ref.shape and r.forward_rows == 300
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_spare_rows_pad_the_batch_instead_of_copies(digits, monkeypatch):
    r = runner("torch_cnn_bn")
    feeds, _ = feeds_for(r.inputs, digits.subset(np.arange(300)))
    ref = r.predict(feeds).scores
    r.pad_shapes, r.batch_size = True, 512
    assert r.padded_rows(300) == 512
    (x,) = feeds.values()
    spare = np.concatenate([x, np.full((212,) + x.shape[1:], 7.0, np.float32)])
    seen = []
    run_batch = Runner._run_batch

    def spy(self, names, batch, rows):
        seen.append(batch)
        return run_batch(self, names, batch, rows)
    monkeypatch.setattr(Runner, "_run_batch", spy)
    (got,) = r.run({r.inputs[0].name: spare}, rows=300)
    (sent,) = seen[0].values()
    assert np.shares_memory(sent, spare) and len(sent) == 512  # no copy
    assert got.shape[0] == 300 and r.forward_rows == 600
    np.testing.assert_allclose(got, ref, atol=1e-5)
    with pytest.raises(ValueError):
        r.run({r.inputs[0].name: x}, rows=301)


def test_only_convolutional_models_are_padded():
    from onnx_lineage.model.runner import has_convolution
    assert has_convolution(load_model(fixture_path("torch_cnn_bn")).proto)
    assert has_convolution(load_model(fixture_path("torch_cnn_int8_qoperator")).proto)  # QLinearConv
    assert not has_convolution(load_model(fixture_path("torch_mlp_legacy")).proto)
    assert not runner("torch_cnn_bn").pad_shapes  # the CPU provider: no per-shape setup to keep


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


def _unshaped_conv(side=32, channels=64):
    """x (n, side^2) -> reshape to (n, 1, side, side) through a shape computed at run time (so
    shape inference cannot size what follows) -> a wide Conv -> a small head."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((channels, 1, 3, 3)).astype(np.float32), "w")
    head = numpy_helper.from_array(rng.standard_normal((channels * side * side, 10)).astype(np.float32),
                                   "h")
    tail = numpy_helper.from_array(np.array([1, side, side], np.int64), "tail")
    nodes = [helper.make_node("Shape", ["x"], ["s"], start=0, end=1),
             helper.make_node("Concat", ["s", "tail"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["img"]),
             helper.make_node("Conv", ["img", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("MatMul", ["f", "h"], ["logits"])]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", side * side])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
                          [w, head, tail])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_batches_stay_within_memory_when_shapes_cannot_be_inferred(monkeypatch):
    from onnx_lineage.model import runner as runner_module
    model = _unshaped_conv()
    _, certain, _ = runner_module.row_bytes(model)
    assert not certain  # shape inference cannot size the Conv output
    budget = 64 * 1024**2
    monkeypatch.setattr(runner_module, "BATCH_MEMORY_BYTES", budget)
    r = Runner(model, device="cpu")
    x = np.random.default_rng(1).random((300, 32 * 32), dtype=np.float32)
    out = r.predict({"x": x})
    # one row holds at least the Conv and Flatten outputs: 2 x 64 channels x 32 x 32 floats
    assert r.batch_size <= budget // (2 * 64 * 32 * 32 * 4)
    # and the batched answers are those of one big pass
    whole = r.session.run(None, {"x": x})[0]
    np.testing.assert_allclose(out.scores, whole, rtol=1e-4, atol=1e-3)


def test_unsized_models_too_large_to_probe_run_small_batches(monkeypatch):
    from onnx_lineage.model import runner as runner_module
    monkeypatch.setattr(runner_module, "PROBE_MAX_MODEL_BYTES", 1024)  # the test model is larger
    r = Runner(_unshaped_conv(), device="cpu")
    assert r.batch_size == runner_module.UNSIZED_LARGE_BATCH and not r._probe
    x = np.random.default_rng(1).random((100, 32 * 32), dtype=np.float32)
    np.testing.assert_allclose(r.predict({"x": x}).scores, r.session.run(None, {"x": x})[0],
                               rtol=1e-4, atol=1e-3)


def test_unsized_models_not_to_be_probed_run_small_batches_without_a_second_session(monkeypatch):
    from onnx_lineage.model import runner as runner_module

    def no_probe(*_):
        raise AssertionError("probed")
    monkeypatch.setattr(runner_module, "_probed_row_bytes", no_probe)
    r = Runner(_unshaped_conv(), device="cpu", probe=False)
    assert r.batch_size == runner_module.UNSIZED_LARGE_BATCH
    x = np.random.default_rng(1).random((40, 32 * 32), dtype=np.float32)
    np.testing.assert_allclose(r.predict({"x": x}).scores, r.session.run(None, {"x": x})[0],
                               rtol=1e-4, atol=1e-3)


def test_small_models_run_on_one_thread_with_the_same_answers(digits):
    from onnx_lineage.model.runner import SINGLE_THREAD_MAX_PARAMS, parameter_count
    r = runner("torch_mlp_legacy")
    assert parameter_count(r.model) <= SINGLE_THREAD_MAX_PARAMS
    assert r.session.get_session_options().intra_op_num_threads == 1
    feeds, _ = feeds_for(r.inputs, digits)
    two = runner("torch_mlp_legacy", threads=2)
    np.testing.assert_array_equal(r.predict(feeds).scores, two.predict(feeds).scores)
    assert runner("torch_cnn_bn").session.get_session_options().intra_op_num_threads != 1
    # few parameters but much work per row (attention over the sequence): the pool stays
    assert runner("torch_encoder").session.get_session_options().intra_op_num_threads != 1


def test_weights_fed_at_run_time_count_as_parameters():
    """An interpolated model takes its weights as inputs: it is as large as the model it blends."""
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 256]),
                           helper.make_tensor_value_info("w", TensorProto.FLOAT, [256, 256])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 256])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    threads = Runner(model, device="cpu", static_inputs=frozenset({"w"})).session \
        .get_session_options().intra_op_num_threads
    assert threads != 1
    assert Runner(model, device="cpu").session.get_session_options().intra_op_num_threads == 1
