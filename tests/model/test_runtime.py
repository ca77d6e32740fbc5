"""The runtime import: a clear one-line error when neither onnxruntime package is installed."""

import subprocess
import sys

import pytest

from tests.conftest import fixture_path


def test_missing_onnxruntime_is_one_line_and_exit_1():
    code = ("import sys; sys.modules['onnxruntime'] = None; sys.argv = ['onnx-lineage', 'inspect', "
            f"{str(fixture_path('torch_mlp_legacy'))!r}]; import typer_app; typer_app.main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1
    assert "pip install 'onnx-lineage[cpu]'" in r.stderr and "Traceback" not in r.stderr


def test_cuda_without_provider_is_refused():
    from onnx_lineage.errors import LineageError
    from onnx_lineage.model.runtime import ort, providers_for
    if "CUDAExecutionProvider" in ort().get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(LineageError, match="CUDA"):
        providers_for("cuda")
