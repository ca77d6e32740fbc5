"""Error classes: user-facing errors versus internal bugs.

A :class:`LineageError` carries a one-line message meant for the user (bad file, wrong data, an
option out of range). The CLI prints it and exits with code 1, without a traceback. Any other
exception is a bug in onnx-lineage and keeps its traceback.
"""

from __future__ import annotations


class LineageError(Exception):
    """A problem with the user's input: printed as one line, exit code 1."""

    exit_code = 1


class ModelError(LineageError):
    """The model file cannot be read, is invalid, or uses something unsupported."""


class DataError(LineageError):
    """The data file is missing, malformed, or does not fit the model."""


class LabelSpaceError(ModelError):
    """Two models score different numbers of classes, where an analysis compares their labels."""


class RuntimeMissingError(LineageError):
    """Neither onnxruntime nor onnxruntime-gpu is installed."""


class UsageError(LineageError):
    """An option value is out of range (exit code 2, like typer's own usage errors)."""

    exit_code = 2
