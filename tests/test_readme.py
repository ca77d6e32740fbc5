"""The README runs as written: every Python block, and every ``onnx-lineage`` command in it.

The commands run in a scratch folder, in README order, against the files the README names: the
committed fixtures under ``tests/``, and the demo family that the README's own
``onnx-lineage demo --out family`` writes. Where the README shows a command's output, its first
line (numbers masked: they may move with the platform's arithmetic) must be the first line the
command prints. The Python blocks run in a folder holding the files they name (``parent.onnx``,
``child.onnx``, ``data.npz``, ``models/``), built from the demo family.
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
    """Every ``onnx-lineage ...`` command of the README, in order, once each, with the first
    line of the output shown under it (None where none is shown).

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


TEXT = README.read_text(encoding="utf-8")
EXAMPLES = cli_examples(TEXT)
PYTHON = [("\n".join(lines)) for lang, lines in code_blocks(TEXT) if lang == "python"]


def test_the_readme_has_what_this_file_runs():
    commands = [c.split()[1] for c, _ in EXAMPLES]
    for name in ("demo", "inspect", "match", "determine", "closeness", "analyze", "tree"):
        assert name in commands
    assert any("from onnx_lineage import" in block for block in PYTHON)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The folder the README's commands run in: ``tests/`` as in the repository."""
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


@pytest.mark.parametrize("command,shown", EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_cli_example_runs_as_written(command, shown, scratch):
    r = _run(command, scratch)
    assert r.returncode == 0, f"{command}: exit {r.returncode}: {r.stderr}"
    if shown is not None:
        first = r.stdout.splitlines()[0] if r.stdout else ""
        assert masked(first) == masked(shown), f"{command}: printed {first!r}, README shows {shown!r}"


@pytest.fixture(scope="module")
def api_folder(tmp_path_factory, family, digits):
    """The files the Python API example names: two related models, a data file, a folder."""
    where = tmp_path_factory.mktemp("readme_api")
    shutil.copy(family["parent"], where / "parent.onnx")
    shutil.copy(family["finetuned_light"], where / "child.onnx")
    np.savez(where / "data.npz", x=digits.arrays["x"][:400], y=digits.y[:400])
    (where / "models").mkdir()
    for name in ("parent", "finetuned_light", "independent"):
        shutil.copy(family[name], where / "models" / f"{name}.onnx")
    return where


@pytest.mark.parametrize("block", PYTHON, ids=[f"python{i}" for i in range(len(PYTHON))])
def test_python_block_runs_as_written(block, api_folder, monkeypatch):
    monkeypatch.chdir(api_folder)
    exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})


def test_the_api_example_gets_the_functions():
    """``from onnx_lineage import analyze`` is the function, even after the module that holds it
    was imported."""
    import importlib

    import onnx_lineage
    importlib.import_module(onnx_lineage._EXPORTS["analyze"])
    from onnx_lineage import analyze, closeness, determine, match, tree
    for f in (analyze, closeness, determine, match, tree):
        assert callable(f) and not isinstance(f, type(onnx_lineage)), f
