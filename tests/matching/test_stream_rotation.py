"""Undoing a rotation of a residual stream (SliceGPT/QuaRot-style) in ``match``.

The models are ``tests.residual.rms_model``: a pre-norm residual token classifier whose norms are
RMS without a gain, so that ``x -> R x`` on the stream (writers ``R W``, readers ``W R^T``) is
the same function."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from onnx_lineage.analyses.determination import determine
from onnx_lineage.evidence import data_free
from onnx_lineage.matching import match
from onnx_lineage.matching import rotation as rotation_module
from onnx_lineage.matching.rotation import judge, procrustes
from onnx_lineage.model.ops import dims_of
from onnx_lineage.model.parameters import extract_layers
from onnx_lineage.model.rotatable import rotation_blocker
from onnx_lineage.model.streams import streams
from tests.residual import (LENGTH, VOCAB, permutations, residual_model, rms_model, rotation,
                            token_data)

ROTATED = "residual stream of B rotated back to A's (orthogonal Procrustes"


def _outputs(path):
    ids = np.random.default_rng(0).integers(0, VOCAB, size=(16, LENGTH))
    return ort.InferenceSession(str(path)).run(None, {"ids": ids})[0]


def _p_values(m) -> tuple:
    """The data-free tests' p-values: unit order, aligned, same values."""
    return tuple(t.p_value for t in data_free(m).tests)


@pytest.mark.parametrize("norm", ["rms", "ops"])
def test_a_rotated_stream_without_gains_is_the_same_function(save, norm):
    a, b = save("a", rms_model(norm=norm)), save("b", rms_model(norm=norm, rotate=rotation()))
    np.testing.assert_allclose(_outputs(a), _outputs(b), atol=1e-4)
    # with a gain per unit the rotation changes the function: no symmetry there
    a, b = save("a", rms_model(norm="gain")), save("b", rms_model(norm="gain", rotate=rotation()))
    assert np.abs(_outputs(a) - _outputs(b)).max() > 0.1


@pytest.mark.parametrize("model, why", [
    (rms_model(norm="rms"), ""), (rms_model(norm="ops"), ""),
    (rms_model(norm="gain"), "gain per unit or a mean over its units"),
    (residual_model(), "gain per unit or a mean over its units"),
    (residual_model(tail="output"), "it is an output of the model")])
def test_only_streams_that_a_rotation_keeps_are_candidates(model, why):
    layers, dims = extract_layers(model), dims_of(model)
    (stream,) = streams(model, layers, dims)
    blocker = rotation_blocker(model, layers, stream, dims)
    assert (why in blocker and blocker) if why else blocker == ""


@pytest.mark.parametrize("width, columns", [(12, 12), (12, 24), (12, 34), (32, 64), (64, 128)])
def test_independent_matrices_are_never_taken_for_a_rotation(width, columns):
    """The criterion's null, measured: pairs of independent Gaussian matrices (isotropic, and
    with one decaying spectrum over the stream), 20 each. The rotation leaves at most 2.4 times
    less mismatch than the best signed permutation (the criterion needs 16)."""
    rng = np.random.default_rng(width * 1000 + columns)
    decay = np.exp(-np.arange(width) / (width / 4))[:, None]
    for _ in range(20):
        a, b = rng.normal(size=(width, columns)), rng.normal(size=(width, columns))
        for s in (1.0, decay):
            _, fit, perm = procrustes(s * a, s * b)
            assert (1 - perm) / (1 - fit) < 3 and judge(fit, perm)


def test_a_rotated_copy_is_fitted_to_rounding():
    rng = np.random.default_rng(0)
    a, r = rng.normal(size=(12, 40)), rotation(5)
    fitted, fit, perm = procrustes(a, (r @ a).astype(np.float32))
    np.testing.assert_allclose(fitted, r, atol=1e-5)
    assert fit > 1 - 1e-9 and perm < 0.9 and judge(fit, perm) == ""
    p = np.random.default_rng(1).permutation(12)
    assert "rounding" in judge(*procrustes(a, a[p])[1:])  # a permuted copy: no rotation


