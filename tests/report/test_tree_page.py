"""The forest page as a browser draws it: headless Chromium renders the inline SVG.

Needs Chromium (Debian: ``apt-get install chromium``); skipped where it is not installed (CI
does not install it). Run alone: ``python -m pytest tests/report/test_tree_page.py``.
"""

from __future__ import annotations

import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest

from onnx_lineage.report.tree import forest_svg, tree_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _forest() -> SimpleNamespace:
    edge = dict(similarity=0.99, evidence=[], direction="decided", confidence=0.98)
    edges = [dict(edge, parent="parent", child="finetuned", p_value=1e-120, closeness=0.81),
             dict(edge, parent="parent", child="noisy", p_value=2e-40, closeness=0.93,
                  direction="undecided", confidence=0.5),
             dict(edge, parent="noisy", child="heavy", p_value=3e-5, closeness=None)]
    return SimpleNamespace(models=["parent", "finetuned", "noisy", "heavy", "stranger"],
                           edges=edges, roots=["parent", "stranger"], candidates=4, all_pairs=10,
                           exact_tests=4, alpha=0.01, alpha_per_test=0.0025, related_pairs=3,
                           notes=["a note"], failed=[])


def _dark_share(tmp_path, html: str, name: str) -> float:
    """Share of dark pixels in Chromium's screenshot of ``html``."""
    from PIL import Image
    page, shot = tmp_path / f"{name}.html", tmp_path / f"{name}.png"
    page.write_text(html)
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=800,500", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    return float((np.asarray(Image.open(shot).convert("L")) < 128).mean())


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_chromium_draws_the_forest(tmp_path):
    r = _forest()
    drawn = _dark_share(tmp_path, f"<body style='margin:0'>{forest_svg(r.roots, r.edges)}",
                        "forest")
    lone = _dark_share(tmp_path, f"<body style='margin:0'>{forest_svg(['stranger'], [])}", "lone")
    assert drawn > 3 * lone > 0  # boxes, lines and labels drawn; one box alone draws little
    assert "<svg" in tree_html(r)
