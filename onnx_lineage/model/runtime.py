"""Import of onnxruntime, whichever package provides it, and the choice of execution provider."""

from __future__ import annotations

from onnx_lineage.errors import LineageError, RuntimeMissingError
from onnx_lineage.model.weights import external_tensors

DEVICES = ("auto", "cpu", "cuda")


def ort():
    """The ``onnxruntime`` module, or a one-line error naming the extras that provide it."""
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeMissingError(
            "onnxruntime is not installed: pip install 'onnx-lineage[cpu]' (or '[gpu]' for CUDA)"
        ) from None
    if not hasattr(onnxruntime, "InferenceSession"):
        raise RuntimeMissingError("onnxruntime is broken (onnxruntime and onnxruntime-gpu were both "
                                  "installed, then one removed): reinstall one of the extras")
    onnxruntime.set_default_logger_severity(4)
    return onnxruntime


#: CUDA provider options: cuDNN picks convolution algorithms by heuristics, not by timing them.
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}


def providers_for(device: str) -> list:
    """Execution providers to ask for, for ``device`` in ``auto``, ``cpu``, ``cuda``.

    onnxruntime-gpu lists CUDA even on a machine without it and silently falls back to the CPU, so
    callers must read ``session.get_providers()`` to know what really runs.
    """
    if device not in DEVICES:
        raise LineageError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    available = ort().get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        # the analyses run many batch sizes (rays finish at different steps); cuDNN's default
        # exhaustive search benchmarks every convolution again for each new shape
        return [("CUDAExecutionProvider", CUDA_OPTIONS), "CPUExecutionProvider"]
    if device == "cuda":
        raise LineageError("--device cuda: this onnxruntime has no CUDA provider "
                           "(install onnx-lineage[gpu] on a machine with CUDA)")
    return ["CPUExecutionProvider"]


def session(model, options=None, providers=None):
    """An onnxruntime session of ``model`` (an ``onnx.ModelProto``) whose weights read in place
    (:mod:`onnx_lineage.model.weights`) are handed over as external initializers, views of the
    mapped file: only the graph is serialized.

    Parameters
    ----------
    model : onnx.ModelProto
    options : onnxruntime.SessionOptions, optional
    providers : list, optional
    """
    rt = ort()
    options = options or rt.SessionOptions()
    mapped = external_tensors(model)
    if mapped:
        options.add_external_initializers(
            list(mapped), [rt.OrtValue.ortvalue_from_numpy(v) for v in mapped.values()])
    return rt.InferenceSession(model.SerializeToString(), sess_options=options,
                               providers=providers or ["CPUExecutionProvider"])
