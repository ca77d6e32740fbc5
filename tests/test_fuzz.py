"""Fuzzing: hostile model bytes and data files give clean LineageErrors, never crashes.

Bounded runs (CI runs them in the default suite); raise ``ONNX_LINEAGE_FUZZ_EXAMPLES`` for a longer
campaign.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnx_lineage.data import load_data
from onnx_lineage.errors import LineageError
from onnx_lineage.model.inspect import inspect_model
from onnx_lineage.model.loading import load_model
from tests.conftest import fixture_path

EXAMPLES = int(os.environ.get("ONNX_LINEAGE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

SEEDS = [fixture_path(n).read_bytes() for n in ("torch_mlp_legacy", "sklearn_mlp",
                                                "torch_cnn_int8_qoperator", "torch_encoder")]


def _exercise(path):
    """Everything a command does with one model: load, inspect (layers, session, output)."""
    try:
        inspect_model(path, device="cpu")
    except LineageError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("fz") / "m.onnx"
    p.write_bytes(data)
    _exercise(p)


@FUZZ
@given(st.sampled_from(range(len(SEEDS))), st.lists(st.tuples(st.integers(0, 10**6),
                                                               st.integers(0, 255)),
                                                     min_size=1, max_size=8))
def test_mutated_models(tmp_path_factory, which, edits):
    raw = bytearray(SEEDS[which])
    for pos, val in edits:
        raw[pos % len(raw)] = val
    p = tmp_path_factory.mktemp("fz") / "m.onnx"
    p.write_bytes(bytes(raw))
    _exercise(p)


@FUZZ
@given(st.sampled_from(range(len(SEEDS))), st.integers(1, 4000))
def test_truncated_models(tmp_path_factory, which, cut):
    p = tmp_path_factory.mktemp("fz") / "m.onnx"
    p.write_bytes(SEEDS[which][: max(1, len(SEEDS[which]) - cut)])
    _exercise(p)


_dtypes = st.sampled_from(["float32", "float64", "int64", "int8", "bool", "U3", "complex64"])


@FUZZ
@given(st.dictionaries(st.sampled_from(["x", "y", "input_ids", "other"]),
                       st.tuples(_dtypes, st.lists(st.integers(0, 5), min_size=0, max_size=3)),
                       max_size=3),
       st.booleans())
def test_data_files(tmp_path_factory, arrays, poison):
    d = tmp_path_factory.mktemp("fzd")
    rng = np.random.default_rng(0)
    payload = {}
    for name, (dtype, shape) in arrays.items():
        a = rng.normal(size=shape) * 3
        if poison and a.size:
            a.flat[0] = np.nan
        with np.errstate(invalid="ignore"):  # NaN cast to integers: garbage on purpose
            payload[name] = a.astype(dtype) if dtype != "U3" else np.full(shape, "abc")
    p = d / "data.npz"
    np.savez(p, **payload)
    try:
        ds = load_data(p)
    except LineageError as exc:
        assert "\n" not in str(exc)
        return
    from onnx_lineage.data import feeds_for
    from onnx_lineage.model.runner import Runner
    r = Runner(load_model(fixture_path("torch_mlp_legacy")).proto, device="cpu")
    try:
        feeds, _ = feeds_for(r.inputs, ds)
        r.predict(feeds)
    except LineageError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("payload", [b"\x93NUMPY garbage", b"PK\x03\x04 not a zip"])
def test_corrupt_numpy_files(tmp_path, payload):
    for suffix in (".npy", ".npz"):
        p = tmp_path / f"d{suffix}"
        p.write_bytes(payload)
        with pytest.raises(LineageError):
            load_data(p)


# -- hostile shapes: nesting, compressed bombs, huge declared shapes, Tile chains -------------

@pytest.fixture
def small_budget():
    """A 256 MiB memory budget: whatever would need more must be refused before allocation."""
    from onnx_lineage import memory
    memory.set_budget("256M")
    yield
    memory.set_budget(None)


@FUZZ
@given(st.integers(0, 30))  # protobuf parses at most ~32 levels of nested If
def test_nested_subgraphs(tmp_path_factory, small_budget, depth):
    from tests.hostile import nested_if
    p = tmp_path_factory.mktemp("fzn") / "m.onnx"
    import onnx
    onnx.save(nested_if(depth), p)
    _exercise(p)


@FUZZ
@given(st.lists(st.integers(1, 10**7), min_size=1, max_size=4))
def test_huge_declared_shapes(tmp_path_factory, small_budget, shape):
    import onnx

    from tests.hostile import huge_constant
    p = tmp_path_factory.mktemp("fzh") / "m.onnx"
    onnx.save(huge_constant(shape), p)
    _exercise(p)


@FUZZ
@given(st.integers(0, 64), st.integers(1, 64))
def test_tile_chains(tmp_path_factory, small_budget, steps, width):
    import onnx

    from tests.hostile import tile_chain
    p = tmp_path_factory.mktemp("fzt") / "m.onnx"
    onnx.save(tile_chain(steps, width), p)
    _exercise(p)


@FUZZ
@given(st.integers(1, 8192), st.integers(1, 2048))
def test_compressed_bombs(tmp_path_factory, small_budget, rows, cols):
    from tests.hostile import zeros_npz
    p = zeros_npz(tmp_path_factory.mktemp("fzb") / "d.npz", rows, cols)
    try:
        ds = load_data(p)
    except LineageError as exc:
        assert "\n" not in str(exc) and ("limit" in str(exc) or "budget" in str(exc))
        return
    assert ds.arrays["x"].nbytes <= 256 * 1024**2
