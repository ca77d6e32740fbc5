"""The exact tests are valid: under independence their p-values are no smaller than uniform.

Independent models here are MLPs drawn i.i.d. (an exchangeable initialisation, no training), the
case where the null holds by construction; trained independent pairs of many families are the
calibration benchmark's (benchmarks/calibration.py).
"""

from __future__ import annotations

import numpy as np

from onnx_lineage.evidence import data_free
from onnx_lineage.matching import match
from tests.evidence.models import random_mlp, save


def test_unit_order_p_values_are_valid_on_independent_pairs(tmp_path):
    paths = [save(*random_mlp(100 + k), tmp_path / f"m{k}.onnx") for k in range(16)]
    ps = []
    for i in range(len(paths)):
        for j in range(i + 1, len(paths)):
            ps.append(data_free(match(paths[i], paths[j], rng=np.random.default_rng(i * 31 + j)))
                      .unit_order.p_value)
    ps = np.array(ps)  # 120 pairs
    for level in (0.1, 0.25, 0.5):
        assert np.mean(ps <= level) <= level + 0.08
    assert ps.min() > 1e-3


def test_noisy_copies_are_detected(tmp_path):
    ws, bs = random_mlp(7)
    rng = np.random.default_rng(0)
    noisy = [w + 0.3 * w.std() * rng.normal(size=w.shape).astype(np.float32) for w in ws]
    ev = data_free(match(save(ws, bs, tmp_path / "a.onnx"), save(noisy, bs, tmp_path / "b.onnx")))
    assert ev.unit_order.p_value < 1e-15


def test_attention_head_classes_are_valid_on_independent_pairs(tmp_path):
    import onnx

    from tests.evidence.models import attention_model
    paths = []
    for k in range(12):
        paths.append(str(tmp_path / f"att{k}.onnx"))
        onnx.save(attention_model(200 + k), paths[-1])
    ps = []
    for i in range(len(paths)):
        for j in range(i + 1, len(paths)):
            ev = data_free(match(paths[i], paths[j], rng=np.random.default_rng(i * 31 + j)))
            ps += [c.p_value for c in ev.unit_order.classes if "q/k" in c.name
                   or "v/o" in c.name]
    ps = np.array(ps)  # 66 pairs x 8 head classes of 4 dimensions
    for level in (0.1, 0.25, 0.5):
        assert np.mean(ps <= level) <= level + 0.05
