"""Determination on the demo family and on fixtures: verdicts from the tests, with their power."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_lineage.analyses.determination import determine
from onnx_lineage.model.loading import load_model
from tests.conftest import fixture_path


@pytest.mark.parametrize("member", ["finetuned_light", "finetuned_heavy", "pruned_50", "noisy",
                                    "int8", "obfuscated"])
def test_derived_members_are_related(family, member):
    r = determine(family["parent"], family[member])
    assert r.verdict == "related" and r.related is True
    assert r.p_value <= r.alpha == r.threshold == 0.01
    assert r.coverage == {"a": 1.0, "b": 1.0} and r.shared_layers == [0, 1, 2]
    assert len(r.curve) >= 11 and r.interpolated_fraction == 1.0


def test_which_test_sees_what(family):
    kept = determine(family["parent"], family["finetuned_light"])
    assert kept.test("unit_order").p_value < 1e-50
    assert kept.test("basin").p_value is None  # not needed: already rejected
    obf = determine(family["parent"], family["obfuscated"])
    assert obf.test("unit_order").p_value > 0.01  # its units were permuted
    assert obf.test("aligned").p_value < 1e-6


def test_independent_member_is_unrelated_with_power(family):
    r = determine(family["parent"], family["independent"])
    assert r.verdict == "unrelated" and r.related is False and r.p_value > r.alpha
    assert all(t.power for t in r.tests if t.name != "basin")
    assert r.test("basin").p_value is not None and "could have" in r.reason
    assert r.shared_layers == []


def test_progress_names_each_point_and_each_copy(family):
    """Each sweep point and each basin copy is announced with where the run stands."""
    said = []
    r = determine(family["parent"], family["independent"], progress=said.append)
    basin = r.test("basin")
    copies = [s for s in said if s.startswith("basin test: copy ")]
    mc = basin.monte_carlo
    assert len(copies) == mc["copies"] and copies[0].startswith("basin test: copy 1 of up to ")
    # each copy says how many before it were as low as B: from none up to all but the last
    so_far = [int(c.split("(")[1].split()[0]) for c in copies]
    assert so_far[0] == 0 and so_far == sorted(so_far) and so_far[-1] <= mc["as_extreme"]
    points = [s for s in said if s.startswith("interpolation sweep on ") and ": point " in s]
    assert len(points) == 11 and points[0].endswith(": point 1 of 11 (t 0.00)")
    assert any("two more points around t" in s for s in said)


def test_a_model_is_related_to_itself_with_zero_barrier(family):
    r = determine(family["parent"], family["parent"])
    assert r.barrier == pytest.approx(0.0, abs=1e-7)
    assert r.similarity == pytest.approx(1.0)


def test_the_barrier_before_alignment_is_reported(family):
    r = determine(family["parent"], family["obfuscated"])
    assert r.barrier_unaligned is not None and r.barrier_unaligned > 0.1 > r.barrier


def test_same_seed_same_numbers(family):
    r1 = determine(family["parent"], family["independent"], seed=3)
    r2 = determine(family["parent"], family["independent"], seed=3)
    d1, d2 = r1.to_dict(), r2.to_dict()
    for d in (d1, d2):
        d.pop("seconds"), d.pop("timings")
    assert d1 == d2


def test_a_convex_model_is_undetermined():
    """LogisticRegression has no hidden units: derived and independent runs look alike."""
    r = determine(fixture_path("sklearn_logreg"), fixture_path("sklearn_logreg"))
    assert r.verdict == "undetermined" and r.related is None and "convex" in r.reason
    assert r.barrier == pytest.approx(0.0, abs=1e-6)  # reported, but no evidence


def test_nothing_in_common_is_undetermined():
    r = determine(fixture_path("torch_mlp_legacy"), fixture_path("torch_lstm"))
    assert r.verdict == "undetermined" and r.related is None
    assert r.test("basin").reason.startswith("not run")


def test_new_head_on_the_trunk_is_related_and_the_trunk_named(family, tmp_path):
    import onnx

    from onnx_lineage.demo.family import mlp_to_onnx
    from onnx_lineage.model.parameters import extract_layers
    layers = extract_layers(load_model(family["finetuned_light"]).proto)
    rng = np.random.default_rng(0)
    w = [layer.weight for layer in layers[:2]] + [rng.normal(0, .1, (5, 32)).astype(np.float32)]
    b = [layer.params["bias"] for layer in layers[:2]] + [np.zeros(5, np.float32)]
    onnx.save(mlp_to_onnx(w, b), tmp_path / "transfer.onnx")
    r = determine(family["parent"], tmp_path / "transfer.onnx")
    assert r.verdict == "related" and 2 not in r.shared_layers and 0 in r.shared_layers
    assert r.coverage["a"] < 1.0


def test_batchnorm_kept_against_folded_moves_the_convolutions():
    r = determine(fixture_path("torch_cnn_bn"), fixture_path("torch_cnn_folded"), all_tests=True)
    assert r.interpolated_fraction == pytest.approx(1.0)
    assert not any("kept A's" in n for n in r.notes)
    assert r.verdict == "related"


def test_alpha_is_the_level(family):
    r = determine(family["parent"], family["independent"], alpha=0.5)
    assert r.alpha == 0.5 and (r.verdict == "related") == (r.p_value <= 0.5)
