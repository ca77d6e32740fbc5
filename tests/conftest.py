"""Shared fixtures: the committed ONNX files, the built-in data, a demo family built once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest

#: The committed fixtures, or a freshly generated set (CI regenerates them with generate.py).
FIXTURES = Path(os.environ.get("ONNX_LINEAGE_FIXTURES", Path(__file__).parent / "fixtures" / "models"))


def fixture_path(name: str) -> Path:
    return FIXTURES / f"{name}.onnx"


def fixture_names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.onnx"))


def truth(name: str) -> tuple[dict, float]:
    """Source-framework parameters per layer index, and the quantization step recorded."""
    z = np.load(FIXTURES / f"{name}.truth.npz")
    layers: dict[int, dict] = {}
    for key in z.files:
        if key == "step":
            continue
        layer, param = key.split(".", 1)
        layers.setdefault(int(layer[1:]), {})[param] = z[key]
    return layers, float(z["step"])


@pytest.fixture()
def save(tmp_path):
    """``save(name, model)`` writes an ONNX model to a temporary file and returns its path."""
    def write(name, model):
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, path)
        return path
    return write


@pytest.fixture(scope="session")
def digits():
    from onnx_lineage.data import digits as load
    return load()


@pytest.fixture(scope="session")
def family(tmp_path_factory):
    from onnx_lineage.demo import build_family
    return build_family(tmp_path_factory.mktemp("family"), seed=0)


@pytest.fixture(scope="session")
def transfer(family, tmp_path_factory):
    """The demo parent's hidden layers under a new 2-class head (even/odd): a derived model
    over another label space (:func:`tests.transfer.transfer_child`)."""
    from tests.transfer import transfer_child
    return transfer_child(family["parent"], tmp_path_factory.mktemp("transfer") / "transfer2.onnx")
