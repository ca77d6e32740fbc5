"""Import of onnxruntime, whichever package provides it, and the choice of execution provider."""

from __future__ import annotations

import numpy as np

from onnx_lineage.errors import LineageError, RuntimeMissingError
from onnx_lineage.model.weights import PACKED, external_tensors, inlined, is_mapped, narrow

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
    types = {t.name: t.data_type for t in model.graph.initializer if is_mapped(t)}
    packed = {name for name, data_type in types.items() if data_type in PACKED}
    if packed:  # 4-bit values: no array holds their packed layout, so they travel in the graph
        model = inlined(model, packed)
    mapped = external_tensors(model)
    if mapped:
        options.add_external_initializers(
            list(mapped), [_ortvalue(rt, v, types[k]) for k, v in mapped.items()])
    return rt.InferenceSession(model.SerializeToString(), sess_options=options,
                               providers=providers or ["CPUExecutionProvider"])


def _ortvalue(rt, values, data_type: int):
    """An OrtValue of ``values`` (a mapped tensor's): numpy's own types directly; bfloat16 and
    float8 (ml_dtypes arrays, which onnxruntime does not take) by their bytes, with their ONNX
    type named."""
    if not narrow(data_type):
        return rt.OrtValue.ortvalue_from_numpy(values)
    raw = np.ascontiguousarray(values).view(f"u{values.dtype.itemsize}")
    return rt.OrtValue.ortvalue_from_numpy_with_onnx_type(raw, data_type)