@pytest.mark.parametrize("noise, accepted", [(0.0, True), (0.05, True), (None, False)])
def test_members_with_many_columns_are_read_at_evenly_spaced_columns(noise, accepted):
    """A 4,000-token embedding and a 500-class head on a stream of 32: every 18th column read
    (251, within 8 per unit); a rotated copy is still fitted to rounding, a rotated fine-tune
    accepted, an independent stream not."""
    from types import SimpleNamespace
    from onnx_lineage.matching.rotation import SAMPLED_COLUMNS_PER_UNIT, fit_rotation
    rng, width = np.random.default_rng(3), 32
    sa = SimpleNamespace(width=width, writers=(0,), readers=(1,), members=(0, 1))
    a = {0: {"weight": rng.normal(size=(width, 4000))}, 1: {"weight": rng.normal(size=(500, width))}}
    r = np.linalg.qr(rng.normal(size=(width, width)))[0]
    if noise is None:
        b = {0: {"weight": rng.normal(size=(width, 4000))},
             1: {"weight": rng.normal(size=(500, width))}}
    else:
        b = {0: {"weight": r @ (a[0]["weight"] + noise * rng.normal(size=(width, 4000)))},
             1: {"weight": (a[1]["weight"] + noise * rng.normal(size=(500, width))) @ r.T}}
    fit = fit_rotation(sa, {0: 0, 1: 1}, a, b, (0, 1))
    assert fit.columns == 223 + 28 <= SAMPLED_COLUMNS_PER_UNIT * width
    assert fit.accepted == accepted
    if noise == 0.0:
        assert fit.fit > 1 - 1e-12 and np.allclose(fit.rotation, r, atol=1e-8)


@pytest.mark.parametrize("norm", ["rms", "ops"])
def test_a_rotated_copy_is_rotated_back(save, norm):
    a, b = save("a", rms_model(norm=norm)), save("b", rms_model(norm=norm, rotate=rotation()))
    m = match(a, b)
    assert any(t.startswith(ROTATED) for t in m.transforms)
    assert all(pair["cosine"] > 0.9999 for pair in m.pairs)
    assert all("stream rotation" in pair["transforms"] for pair in m.pairs)  # all on the stream
    (fit,) = m.correspondence.rotations
    assert fit.accepted and fit.fit > 0.99999 and fit.read == (0, len(m.pairs) - 1)
    assert not m.correspondence.stream_pairs  # the stream's class is gone: its order is A's
    assert max(_p_values(m)) < 1e-6  # unit order, aligned and same values all reject


def test_a_rotated_copy_of_a_permuted_sibling_is_related(save, monkeypatch):
    """B rotated, A's sibling permuted (stream and hidden units): no permutation relates
    them; after rotating back the aligned and same-values tests do."""
    p, q = permutations()
    a = save("a", rms_model(stream=p, hidden=q))
    b = save("b", rms_model(rotate=rotation()))
    _, aligned, same = _p_values(match(a, b))
    assert aligned < 1e-6 and same < 1e-6
    monkeypatch.setattr(rotation_module, "MIN_COSINE", 2.0)  # no rotation ever accepted: before
    m = match(a, b)
    assert not any(t.startswith(ROTATED) for t in m.transforms)
    assert min(_p_values(m)) > 0.01


def test_a_rotated_fine_tune_is_related(save, monkeypatch):
    a, b = save("a", rms_model()), save("b", rms_model(rotate=rotation(), noise=0.05,
                                                     hidden=permutations()[1]))
    m = match(a, b)
    (fit,) = m.correspondence.rotations
    assert fit.accepted and 0.99 < fit.fit < 0.9999
    assert _p_values(m)[1] < 1e-6  # aligned
    monkeypatch.setattr(rotation_module, "MIN_COSINE", 2.0)
    assert min(_p_values(match(a, b))) > 0.01


@pytest.mark.parametrize("seed", [7, 8, 9])
@pytest.mark.parametrize("rotated", [False, True])
def test_an_independent_model_is_never_rotated_nor_related(save, seed, rotated):
    a = save("a", rms_model())
    b = save("b", rms_model(seed=seed, rotate=rotation(seed) if rotated else None))
    m = match(a, b)
    (fit,) = m.correspondence.rotations
    assert not fit.accepted and fit.ratio < 3
    assert not any(t.startswith(ROTATED) for t in m.transforms)
    assert min(_p_values(m)) > 0.01


def test_a_permuted_copy_is_permuted_not_rotated(save):
    p, q = permutations()
    m = match(save("a", rms_model()), save("b", rms_model(stream=p, hidden=q)))
    (fit,) = m.correspondence.rotations
    assert not fit.accepted and "rounding" in fit.reason
    assert any("residual stream of B (12 units" in t for t in m.transforms)


@pytest.mark.parametrize("a, b", [
    (rms_model(norm="gain"), rms_model(norm="gain", noise=0.05)),
    (residual_model(), residual_model(noise=0.05))])
def test_streams_with_gains_are_never_tried(save, a, b):
    m = match(save("a", a), save("b", b))
    assert not m.correspondence.rotations
    assert not any("rotat" in t for t in m.transforms)


def test_the_sweep_reads_the_rotated_back_stream(save):
    a, b = save("a", rms_model()), save("b", rms_model(rotate=rotation(), noise=0.02))
    r = determine(a, b, token_data(rows=200), seed=0)
    assert r.verdict == "related" and r.barrier < 0.05
