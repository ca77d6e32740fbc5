#!/usr/bin/env bash
# The cost benchmark on CUDA (onnxruntime-gpu), for a machine with an NVIDIA GPU; under 5 minutes.
#   bash benchmarks/gpu.sh [OUT_DIR]
# Installs the [gpu] extra into its own virtual environment (never beside onnxruntime, which
# shares its import name), checks that the CUDA provider really runs (onnxruntime-gpu falls back to
# the CPU silently), then runs the sweep and closeness benchmarks on CPU and on CUDA in one run so
# the figures can be set side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results}
mkdir -p "$out"
python3 -m venv /tmp/onnx-lineage-gpu
. /tmp/onnx-lineage-gpu/bin/activate
pip install -q -e '.[gpu,bench]'
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu_card.txt"
python - <<'PY'
import numpy as np, onnx
from onnx import TensorProto, helper, numpy_helper
import onnxruntime as ort
g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
                      [numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
s = ort.InferenceSession(m.SerializeToString(), providers=["CUDAExecutionProvider"])
assert s.get_providers()[0] == "CUDAExecutionProvider", s.get_providers()
print("CUDA provider runs:", s.get_providers())
PY
timeout 120 python benchmarks/cost.py sweep --device cuda --json "$out/cost_gpu_sweep.json"
timeout 150 python benchmarks/cost.py closeness --device cuda --json "$out/cost_gpu_closeness.json"
