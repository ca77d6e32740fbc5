"""The public API: every name in __all__ resolves, and unknown names raise AttributeError."""

import pytest

import onnx_lineage


def test_every_public_name_resolves():
    for name in onnx_lineage.__all__:
        assert getattr(onnx_lineage, name) is not None


def test_unknown_name():
    with pytest.raises(AttributeError):
        onnx_lineage.nope  # noqa: B018
