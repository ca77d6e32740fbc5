#!/usr/bin/env bash
# The cost benchmark on CUDA and on the same machine's CPU, side by side, for a machine with an
# NVIDIA GPU; about 3 minutes.
#
#   bash benchmarks/gpu.sh [OUT_DIR] [MODELS_DIR]
#
# Needs an environment with onnxruntime-gpu (never beside onnxruntime: they share one import
# name), for example:
#   python -m venv /tmp/gpu && /tmp/gpu/bin/pip install -e '.[gpu,bench]' && PYTHON=/tmp/gpu/bin/python bash benchmarks/gpu.sh
# and the CUDA 13 / cuDNN 9 libraries it loads on LD_LIBRARY_PATH (the nvidia-* pip packages or
# a CUDA install). onnxruntime-gpu falls back to the CPU silently when they are missing, so the
# first step checks that the CUDA provider really runs and stops otherwise.
# MODELS_DIR: exported models to reuse (cost.py --models), so the figures come from the very
# files timed on another machine; they are exported with torch when absent.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results}
models=${2:-$(mktemp -d)}
py=${PYTHON:-python3}
mkdir -p "$out"
"$py" - <<'PY' | tee "$out/gpu_check.txt"
import numpy as np
from onnx import TensorProto, helper, numpy_helper
import onnxruntime as ort
g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
                      [numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
s = ort.InferenceSession(m.SerializeToString(), providers=["CUDAExecutionProvider"])
if s.get_providers()[0] != "CUDAExecutionProvider":
    raise SystemExit(f"the CUDA provider does not run here (providers: {s.get_providers()}): "
                     "check onnxruntime-gpu and the CUDA/cuDNN libraries on LD_LIBRARY_PATH")
x = np.arange(8, dtype=np.float32).reshape(2, 4)
assert np.array_equal(s.run(None, {"x": x})[0], x)
print(f"onnxruntime {ort.__version__}: CUDA provider runs")
PY
"$py" benchmarks/cost.py sweep closeness --device cuda --models "$models" --json "$out/cost_gpu.json"
"$py" benchmarks/cost.py sweep closeness --device cpu --models "$models" --json "$out/cost_gpu_host_cpu.json"
