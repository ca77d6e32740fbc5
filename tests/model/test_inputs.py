"""Inputs as models declare them: batch axes from symbolic names, scalars, recurrent states."""

from __future__ import annotations

import numpy as np
import onnx

from onnx_lineage.model.inputs import batch_axes, declared_inputs
from onnx_lineage.model.runner import Runner
from tests.conftest import fixture_path


def test_a_state_batches_on_the_axis_that_carries_the_batch_name():
    assert batch_axes([("batch", 64), (2, "batch", 128), ()]) == [0, 1, None]


def test_the_batch_name_must_come_first_somewhere():
    # [1, seq]: a fixed batch of one, not a batch of positions
    assert batch_axes([(1, "seq"), (1, "seq")]) == [0, 0]


def test_fixed_inputs_beside_a_symbolic_batch_have_no_batch_axis():
    assert batch_axes([("n", 8), (1, 8), ("m", 3)]) == [0, None, 0]


def test_a_fixed_batch_model_batches_on_axis_zero():
    assert batch_axes([(4, 64)]) == [0]


def test_the_exported_detector_declares_its_state_and_scalar():
    specs, states = declared_inputs(onnx.load(fixture_path("torch_vad_state")))
    assert [(s.name, s.batch_axis) for s in specs] == [("input", 0), ("state", 1), ("sr", None)]
    assert states == {"state"}
    assert specs[1].row_shape == (1, 16) and specs[2].row_shape == ()


def test_the_runner_feeds_rows_first_and_the_scalar_whole():
    r = Runner(onnx.load(fixture_path("torch_vad_state")), device="cpu", batch_size=7)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 64)).astype(np.float32)
    state = rng.normal(size=(20, 1, 16)).astype(np.float32)  # rows first, as the runner takes it
    feeds = {"input": x, "state": state, "sr": np.array(16000, np.int64)}
    prob, state_n = r.run(feeds, outputs=["prob", "stateN"])
    assert prob.shape == (20, 2) and state_n.shape == (20, 1, 16)
    # the same rows one by one, in the model's own layout, give the same answers
    for i in (0, 13):
        one = r.session.run(None, {"input": x[i:i + 1], "state": state[i:i + 1].transpose(1, 0, 2),
                                   "sr": np.array(16000, np.int64)})
        np.testing.assert_allclose(prob[i], one[0][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state_n[i], one[1][:, 0], rtol=1e-5, atol=1e-6)


def test_dimensions_without_names_batch_a_state_on_its_unnamed_axis():
    # the shipped voice-activity detector: input [?, ?], state [2, ?, 128] (mirrored), sr scalar
    assert batch_axes([(None, None), (2, None, 128), ()], [(None, 1), (2, None, 128)]) == [
        0, 1, None]
    # a state of one layer is told by the output that mirrors it; a token input [1, ?] is not
    assert batch_axes([(None, None), (1, None, 16)], [(1, None, 16)]) == [0, 1]
    assert batch_axes([(1, None)]) == [0]


def test_the_detector_with_its_dimension_names_removed_is_analysed_as_shipped(tmp_path):
    from onnx_lineage.analyses.closeness import closeness
    from onnx_lineage.analyses.determination import determine
    from onnx_lineage.data import load_data
    model = onnx.load(fixture_path("torch_vad_state"))
    for vi in list(model.graph.input) + list(model.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                d.ClearField("dim_param")
    path = tmp_path / "vad.onnx"
    onnx.save(model, path)
    specs, states = declared_inputs(model)
    assert [(s.name, s.batch_axis) for s in specs] == [("input", 0), ("state", 1), ("sr", None)]
    assert states == {"state"}
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "vad.npz", input=rng.normal(size=(100, 64)).astype(np.float32),
             state=np.zeros((1, 100, 16), np.float32), sr=np.array(16000))
    data = load_data(tmp_path / "vad.npz")
    r = determine(str(path), str(path), data, copies=0)
    assert r.verdict == "related"
    c = closeness(str(path), str(path), data, points=20)
    assert c.matching_rate == 1.0


def test_a_state_of_a_model_of_fixed_batch_batches_where_the_batch_size_is():
    # an export of batch 1: input [1, 576], state [2, 1, 128] mirrored by the output stateN
    assert batch_axes([(1, 576), (2, 1, 128)], [(1, 1), (2, 1, 128)]) == [0, 1]
    assert batch_axes([(1, 576), (2, 1, 128)], [(1, 1)]) == [0, 0]  # no mirror: as before
