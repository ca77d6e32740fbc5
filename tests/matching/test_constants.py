"""Fixed signal-processing constants are recognised; trained weights are not."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_lineage.analyses.determination import determine
from onnx_lineage.matching import match
from onnx_lineage.matching.constants import is_signal_constant
from onnx_lineage.model.loading import load_model
from onnx_lineage.model.parameters import extract_layers


def dft_basis(n: int) -> np.ndarray:
    k, t = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return np.cos(2 * np.pi * k * t / n).astype(np.float32)


def position_table(positions: int, dim: int) -> np.ndarray:
    pos = np.arange(positions)[:, None]
    freq = 1.0 / 10000 ** (np.arange(0, dim, 2) / dim)
    table = np.zeros((positions, dim), np.float32)
    table[:, 0::2], table[:, 1::2] = np.sin(pos * freq), np.cos(pos * freq)
    return table


def test_recognised_and_not():
    assert is_signal_constant(dft_basis(64))
    assert is_signal_constant(position_table(128, 32).T)
    rng = np.random.default_rng(0)
    assert not is_signal_constant(rng.normal(size=(64, 64)))
    assert not is_signal_constant(dft_basis(64) + 0.05 * rng.normal(size=(64, 64)))


def test_columns_are_screened_on_their_leading_rows():
    """A table whose columns are the sinusoids, taller than the screen: still recognised; a
    tall trained-like matrix is turned away by its leading rows."""
    from onnx_lineage.matching.constants import SCREEN_ROWS, _columns_may_be
    table = position_table(4 * SCREEN_ROWS, 32)
    assert is_signal_constant(table) and _columns_may_be(table)
    tall = np.random.default_rng(1).normal(size=(4 * SCREEN_ROWS, 32))
    assert not _columns_may_be(tall) and not is_signal_constant(tall)


def with_dft_front(tmp_path, name, family_path):
    """The family member behind a fixed DFT feature layer (64 -> 64): same function class."""
    layers = extract_layers(load_model(family_path).proto)
    nodes = [helper.make_node("MatMul", ["x", "dft"], ["f"], name="dft")]
    inits = [numpy_helper.from_array(dft_basis(64).T.copy(), "dft")]
    prev = "f"
    for k, layer in enumerate(layers):
        inits += [numpy_helper.from_array(layer.weight, f"w{k}"),
                  numpy_helper.from_array(layer.params["bias"], f"b{k}")]
        out = "logits" if k == len(layers) - 1 else f"h{k}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{k}", f"b{k}"], [out], transB=1))
        if k < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"a{k}"]))
            prev = f"a{k}"
    g = helper.make_graph(nodes, name,
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
                          inits)
    p = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), p)
    return p


def test_shared_dft_front_does_not_count_as_shared_training(tmp_path, family):
    a = with_dft_front(tmp_path, "a", family["parent"])
    b = with_dft_front(tmp_path, "b", family["independent"])
    m = match(a, b)
    assert [x["a"] for x in m.excluded] == [0]
    assert all(p["a"] != 0 for p in m.pairs)
    assert m.coverage == {"a": 1.0, "b": 1.0}  # of the trained parameters
    with_front = determine(a, b)
    without = determine(family["parent"], family["independent"])
    assert with_front.verdict == "unrelated"
    # the bit-identical front adds nothing to the weight evidence
    assert abs(with_front.similarity - without.similarity) < 1e-6


@pytest.mark.parametrize("trained_rows,expected", [(100, True), (101, False)])
def test_the_early_stop_is_exact_at_the_fraction(trained_rows, expected):
    """1000 rows, the trained (random) ones first: 10% of them still allows 90% sinusoids, one
    more does not; the chunked count must not stop before the verdict is certain."""
    rng = np.random.default_rng(0)
    n = np.arange(64)
    rows = [np.cos(rng.uniform(0, np.pi) * n + rng.uniform(0, 6)) for _ in range(1000 - trained_rows)]
    w = np.vstack([rng.standard_normal((trained_rows, 64)), np.asarray(rows)]).astype(np.float32)
    assert is_signal_constant(w) is expected


def windowed_stft_basis(n: int = 256) -> np.ndarray:
    """An STFT front end's kernels as a voice detector stores them: the real and imaginary DFT
    rows under a periodic Hann window, ``(n + 2, 1, n)``."""
    t = np.arange(n)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * t / n)
    k = np.arange(n // 2 + 1)[:, None]
    rows = np.concatenate([np.cos(2 * np.pi * k * t / n), -np.sin(2 * np.pi * k * t / n)]) * window
    return rows[:, None, :].astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_a_windowed_basis_is_recognised_in_either_precision(dtype):
    basis = windowed_stft_basis().astype(dtype).astype(np.float32)
    assert is_signal_constant(basis)


def test_trained_looking_rows_of_the_same_shape_are_not():
    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.normal(size=(258, 1, 256)), axis=2)  # random walks: smooth, not sums
    assert not is_signal_constant(rng.normal(size=(258, 1, 256)).astype(np.float32))
    assert not is_signal_constant(smooth.astype(np.float32))


def test_the_answer_for_one_array_is_given_again_without_reading_it_again(monkeypatch):
    """``match`` and the same-values test ask of the same weights: the second asking reads
    nothing; another array (even with the same values) is read afresh."""
    from onnx_lineage.matching import constants as C
    calls = []
    real = C._is_signal_constant
    monkeypatch.setattr(C, "_is_signal_constant", lambda w: calls.append(1) or real(w))
    n = np.arange(64)
    basis = np.cos(np.outer(np.arange(1, 33), n) * 2 * np.pi / 64)
    assert C.is_signal_constant(basis) and C.is_signal_constant(basis)
    assert len(calls) == 1
    trained = np.random.default_rng(0).normal(size=(32, 64))
    assert not C.is_signal_constant(trained) and not C.is_signal_constant(trained.copy())
    assert len(calls) == 3
