#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the demo end to end on CUDA (every verdict, against the CPU),
# then the cost benchmark on CUDA and on the same machine's CPU, side by side; about 2 minutes.
#
#   [COST='sweep closeness'] [HOST_CPU=1] bash benchmarks/gpu.sh [OUT_DIR] [MODELS_DIR]
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
# the CLI end to end on CUDA: the demo family, every verdict, against the same demo on the CPU
"$py" typer_app.py demo --device cuda --json --quiet --out "$models/demo_cuda" \
  --report "$models/demo_cuda.html" > "$out/demo_cuda.json"
"$py" typer_app.py demo --device cpu --json --quiet --out "$models/demo_cpu" \
  --report "$models/demo_cpu.html" > "$out/demo_cpu.json"
"$py" - "$out/demo_cuda.json" "$out/demo_cpu.json" <<'PY' | tee "$out/demo_check.txt"
import json, sys
cuda, cpu = (json.load(open(p)) for p in sys.argv[1:3])
f = lambda v, d=3: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
print(f"demo on {cuda['parent']['provider']}: {cuda['correct']}/{cuda['total']} verdicts right "
      f"in {cuda['seconds']:.1f} s (CPU: {cpu['correct']}/{cpu['total']} in {cpu['seconds']:.1f} s)")
for g, c in zip(cuda["rows"], cpu["rows"]):
    print(f"  {g['model']:16s} {g['verdict']:9s} barrier {f(g['barrier'], 4)} (CPU {f(c['barrier'], 4)})"
          f"  closeness {f(g['closeness'])} (CPU {f(c['closeness'])})")
if cuda["parent"]["provider"] != "CUDAExecutionProvider" or cuda["correct"] != cuda["total"]:
    raise SystemExit("the demo on CUDA did not run on CUDA or got a verdict wrong")
PY
# COST: which cost benchmarks (default: sweep closeness); HOST_CPU=0 skips the host-CPU side
"$py" benchmarks/cost.py ${COST:-sweep closeness} --device cuda --models "$models" --json "$out/cost_gpu.json"
if [ "${HOST_CPU:-1}" != 0 ]; then
  "$py" benchmarks/cost.py ${COST:-sweep closeness} --device cpu --models "$models" \
    --json "$out/cost_gpu_host_cpu.json"
fi
