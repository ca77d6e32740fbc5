"""``analyze``: correspondence, determination and closeness in one run, and the report.

The correspondence is computed once and handed to the determination; A's predictions on the whole
data set are computed once for the closeness (and the loss scale here); the determination takes
A's predictions on its rows from the first point of its own sweep (alpha 0 is A itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from onnx_lineage import __version__
from onnx_lineage.analyses.context import Analysis, Run
from onnx_lineage.analyses.closeness import ClosenessResult, closeness
from onnx_lineage.analyses.determination import DeterminationResult, determine
from onnx_lineage.data import Dataset, feeds_for
from onnx_lineage.errors import LabelSpaceError, LineageError
from onnx_lineage.matching import match
from onnx_lineage.model.footprint import (closeness_footprint, determine_footprint,
                                          match_footprint, predict_footprint, session_sizes,
                                          widest)
from onnx_lineage.model.stages import staged_runner
from onnx_lineage.report import render
from onnx_lineage.results import Result, to_jsonable

EXPECT = ("related", "unrelated")


@dataclass(frozen=True)
class AnalysisResult(Result):
    """Everything ``analyze`` found. ``to_dict()``, ``to_html()``, ``to_markdown()``."""

    model_a: str
    model_b: str
    verdict: str
    related: bool | None
    summary: str
    barrier: float | None
    threshold: float
    alpha: float
    p_value: float | None
    shared_layers: list
    coverage: dict
    closeness: float | None
    ci95: list | None
    matching_rate: float | None
    seed: int
    seconds: float
    version: str
    match: dict
    determination: DeterminationResult
    closeness_detail: ClosenessResult | None
    loss_scale: float = 1.0
    closeness_refused: str | None = None

    def to_dict(self) -> dict:
        d = {k: to_jsonable(getattr(self, k)) for k in (
            "model_a", "model_b", "verdict", "related", "summary", "barrier", "threshold",
            "alpha", "p_value", "shared_layers", "coverage", "closeness", "ci95", "matching_rate",
            "closeness_refused", "seed", "seconds", "version", "match")}
        det = self.determination.to_dict()
        det.pop("match", None)
        det.pop("schema_version", None)
        d["determination"] = det
        if self.closeness_detail is not None:
            clo = self.closeness_detail.to_dict()
            clo.pop("schema_version", None)
            d["closeness_detail"] = clo
        d["schema_version"] = self.determination.to_dict()["schema_version"]
        return d

    def to_html(self) -> str:
        """Self-contained HTML report (plots embedded)."""
        return render.to_html(self)

    def to_markdown(self) -> str:
        """Markdown report, for pull requests."""
        return render.to_markdown(self)


def analyze(a, b, data: Dataset | None = None, *, seed: int = 0, device: str = "auto",
            output: str = "auto", points: int = 256, budget: int | None = None,
            with_closeness: bool = True, alpha: float = 0.01, label_space: str = "same",
            progress=None, max_memory: int | str | None = None, also=()) -> AnalysisResult:
    """Correspondence, determination and closeness of B against A.

    Parameters
    ----------
    a, b : path or LoadedModel
    data : Dataset, optional
        Default: the built-in digits.
    alpha : float
        Level of the verdict (:func:`~onnx_lineage.analyses.determination.determine`).
    label_space : {"same", "shared"}
        Where A and B score different numbers of classes: ``same`` leaves closeness out (the
        reason in ``closeness_refused`` and the summary), ``shared`` measures it on the labels
        both have (:func:`~onnx_lineage.analyses.closeness.closeness`).
    progress : callable, optional
        Called with the name of each step as it starts.
    max_memory : int or str, optional
        The run's memory budget (bytes, or e.g. ``"4G"``), for this call only (default: the one
        in force, :mod:`onnx_lineage.memory`).
    also : sequence of path or LoadedModel
        Other candidate parents: whether B sits between A and them (the determination's
        ``between``).
    """
    how = Analyze(device=device, output=output, points=points, budget=budget,
                  with_closeness=with_closeness, alpha=alpha, label_space=label_space,
                  also=tuple(also))
    return how(a, b, data, seed=seed, progress=progress, max_memory=max_memory)


@dataclass(frozen=True)
class Analyze(Analysis):
    """``analyze`` as an analysis (:class:`~onnx_lineage.analyses.context.Analysis`): its
    settings are :func:`analyze`'s."""

    device: str = "auto"
    output: str = "auto"
    points: int = 256
    budget: int | None = None
    with_closeness: bool = True
    alpha: float = 0.01
    label_space: str = "same"
    also: tuple = ()
    command: ClassVar[str] = "analyze"

    def footprint(self, run: Run) -> tuple:
        """A's session (its predictions are kept) beside the determination, then beside the
        closeness; ``determine`` alone, or ``match``, where that does not fit."""
        a, b, rows = run.a.proto, run.b.proto, len(run.data)
        det = determine_footprint(a, b, rows)
        held = predict_footprint(a)
        steps = [held + det] + ([held + closeness_footprint(a, b, rows)]
                                if self.with_closeness else [])
        return widest(*steps), (("`determine`", det),
                                ("`match` (the data-free tests)", match_footprint(a, b)))

    def run(self, run: Run) -> AnalysisResult:
        """The match, A's predictions, the determination and the closeness, on one run."""
        a, b, data, step, seed = run.a, run.b, run.data, run.step, run.seed
        rng = run.rng  # the match's tie-breaking, then determine's draws
        m = match(a, b, progress=step, rng=rng)
        step("predicting with A")
        ra = staged_runner(a.proto, session_sizes(a.proto), device=self.device,
                           output=self.output, name=a.name)
        feeds, _ = feeds_for(ra.inputs, data, a.name)
        pred_a = ra.predict(feeds)
        step("independence tests and interpolation sweep")
        det = determine(a, b, data, seed=seed, device=self.device, output=self.output,
                        match_result=m, alpha=self.alpha, progress=step, rng=rng,
                        also=self.also)
        clo, refused = None, None
        if self.with_closeness:
            step("boundary search")
            try:
                clo = closeness(a, b, data, seed=seed, device=self.device, output=self.output,
                                points=self.points, budget=self.budget, a_predictions=pred_a,
                                label_space=self.label_space, progress=step)
            except LabelSpaceError as exc:
                refused = str(exc)
        scale = 1.0
        if pred_a.scores is not None and ra.output_kind in ("logits", "probabilities"):
            scale = math.log(max(pred_a.scores.shape[1], 2))
        return AnalysisResult(
            model_a=a.name, model_b=b.name, verdict=det.verdict, related=det.related,
            summary=render.headline(det, clo) + (f" Closeness not measured: {refused}." if refused
                                          else ""),
            barrier=det.barrier, threshold=det.threshold, alpha=det.alpha, p_value=det.p_value,
            shared_layers=det.shared_layers, coverage=det.coverage,
            closeness=None if clo is None else clo.closeness,
            ci95=None if clo is None else clo.ci95,
            matching_rate=None if clo is None else clo.matching_rate, seed=seed,
            seconds=run.seconds(), version=__version__, match=m.to_dict(),
            determination=det, closeness_detail=clo, loss_scale=scale, closeness_refused=refused)


def check_expect(result: AnalysisResult, expect: str | None) -> None:
    """Raise a LineageError (exit 1) when the verdict contradicts ``expect``."""
    if expect is None:
        return
    if expect not in EXPECT:
        raise LineageError(f"--expect must be one of {', '.join(EXPECT)}")
    if result.verdict != expect:
        raise LineageError(f"expected {expect}, but the verdict is {result.verdict}: "
                           f"{result.determination.reason}")
