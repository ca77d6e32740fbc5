"""Loading: valid files, external data, and one-line errors for everything else."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_lineage.errors import ModelError
from onnx_lineage.model.loading import load_model
from onnx_lineage.model.weights import inlined, is_mapped, tensor_array
from tests.conftest import fixture_path


def test_external_data_beside_the_model_is_read_in_place():
    path = fixture_path("torch_mlp_dynamo")
    m = load_model(path)
    full = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    assert any(is_mapped(t) for t in m.proto.graph.initializer)
    for t in m.proto.graph.initializer:
        np.testing.assert_array_equal(tensor_array(t), full[t.name])


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage\xff" * 10, b"not an onnx file"])
def test_unreadable_files_give_a_model_error(tmp_path, content):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(ModelError) as err:
        load_model(p)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        load_model(tmp_path / "nope.onnx")


def test_truncated_model(tmp_path):
    data = fixture_path("torch_mlp_legacy").read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError):
        load_model(p)


def _with_external(tmp_path, location: str):
    import numpy as np
    t = onnx.numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        e = t.external_data.add()
        e.key, e.value = k, v
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])], [t])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    d = tmp_path / "model"
    d.mkdir()
    onnx.save(m, d / "m.onnx")
    return d / "m.onnx"


@pytest.mark.parametrize("location", ["/etc/passwd", "../secret.bin", "sub/../../secret.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match="outside|refused"):
        load_model(_with_external(tmp_path, location))


def test_external_data_symlink_leading_out_is_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(b"\x00" * 16)
    path = _with_external(tmp_path, "w.bin")
    (path.parent / "w.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(ModelError, match="outside"):
        load_model(path)


def test_external_data_range_beyond_the_file_is_refused(tmp_path):
    path = _with_external(tmp_path, "w.bin")
    (path.parent / "w.bin").write_bytes(b"\x00" * 8)
    with pytest.raises(ModelError, match="beyond the end"):
        load_model(path)


def _mlp_with(tmp_path, mutate):
    from onnx import numpy_helper
    m = inlined(load_model(fixture_path("torch_mlp_legacy")).proto)
    t = m.graph.initializer[0]
    arr = numpy_helper.to_array(t).copy()
    mutate(t, arr)
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    return p


def test_nan_weights_are_refused(tmp_path):
    from onnx import numpy_helper

    from onnx_lineage.model.inspect import inspect_model

    def poison(t, arr):
        arr.flat[0] = float("nan")
        t.CopyFrom(numpy_helper.from_array(arr, t.name))
    with pytest.raises(ModelError, match="NaN or Inf"):
        inspect_model(_mlp_with(tmp_path, poison), device="cpu")


def test_tensor_data_not_fitting_its_shape(tmp_path):
    from onnx_lineage.model.inspect import inspect_model

    def shrink(t, arr):
        t.raw_data = t.raw_data[:-4]
    with pytest.raises(ModelError):
        inspect_model(_mlp_with(tmp_path, shrink), device="cpu")


def test_size_limits_can_be_lowered_by_environment(tmp_path):
    import subprocess
    import sys
    code = ("from onnx_lineage.model.loading import load_model; "
            f"load_model({str(fixture_path('torch_mlp_legacy'))!r})")
    env = {**__import__("os").environ, "ONNX_LINEAGE_MAX_MODEL_BYTES": "1000"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "over the limit of 1000" in r.stderr
    env = {**__import__("os").environ, "ONNX_LINEAGE_MAX_TENSOR_ELEMENTS": "100"}
    code = ("from onnx_lineage.model.inspect import inspect_model; "
            f"inspect_model({str(fixture_path('torch_mlp_legacy'))!r}, device='cpu')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "over the limit of 100" in r.stderr


def test_reading_a_model_holds_nothing_against_the_memory_budget():
    """The weights stay in the file: what a budget bounds is each command's own allocations
    (tests/model/test_footprint.py), not the reading."""
    from onnx_lineage import memory
    memory.set_budget(4 * 1024)  # the fixture's weights in float32 (17 kB) are larger
    try:
        loaded = load_model(fixture_path("torch_cnn_bn"))
    finally:
        memory.set_budget(None)
    assert len(loaded.proto.graph.node) > 0


def test_a_graph_out_of_order_is_put_in_order(tmp_path):
    """onnxruntime's float16 converter writes nodes out of order; onnxruntime runs such files,
    so onnx-lineage reads them too (the checker alone would refuse them)."""
    from onnx_lineage.demo.family import mlp_to_onnx
    from onnx_lineage.model.loading import load_model
    rng = np.random.default_rng(0)
    model = mlp_to_onnx([rng.normal(size=(8, 4)).astype(np.float32),
                         rng.normal(size=(3, 8)).astype(np.float32)],
                        [np.zeros(8, np.float32), np.zeros(3, np.float32)])
    nodes = list(model.graph.node)[::-1]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    path = tmp_path / "reversed.onnx"
    onnx.save(model, path)
    loaded = load_model(path)
    assert [n.op_type for n in loaded.proto.graph.node] == ["Gemm", "Relu", "Gemm"]


def test_an_op_deprecated_by_a_later_opset_is_read_at_its_own(tmp_path):
    """onnx's checker refuses GroupNormalization-18 ("deprecated in domain_version 18") though
    the model is valid at its opset and onnxruntime runs it."""
    import onnx

    from tests.evidence.models import groupnorm_block
    onnx.save(groupnorm_block(0, opset=18), tmp_path / "gn18.onnx")
    assert load_model(tmp_path / "gn18.onnx").proto.opset_import[0].version == 18
