"""analyze: both analyses in one run, sharing A's predictions; JSON; --expect."""

from __future__ import annotations

import json

import pytest

from onnx_lineage.analysis import analyze, check_expect
from onnx_lineage.errors import LineageError


@pytest.fixture(scope="module")
def result(family):
    return analyze(family["parent"], family["noisy"], points=64)


def test_verdict_and_closeness_together(result):
    assert result.verdict == "related" and result.related is True
    assert 0.0 < result.closeness <= 1.0 and result.ci95[0] <= result.closeness <= result.ci95[1]
    assert result.summary.startswith("B is derived from A")


def test_json_has_the_design_fields_once(result):
    d = json.loads(result.to_json())
    for key in ("schema_version", "verdict", "related", "barrier", "threshold", "p_value",
                "coverage", "closeness", "ci95", "matching_rate", "determination",
                "closeness_detail", "match"):
        assert key in d
    assert "curve" in d["determination"] and "queries" in d["closeness_detail"]


def test_shared_predictions_are_not_recomputed(family, monkeypatch):
    from onnx_lineage.model import runner as runner_mod
    calls = []
    original = runner_mod.Runner.predict

    def counting(self, feeds, static=None):
        calls.append((self.name, len(next(iter(feeds.values())))))
        return original(self, feeds, static)

    monkeypatch.setattr(runner_mod.Runner, "predict", counting)
    analyze(family["parent"], family["noisy"], points=32)
    full = [c for c in calls if c == ("parent.onnx", 1797)]
    assert len(full) == 1  # A over the whole data set: once, shared by both analyses


def test_expect(result):
    check_expect(result, "related")
    with pytest.raises(LineageError, match="expected unrelated"):
        check_expect(result, "unrelated")
