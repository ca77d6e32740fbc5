"""The README and the docs pages run as written: every Python block, and every ``onnx-lineage``
command in them.

The commands run in one scratch folder, README first and then the pages of ``docs/`` in name
order, each page's commands in page order, against the files they name: the committed fixtures
under ``tests/``, and the demo family that ``onnx-lineage demo --out family`` writes (a page may
use what an earlier page wrote). Where a page shows a command's output, its first line (numbers
masked: they may move with the platform's arithmetic) must be the first line the command prints.
The Python blocks run in a folder holding the files they name (``parent.onnx``, ``child.onnx``,
``data.npz``, ``models/``), built from the demo family.

The README stays short (under 15,000 bytes) and links every page, and every link between the
README and the pages leads to a file and heading that exist.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: The README, then the docs pages in name order: the order their commands run in.
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def code_blocks(text: str) -> list[tuple[str, list[str]]]:
    """Fenced code blocks as (language, lines), in order."""
    blocks, lang, body = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, body = line[3:].strip(), []
            else:
                blocks.append((lang, body))
                lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def cli_examples(text: str) -> list[tuple[str, str | None]]:
    """Every ``onnx-lineage ...`` command of a page, in order, once each, with the first line of
    the output shown under it (None where none is shown).

    Commands are read from ``$ `` prompts, from shell blocks (each ``&&`` step that calls
    onnx-lineage) and from inline code spans."""
    found: dict[str, str | None] = {}
    for lang, lines in code_blocks(text):
        for i, line in enumerate(lines):
            if line.startswith("$ "):
                shown = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith("$ ") \
                    else None
                found.setdefault(line[2:].strip(), shown)
            elif lang in ("bash", "sh", "shell"):
                for step in line.split("#")[0].split("&&"):
                    if step.strip().startswith("onnx-lineage "):
                        found.setdefault(step.strip(), None)
    for span in re.findall(r"`(onnx-lineage [^`]+)`", text):
        found.setdefault(span.strip(), None)
    return list(found.items())


def masked(line: str) -> str:
    """A line with its numbers replaced by ``#`` and its trailing space dropped."""
    return re.sub(r"\d+(?:[.,]\d+)*(?:e[-+]?\d+)?", "#", line).rstrip()


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


TEXTS = {name(page): page.read_text(encoding="utf-8") for page in PAGES}
EXAMPLES = [(page, command, shown) for page, text in TEXTS.items()
            for command, shown in cli_examples(text)]
PYTHON = [(page, "\n".join(lines)) for page, text in TEXTS.items()
          for lang, lines in code_blocks(text) if lang == "python"]


def test_the_pages_have_what_this_file_runs():
    commands = [c.split()[1] for _, c, _ in EXAMPLES]
    for command in ("demo", "inspect", "match", "determine", "closeness", "analyze", "tree"):
        assert command in commands
    assert any("from onnx_lineage import" in block for _, block in PYTHON)


def test_the_readme_keeps_the_two_commands():
    """The demo and the test command on the first screen; .ci/run runs the same test command."""
    first_screen = "\n".join(TEXTS["README.md"].splitlines()[:50])
    assert "## Two commands" in first_screen
    assert "pip install -e '.[cpu]' && onnx-lineage demo" in first_screen
    assert "pip install -e '.[cpu,dev]' && python -m pytest" in first_screen


def test_the_readme_is_short_and_links_every_page():
    assert len(README.read_bytes()) < 15_000
    for page in PAGES[1:]:
        assert f"]({name(page)})" in TEXTS["README.md"], f"README.md does not link {name(page)}"


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(text: str) -> set[str]:
    """The anchors of a page's headings (outside code blocks)."""
    inside, found = False, set()
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside and line.startswith("#"):
            found.add(anchor(line.lstrip("#")))
    return found


@pytest.mark.parametrize("page", list(TEXTS))
def test_links_lead_somewhere(page):
    """Every relative link of a page names a file that exists, and a heading of it if it names
    one."""
    for target in re.findall(r"\]\(([^)\s]+)\)", TEXTS[page]):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        where = ((ROOT / page).parent / path).resolve() if path else ROOT / page
        assert where.exists(), f"{page}: {target} leads nowhere"
        if fragment:
            assert fragment in headings(where.read_text(encoding="utf-8")), \
                f"{page}: {target}: no such heading"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The folder the pages' commands run in: ``tests/`` as in the repository."""
    where = tmp_path_factory.mktemp("readme")
    (where / "tests").symlink_to(ROOT / "tests", target_is_directory=True)
    return where


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    assert argv[0] == "onnx-lineage"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                                    os.environ.get("PYTHONPATH")])))
    env.pop("ONNX_LINEAGE_PROGRESS", None)
    return subprocess.run([sys.executable, "-m", "typer_app", *argv[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("page,command,shown", EXAMPLES,
                         ids=[f"{page}: {command}" for page, command, _ in EXAMPLES])
def test_cli_example_runs_as_written(page, command, shown, scratch):
    r = _run(command, scratch)
    assert r.returncode == 0, f"{page}: {command}: exit {r.returncode}: {r.stderr}"
    if shown is not None:
        first = r.stdout.splitlines()[0] if r.stdout else ""
        assert masked(first) == masked(shown), f"{page}: {command}: printed {first!r}, shown {shown!r}"


@pytest.fixture(scope="module")
def api_folder(tmp_path_factory, family, digits):
    """The files the Python blocks name: two related models, a data file, a folder."""
    where = tmp_path_factory.mktemp("readme_api")
    shutil.copy(family["parent"], where / "parent.onnx")
    shutil.copy(family["finetuned_light"], where / "child.onnx")
    np.savez(where / "data.npz", x=digits.arrays["x"][:400], y=digits.y[:400])
    (where / "models").mkdir()
    for name in ("parent", "finetuned_light", "independent"):
        shutil.copy(family[name], where / "models" / f"{name}.onnx")
    return where


@pytest.mark.parametrize("page,block", PYTHON,
                         ids=[f"{page}: python{i}" for i, (page, _) in enumerate(PYTHON)])
def test_python_block_runs_as_written(page, block, api_folder, monkeypatch):
    monkeypatch.chdir(api_folder)
    exec(compile(block, str(ROOT / page), "exec"), {"__name__": "__readme__"})


def test_the_api_example_gets_the_functions():
    """``from onnx_lineage import analyze`` is the function, even after the module that holds it
    was imported."""
    import importlib

    import onnx_lineage
    importlib.import_module(onnx_lineage._EXPORTS["analyze"])
    from onnx_lineage import analyze, closeness, determine, match, tree
    for f in (analyze, closeness, determine, match, tree):
        assert callable(f) and not isinstance(f, type(onnx_lineage)), f
