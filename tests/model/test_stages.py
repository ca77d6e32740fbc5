"""Forward passes a stage at a time: the cut, the outputs of the whole graph, the sweep and the
tests on it unchanged, and the memory they hold."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from onnx_lineage.analyses import determination
from onnx_lineage.analyses.interpolation import InterpolatedModel
from onnx_lineage.analyses.sweep import Sweep, endpoints_for
from onnx_lineage.data import Dataset, arrange_for, feeds_for
from onnx_lineage.matching import match
from onnx_lineage.model import footprint, stages
from onnx_lineage.model.activations import unit_values
from onnx_lineage.model.footprint import session_sizes
from onnx_lineage.model.loading import load_model
from onnx_lineage.model.parameters import extract_layers
from onnx_lineage.model.runner import Runner
from onnx_lineage.model.stages import StagedRunner, split
from tests.conftest import fixture_path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from decoder import Config, build  # noqa: E402

TINY = Config(vocab=64, width=32, layers=3, heads=4, kv_heads=2, ff=48)


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    """A tiny float16 decoder in external data (A), A plus noise (B), another seed (C)."""
    out = tmp_path_factory.mktemp("decoders")
    return {k: build(out / f"{k}.onnx", TINY, **kw) for k, kw in
            (("a", {}), ("b", {"noise": 0.05}), ("c", {"seed": 7}))}


@pytest.fixture(scope="module")
def tokens():
    return Dataset({"input_ids": np.random.default_rng(0).integers(0, TINY.vocab, (24, 8))})


def _fifth(model) -> tuple[float, dict]:
    sizes = session_sizes(model)
    return sum(sizes.values()) / 5, sizes


def test_the_cut_keeps_every_node_once_in_order_under_the_size_and_between_blocks(decoders):
    model = load_model(decoders["a"]).proto
    most, sizes = _fifth(model)
    cut = split(model, most, sizes)
    assert len(cut) >= 5
    assert [n.name for s in cut for n in s.nodes] == [n.name for n in model.graph.node]
    for s in cut:
        assert s.size <= most or len(s.nodes) == 1
        assert s.size == sum(sizes.get(w, 0.0) for w in s.weights)
    # each cut carries the residual stream (and the attention mask every block reads), not
    # the values inside a block
    assert all(len(s.reads) <= 2 for s in cut[1:])
    made = {o for s in cut for n in s.nodes for o in n.output}
    for k, s in enumerate(cut):  # what a stage reads was made before it, or is an input
        before = {o for t in cut[:k] for n in t.nodes for o in n.output}
        assert set(s.reads) <= before | {"input_ids"}
        assert not set(s.reads) & {o for n in s.nodes for o in n.output}
    assert {o.name for o in model.graph.output} <= made


def _both(model, data, most, sizes, **kw):
    whole = Runner(model, device="cpu", **kw)
    staged = StagedRunner(model, most, sizes, device="cpu", **kw)
    feeds, _ = feeds_for(whole.inputs, data)
    return whole, staged, feeds


def test_a_staged_pass_gives_the_whole_graphs_outputs_in_every_batch(decoders, tokens):
    model = load_model(decoders["a"]).proto
    most, sizes = _fifth(model)
    whole, staged, feeds = _both(model, tokens, most, sizes, batch_size=5)
    assert len(staged.stages) >= 5 and len(staged.plan(len(tokens))) == 5
    np.testing.assert_array_equal(staged.predict(feeds).scores, whole.predict(feeds).scores)
    assert staged.forward_rows == len(tokens) and staged.forward_seconds > 0


@pytest.mark.parametrize("name", ["torch_cnn_bn", "torch_encoder", "torch_lstm", "keras_cnn",
                                  "torch_mlp_int8_qdq", "sklearn_mlp"])
def test_staged_passes_of_committed_models_agree_with_one_session(name, digits):
    model = load_model(fixture_path(name)).proto
    sizes = {t.name: 4.0 * max(int(np.prod(t.dims)), 1) for t in model.graph.initializer}
    most = sum(sizes.values()) / 4
    if name == "torch_encoder":
        rng = np.random.default_rng(0)
        data = Dataset({"input_ids": rng.integers(0, 50, (12, 7)),
                        "attention_mask": np.ones((12, 7), np.int64)})
    elif name == "torch_lstm":
        data = Dataset({"x": np.random.default_rng(0).normal(size=(12, 5, 8)).astype(np.float32)})
    else:
        data = digits.subset(np.arange(40))
    whole, staged, feeds = _both(model, data, most, sizes)
    assert len(staged.stages) >= 2
    got, want = staged.predict(feeds), whole.predict(feeds)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got.labels, want.labels)


def test_a_stateful_model_with_subgraphs_runs_staged():
    """The shipped detector's If branches read values of the main graph: a stage holding the If
    is given them."""
    model = load_model(fixture_path("torch_vad_state"))
    rng = np.random.default_rng(0)
    data = arrange_for(Dataset({"input": rng.normal(size=(6, 64)).astype(np.float32),
                                "sr": np.array(16000)}), model)
    proto = model.proto
    sizes = {t.name: 4.0 * max(int(np.prod(t.dims)), 1) for t in proto.graph.initializer}
    whole, staged, feeds = _both(proto, data, sum(sizes.values()) / 4, sizes)
    assert len(staged.stages) >= 2
    names = [o.name for o in proto.graph.output]
    for got, want in zip(staged.run(feeds, outputs=names), whole.run(feeds, outputs=names)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_intermediate_values_are_read_staged_as_from_one_session(decoders, tokens, monkeypatch):
    model = load_model(decoders["a"]).proto
    names = ["blocks.0.gate_out", "blocks.2.up_out"]
    want = unit_values(model, names, tokens, samples=64)
    monkeypatch.setattr(stages, "STAGED_FROM", 0.0)  # every model staged
    monkeypatch.setattr(stages, "STAGE_SHARE", 1e-9)  # a node or so per stage
    got = unit_values(model, names, tokens, samples=64)
    for n in names:
        np.testing.assert_array_equal(got[n], want[n])


def _sweeps(a, b, rows, monkeypatch):
    m = match(a, b)
    eps, keys, _ = endpoints_for(m)
    base = load_model(a).proto
    extract_layers(base)
    whole = Sweep(base, eps, rows, None, "cpu")
    monkeypatch.setattr(stages, "STAGED_FROM", 0.0)
    monkeypatch.setattr(stages, "STAGE_SHARE", 1e-9)
    return m, eps, keys, whole, Sweep(base, eps, rows, None, "cpu")


def test_a_staged_sweep_holds_one_stage_and_gives_every_point_and_copy_alike(
        decoders, tokens, monkeypatch):
    _, eps, _, whole, staged = _sweeps(decoders["a"], decoders["c"], tokens, monkeypatch)
    assert staged.model.stages is not None and whole.model.stages is None
    assert staged.model.buffer.size < whole.model.buffer.size / 4
    assert staged.model.n_params == whole.model.n_params
    for t in (0.0, 0.3, 1.0):
        np.testing.assert_allclose(staged.scores(t), whole.scores(t), rtol=1e-5, atol=1e-6)
    other = {k: (lambda k=k: -eps[k].b) for k in range(0, len(eps), 3)}
    np.testing.assert_allclose(staged._run(0.5, other), whole._run(0.5, other),
                               rtol=1e-5, atol=1e-6)
    # the sweep keeps its own B after the copy
    np.testing.assert_allclose(staged._run(0.5), whole.scores(0.5), rtol=1e-5, atol=1e-6)


def test_an_interpolated_model_blends_each_stage_alone(decoders):
    m = match(decoders["a"], decoders["b"])
    eps, _, _ = endpoints_for(m)
    base = load_model(decoders["a"]).proto
    extract_layers(base)
    model = InterpolatedModel(base, eps, most=footprint.blend_bytes(base) / 6)
    whole = InterpolatedModel(base, eps)
    assert len(model.groups) == len(model.stages) >= 4
    assert sorted(k for g in model.groups for k in g) == list(range(len(eps)))
    point, at = model.weights(0.25), whole.weights(0.25)
    for s, stage in enumerate(model.stages):
        for name, view in point.stage(s, stage.weights).items():
            np.testing.assert_array_equal(view, at[name])


def test_determine_staged_gives_the_whole_models_verdict_and_tests(decoders, tokens, monkeypatch):
    """Independent decoders: the function test and the basin test run (the data-free tests do
    not decide), on stages as on whole sessions."""
    whole = determination.determine(decoders["a"], decoders["c"], tokens, rows=16, seed=1)
    monkeypatch.setattr(stages, "STAGED_FROM", 0.0)
    monkeypatch.setattr(stages, "STAGE_SHARE", 1e-9)
    staged = determination.determine(decoders["a"], decoders["c"], tokens, rows=16, seed=1)
    assert staged.verdict == whole.verdict
    for t in whole.tests:
        assert staged.test(t.name).p_value == pytest.approx(t.p_value, rel=1e-6, abs=1e-12), t.name
    assert staged.test("function").p_value is not None
    assert staged.test("basin").p_value is not None
    for p, q in zip(staged.curve, whole.curve):
        assert p["loss"] == pytest.approx(q["loss"], rel=1e-5)


def test_the_estimate_counts_one_stage_where_the_pass_is_staged(decoders, monkeypatch):
    a, b = (load_model(decoders[k]).proto for k in "ab")
    whole = dict(footprint.determine_footprint(a, b, 16).parts)
    monkeypatch.setattr(stages, "STAGED_FROM", 0.0)
    monkeypatch.setattr(stages, "STAGE_SHARE", 1e-9)
    staged = dict(footprint.determine_footprint(a, b, 16).parts)
    assert staged["the blend buffer"] < whole["the blend buffer"] / 4
    most = max(4.0 * int(np.prod(t.dims)) for t in a.graph.initializer)
    assert staged["the blend buffer"] == most  # a stage of one weight


def test_a_staged_pass_lets_each_stages_file_pages_go(decoders, tokens, monkeypatch):
    """A stage's weights, read from the mapped file into its session, are not held while the
    next stage runs."""
    model = load_model(decoders["a"]).proto
    most, sizes = _fifth(model)
    staged = StagedRunner(model, most, sizes, device="cpu")
    feeds, _ = feeds_for(staged.inputs, tokens)
    calls = []
    monkeypatch.setattr(stages, "release_pages", lambda: calls.append(1))
    staged.predict(feeds)
    assert len(calls) == len(staged.stages) >= 5
