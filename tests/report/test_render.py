"""Reports: one self-contained HTML file (parsed), Markdown, atomic writes."""

from __future__ import annotations

import os
from html.parser import HTMLParser

import pytest

from onnx_lineage.analysis import analyze
from onnx_lineage.report.atomic import write_atomic


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def result(family):
    return analyze(family["parent"], family["independent"], points=64)


def test_html_is_self_contained_and_says_the_verdict_first(result):
    page = result.to_html()
    p = _Collect()
    p.feed(page)
    text = " ".join(p.text)
    assert "UNRELATED" in text and text.index("UNRELATED") < text.index("Evidence")
    images = [v for k, v in p.attrs if k == "src"]
    assert len(images) == 5 and all(v.startswith("data:image/png;base64,") for v in images)
    links = [v for k, v in p.attrs if k in ("href", "src") and not v.startswith("data:")]
    assert links == []
    assert "http://" not in page and "https://" not in page
    assert p.tags.count("table") >= 3


def test_markdown_has_the_tables(result):
    md = result.to_markdown()
    assert "**UNRELATED**" in md and "| alpha | loss | error |" in md


def test_write_atomic_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    write_atomic(target, "one")
    assert target.read_text() == "one"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(target, "two")
    assert target.read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def markdown_tables(md: str) -> list[list[list[str]]]:
    """The Markdown's tables (runs of lines starting with ``|``), as rows of cells; asserts that
    each has a header, a separator row, and as many cells in every row as in its header."""
    tables, run = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            run.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif run:
            tables.append(run)
            run = []
    for t in tables:
        assert len(t) >= 3 and all(set(c) <= set("-:") and c for c in t[1]), t[:2]
        assert all(len(row) == len(t[0]) for row in t), t
    return tables


def test_markdown_tables_are_separate_and_well_formed(result):
    tables = markdown_tables(result.to_markdown())
    headers = [t[0][0] for t in tables]
    assert "decision boundaries" in headers and "class" in headers
    classes = tables[headers.index("class")]
    assert all(row[0] != "closeness" for row in classes)
    boundaries = dict(tables[headers.index("decision boundaries")][2:])
    assert set(boundaries) == {"closeness", "matching rate", "distance similarity",
                               "queries A / B"}


@pytest.fixture(scope="module")
def two_streams(tmp_path_factory):
    """A ResNet-style CNN with two residual streams (8 and 12 channels, joined by a projection
    shortcut) against a copy with every unit axis permuted."""
    import onnx

    from tests.conv_residual import projection_model
    where = tmp_path_factory.mktemp("streams")
    onnx.save(projection_model(0), where / "a.onnx")
    onnx.save(projection_model(0, permuted=True), where / "b.onnx")
    return analyze(where / "a.onnx", where / "b.onnx", points=16)


def test_both_residual_streams_have_a_row_in_every_report(two_streams, monkeypatch):
    from onnx_lineage.report import plots
    streams = [c for t in two_streams.determination.tests if t.name == "unit_order"
               for c in t.classes if c.name == "residual stream"]
    assert [c.layers for c in streams] == [[0, 2], [4, 5, 6]]  # the JSON has both

    rows = next(t for t in markdown_tables(two_streams.to_markdown()) if t[0][0] == "class")[2:]
    names = [r[0] for r in rows]
    assert len(set(names)) == len(names) == 4
    assert [(r[0], r[1], r[2]) for r in rows if r[0].startswith("residual stream")] == [
        ("residual stream #1", "0,2", "8"), ("residual stream #2", "4,5,6", "12")]

    plotted = []
    real = plots.class_evidence
    monkeypatch.setattr(plots, "class_evidence", lambda r: plotted.append(r) or real(r))
    page = two_streams.to_html()
    assert [r["name"] for r in plotted[0]] == names
    p = _Collect()
    p.feed(page)
    cells = [s.strip() for s in p.text]
    assert cells.count("residual stream #1") == 1 and cells.count("residual stream #2") == 1


def test_the_evidence_plots_legend_sits_above_the_bars():
    from onnx_lineage.report.plots import class_evidence_figure
    rows = [{"name": f"layer {k} units", "p_order": 10.0 ** -(5 * k), "p_aligned": 1e-9,
             "similarity": 0.9} for k in range(1, 7)]
    plt, fig, ax = class_evidence_figure(rows)
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.y0 >= ax.get_window_extent().y1 - 1  # not over the last classes' bars
    assert legend.y1 <= fig.bbox.y1 + 1  # and inside the figure
    plt.close(fig)


def test_a_test_that_did_not_run_says_why_instead_of_an_empty_power(family):
    related = analyze(family["parent"], family["noisy"], points=16)
    basin = related.determination.test("basin")
    assert basin.p_value is None and not basin.power_reason  # decided before the basin
    page = related.to_html()
    assert "Not run: not run: the data-free tests" not in page  # said once, not twice
    assert "Power: </li>" not in page and "the data-free tests already reject" in page


@pytest.fixture(scope="module")
def gated_pair(tmp_path_factory):
    """A SwiGLU token classifier against a copy fine-tuned (noise), its stream rotated and every
    unit axis permuted: only the function test sees it."""
    import onnx

    from tests.residual import permutations, rms_model, rotation, token_data
    where = tmp_path_factory.mktemp("gated")
    stream, hidden = permutations()
    onnx.save(rms_model(gated=True), where / "a.onnx")
    onnx.save(rms_model(gated=True, noise=0.5, rotate=rotation(), stream=stream, hidden=hidden),
              where / "b.onnx")
    return analyze(where / "a.onnx", where / "b.onnx", token_data(200), points=16)


def test_the_function_test_has_its_columns_where_it_ran_and_only_there(gated_pair, result):
    from onnx_lineage.cli.render import classes_table
    table = next(t for t in markdown_tables(gated_pair.to_markdown()) if t[0][0] == "class")
    assert table[0][-2:] == ["same unit by gate and up (function)", "p (function)"]
    gated = [r for r in table[2:] if r[0].endswith("(gated)")]
    assert len(gated) == 2 and all(r[-2].endswith("of 20") and r[-1] != "n/a" for r in gated)
    assert "function test" in gated_pair.to_html()
    plain = next(t for t in markdown_tables(result.to_markdown()) if t[0][0] == "class")
    assert "p (function)" not in plain[0]
    headers = [c.header for c in classes_table(gated_pair.determination.tests).columns]
    assert headers[-2:] == ["function", "p (function)"]
    assert "function" not in [c.header for c in classes_table(result.determination.tests).columns]
