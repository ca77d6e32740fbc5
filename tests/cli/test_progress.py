"""Progress on stderr: named steps, plain lines for slow steps outside a terminal, opt-in."""

from __future__ import annotations

import time

from onnx_lineage.analyses.determination import determine
from onnx_lineage.cli import progress
from onnx_lineage.matching import match


def test_slow_steps_are_printed_once_and_quick_ones_not(monkeypatch, capsys):
    monkeypatch.setenv("ONNX_LINEAGE_PROGRESS", "1")
    monkeypatch.setattr(progress, "SLOW", 0.2)
    with progress.steps() as step:
        step("quick step")
        step("slow step")
        time.sleep(0.5)
        step("last step")
    err = capsys.readouterr().err
    assert "slow step" in err and "quick step" not in err and "last step" not in err
    assert err.count("\n") == 1


def test_outside_a_terminal_progress_is_opt_in(monkeypatch, capsys):
    monkeypatch.delenv("ONNX_LINEAGE_PROGRESS", raising=False)
    monkeypatch.setattr(progress, "SLOW", 0.0)
    with progress.steps() as step:
        step("anything")
        time.sleep(0.1)
    assert capsys.readouterr().err == ""


def test_the_analyses_name_their_steps(family):
    seen = []
    match(family["parent"], family["noisy"], progress=seen.append)
    assert seen[:3] == ["reading the models", "reading the parametric layers",
                        "pairing layers (3 in A, 3 in B)"]
    seen.clear()
    determine(family["parent"], family["noisy"], seed=0, progress=seen.append)
    assert "independence tests without data (unit order, aligned weights, same values)" in seen
    assert any(s.startswith("interpolation sweep") for s in seen)
