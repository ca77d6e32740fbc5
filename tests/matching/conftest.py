"""Fixtures of the matching tests."""

from __future__ import annotations

import onnx
import pytest


@pytest.fixture()
def save(tmp_path):
    """``save(name, model)`` writes an ONNX model to a temporary file and returns its path."""
    def write(name, model):
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, path)
        return path
    return write
