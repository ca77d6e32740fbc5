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


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_cuda_that_falls_back_to_the_cpu_is_refused(monkeypatch):
    """onnxruntime-gpu lists CUDA but runs on the CPU when it cannot load CUDA; asked for CUDA,
    the runner must say so instead of silently running on the CPU."""
    from onnx_lineage.errors import LineageError
    from onnx_lineage.model import runner as runner_module
    from onnx_lineage.model.loading import load_model
    from tests.conftest import fixture_path
    monkeypatch.setattr(runner_module, "providers_for",
                        lambda device: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    model = load_model(fixture_path("torch_mlp_legacy")).proto
    if "CUDAExecutionProvider" in runner_module.ort().get_available_providers():
        pytest.skip("this machine may really run CUDA")
    with pytest.raises(LineageError, match="could not start CUDA"):
        runner_module.Runner(model, device="cuda")
    assert runner_module.Runner(model, device="auto").provider == "CPUExecutionProvider"
