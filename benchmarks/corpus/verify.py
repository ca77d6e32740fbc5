"""Check the construction truths of the corpus: for each related pair whose two models compute the same
function (re-release, conversion, float16, optimizer, simplified), run both on the pair's data and report
the largest output difference relative to the output scale; also compare the weights of silero exports.

    python benchmarks/corpus/verify.py CACHE_DIR
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent


def run(path, data):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in s.get_inputs():
        feeds[i.name] = data[i.name]
    fixed1 = any(isinstance(i.shape[0], int) and i.shape[0] == 1 for i in s.get_inputs() if len(i.shape) > 1
                 and i.name not in ("state", "h", "c"))
    if fixed1:   # fixed batch 1: row by row
        rows = len(next(iter(v for k, v in feeds.items() if k not in ("state", "h", "c", "sr"))))
        outs = []
        for r in range(rows):
            f = {k: (v if k in ("state", "h", "c", "sr") else v[r:r + 1]) for k, v in feeds.items()}
            outs.append(s.run(None, f)[0])
        return np.concatenate(outs)
    return s.run(None, feeds)[0]


def main():
    cache = Path(sys.argv[1])
    man = json.loads((HERE / "manifest.json").read_text())
    same_function = ("re-release", "conversion", "float16", "ort-optimizer", "simplified re-export",
                     "quantization", "4-bit quantization", "conversion + quantization")
    for p in man["pairs"]:
        if p["truth"] != "related" or p["kind"] not in same_function:
            continue
        d = dict(np.load(cache / "data" / f'pair__{p["a"]}__{p["b"]}.npz'))
        try:
            ya = run(cache / "models" / f'{p["a"]}.onnx', d).astype(np.float64)
            yb = run(cache / "models" / f'{p["b"]}.onnx', d).astype(np.float64)
            rel = float(np.abs(ya - yb).max() / (np.abs(ya).max() + 1e-12))
            print(f'{p["a"]:>24} {p["b"]:<28} {p["kind"]:<26} max|dy|/max|y| = {rel:.2e}')
        except Exception as e:  # noqa: BLE001
            print(f'{p["a"]:>24} {p["b"]:<28} {p["kind"]:<26} could not run: {str(e)[:150]}')


if __name__ == "__main__":
    main()
