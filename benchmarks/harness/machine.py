"""The machine a result was measured on, as one line of text (each result file's ``machine``)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess


def machine(python: bool = True, onnxruntime: bool = False, gpu: bool = False) -> str:
    """``"x86_64, 2 cores"``, then ``", Python 3.11.9"`` (``python``), ``", onnxruntime 1.x"``
    (``onnxruntime``: the runtime the analyses load) and ``", GPU NAME"`` (``gpu``, when
    ``nvidia-smi`` names one)."""
    text = f"{platform.machine()}, {os.cpu_count()} cores"
    if python:
        text += f", Python {platform.python_version()}"
    if onnxruntime:
        from onnx_lineage.model.runtime import ort
        text += f", onnxruntime {ort().__version__}"
    if gpu and shutil.which("nvidia-smi"):
        name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, check=False).stdout.strip()
        text += f", GPU {name}" if name else ""
    return text
