"""The demo: build the family, then run every analysis of each member against the parent."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from onnx_lineage.analysis import AnalysisResult, analyze
from onnx_lineage.demo.family import FAMILY_ROLES, build_family
from onnx_lineage.evidence.registry import registered
from onnx_lineage.evidence.verdict import gated, rejects
from onnx_lineage.model.inspect import inspect_model
from onnx_lineage.model.loading import load_model
from onnx_lineage.report.atomic import write_atomic
from onnx_lineage.results import Result


@dataclass(frozen=True)
class DemoResult(Result):
    """One row per family member: expected relation, verdict, barrier, closeness."""

    folder: str
    parent: dict
    rows: list
    correct: int
    total: int
    seconds: float
    report: str | None = None

#: The member whose full analysis becomes the demo's example report.
REPORT_MEMBER = "finetuned_heavy"


def _rejecting(det) -> str:
    """The tests that reject independence at their share of alpha, by short name."""
    hits = [registered(t.name).brief for t in det.tests
            if rejects(t.name, t.p_value, det.alpha, gated(det.tests))]
    return ", ".join(hits) or "-"


def run_demo(out_dir: str | Path | None = None, seed: int = 0, device: str = "auto",
             progress=None, report: str | Path | None = None) -> DemoResult:
    """Build the family (into ``out_dir``, or a temporary folder) and analyse every member.

    With ``report``, the analysis of :data:`REPORT_MEMBER` is written there (.html or .md).
    """
    t0 = time.perf_counter()
    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="onnx-lineage-demo-")
        out_dir = tmp.name
    try:
        paths = build_family(out_dir, seed=seed)
        parent = load_model(paths["parent"])
        rows, correct = [], 0
        for name, path in paths.items():
            if progress:
                progress(name)
            expected, description = FAMILY_ROLES[name]
            r: AnalysisResult = analyze(parent, load_model(path), seed=seed, device=device)
            det, clo = r.determination, r.closeness_detail
            if report is not None and name == REPORT_MEMBER:
                write_atomic(report, r.to_markdown() if str(report).endswith(".md") else r.to_html())
            want = None if expected == "self" else expected == "related"
            ok = det.related is True if want is None else det.related == want
            correct += int(ok)
            rows.append({"model": name, "description": description, "expected": expected,
                         "verdict": det.verdict, "correct": ok, "barrier": det.barrier,
                         "similarity": det.similarity, "p_value": det.p_value,
                         "evidence": _rejecting(det),
                         "closeness": clo.closeness, "ci95": clo.ci95,
                         "matching_rate": clo.matching_rate, "transforms": det.transforms})
        info = inspect_model(paths["parent"], device=device).to_dict()
        info.pop("schema_version", None)
        return DemoResult(str(out_dir) if tmp is None else "(temporary)", info, rows, correct,
                          len(rows), time.perf_counter() - t0,
                          report=None if report is None else str(report))
    finally:
        if tmp is not None:
            tmp.cleanup()
