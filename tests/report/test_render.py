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
