"""Weights read in place: the skeleton's tensors are the file's, sessions run from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from onnx_lineage.model.runtime import session
from onnx_lineage.model.weights import (INLINE_BYTES, external_tensors, inlined, is_mapped,
                                        skeleton, stored_bytes, tensor_array)
from tests.conftest import FIXTURES, fixture_path

MODELS = sorted(p.stem for p in FIXTURES.glob("*.onnx"))


@pytest.mark.parametrize("name", MODELS)
def test_every_initializer_reads_as_the_protobuf_parser_reads_it(name):
    path = fixture_path(name)
    full = onnx.load(str(path), load_external_data=False).graph.initializer
    skel = {t.name: t for t in skeleton(path).graph.initializer}
    assert list(skel) == [t.name for t in full]
    for t in full:
        if onnx.external_data_helper.uses_external_data(t):
            continue  # a data file beside the model: mapped by the loader, tested there
        ours = skel[t.name]
        assert is_mapped(ours) == (len(t.raw_data) >= INLINE_BYTES)
        expected = numpy_helper.to_array(t)
        got = tensor_array(ours)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_a_skeleton_is_small_and_its_session_runs_the_same_model():
    path = fixture_path("torch_cnn_bn")
    skel = skeleton(path)
    assert skel.ByteSize() < path.stat().st_size / 4
    assert stored_bytes(skel) >= path.stat().st_size - 64
    mapped = external_tensors(skel)
    assert mapped and all(not v.flags.writeable for v in mapped.values())
    name = ort.InferenceSession(str(path)).get_inputs()[0].name
    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    ours = session(skel).run(None, {name: x})[0]
    np.testing.assert_array_equal(ours, ort.InferenceSession(str(path)).run(None, {name: x})[0])


def test_inlined_holds_every_byte_again(tmp_path):
    path = fixture_path("torch_mlp_legacy")
    copy = inlined(skeleton(path))
    assert not any(is_mapped(t) for t in copy.graph.initializer)
    onnx.save(copy, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("cut", [1, 17, 1000])
def test_a_truncated_file_is_not_scanned(tmp_path, cut):
    data = fixture_path("torch_mlp_legacy").read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[:-cut])
    assert skeleton(p) is None


def _resident_file_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssFile")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_released_pages_leave_resident_memory_and_read_back_the_same(tmp_path, monkeypatch):
    from onnx_lineage.model import weights
    monkeypatch.setattr(weights, "MAP_ABOVE", 0)  # map even this small file
    path = tmp_path / "w.bin"
    values = np.random.default_rng(0).normal(size=4 * 1024**2 // 8 * 4)  # 16 MB
    values.tofile(path)
    arr = weights.mapped(str(path)).view(np.float64)
    before = _resident_file_mb()
    total = float(arr.sum())
    read = _resident_file_mb()
    weights.release_pages()
    released = _resident_file_mb()
    assert read - before > 12 and read - released > 12
    assert float(arr.sum()) == total  # back from the page cache, the same bytes
