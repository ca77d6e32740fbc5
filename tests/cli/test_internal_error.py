"""A bug in onnx-lineage is one line and its own exit code; --debug shows the traceback."""

from __future__ import annotations

import sys

import pytest

from onnx_lineage import cli
from tests.conftest import fixture_path


def _broken_match(*args, **kwargs):
    raise KeyError(23)


def _run(monkeypatch, capsys, *args) -> tuple[int, str]:
    monkeypatch.setattr("onnx_lineage.matching.match", _broken_match)
    monkeypatch.setattr(sys, "argv", ["onnx-lineage", *map(str, args)])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    return stop.value.code, capsys.readouterr().err


def test_an_internal_error_is_one_line_with_its_own_exit_code(monkeypatch, capsys):
    path = fixture_path("torch_mlp")
    code, err = _run(monkeypatch, capsys, "match", path, path, "--quiet")
    assert code == cli.INTERNAL_ERROR == 3
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("onnx-lineage: internal error: KeyError: 23 at onnx_lineage/cli/cmd_match.py")
    assert "please report" in err and "--debug" in err


def test_debug_shows_the_traceback(monkeypatch, capsys):
    path = fixture_path("torch_mlp")
    monkeypatch.setattr(sys, "argv", ["onnx-lineage", "--debug", "match", str(path), str(path)])
    monkeypatch.setattr("onnx_lineage.matching.match", _broken_match)
    monkeypatch.setitem(cli._options, "debug", False)
    with pytest.raises(KeyError):
        cli.main()
