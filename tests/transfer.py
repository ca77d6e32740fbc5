"""A transfer child: a parent MLP's hidden layers under a new head for another task, for the
label-space tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def transfer_child(parent: Path, out: Path, classes: int = 2) -> Path:
    """Write to ``out`` the demo-family MLP ``parent`` (``Gemm(transB=1)`` layers ``fc0..fcN``)
    with its head replaced by a ``classes``-way one, fitted by least squares on the parent's last
    hidden features of the built-in digits for the task ``digit % classes`` (even/odd for 2).
    The hidden layers stay the parent's, in its unit order: a derived model whose labels mean
    something else than the parent's."""
    from onnx_lineage.data import digits
    from onnx_lineage.demo import mlp_to_onnx
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(parent).graph.initializer}
    n = sum(1 for k in inits if k.endswith(".weight"))
    ws = [inits[f"fc{k}.weight"] for k in range(n)]
    bs = [inits[f"fc{k}.bias"] for k in range(n)]
    d = digits()
    h = d.arrays["x"]
    for w, b in zip(ws[:-1], bs[:-1]):
        h = np.maximum(h @ w.T + b, 0)
    target = np.eye(classes)[d.y % classes] * 2 - 1
    design = np.hstack([h, np.ones((len(h), 1), h.dtype)])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    head_w, head_b = coef[:-1].T.astype(np.float32), coef[-1].astype(np.float32)
    onnx.save(mlp_to_onnx(ws[:-1] + [head_w], bs[:-1] + [head_b], "transfer"), out)
    return out
