"""Folding BatchNorm into the preceding convolution or dense layer.

``y = gamma * (W x + b - mean) / sqrt(var + eps) + beta`` equals ``W' x + b'`` with
``W' = s W`` (per output unit) and ``b' = s (b - mean) + beta``, ``s = gamma / sqrt(var + eps)``.
Exporters do this in eval mode; when only one of two models kept its BatchNorm nodes, folding that
one puts both in the same form.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from onnx_lineage.errors import ModelError
from onnx_lineage.model.parameters import Layer
from onnx_lineage.model.topology import Link


def fold(layers: list[Layer], links: dict[int, Link]) -> tuple[list[Layer], list[int]]:
    """Layers with every BatchNorm that directly follows a conv/dense layer folded into it.

    Returns
    -------
    layers : list of Layer
        New list (folded layers are copies; BatchNorm layers removed; indices kept).
    folded : list of int
        Indices of the layers that absorbed a BatchNorm.
    """
    by_index = {layer.index: layer for layer in layers}
    absorbed, out, folded = set(), [], []
    for layer in layers:
        link = links.get(layer.index)
        bn_index = link.followers[0] if link and link.followers else None
        bn = by_index.get(bn_index) if bn_index is not None else None
        if bn is not None and bn.kind == "batchnorm" and bn.input == layer.output:
            p = bn.params
            if np.any(p["var"] + p["eps"][0] <= 0):
                raise ModelError(f"BatchNormalization {bn.node!r} has a non-positive variance")
            s = p["weight"] / np.sqrt(p["var"] + p["eps"][0])
            w = layer.weight * s.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
            b = layer.params.get("bias", np.zeros(layer.units, np.float32))
            params = dict(layer.params, weight=w.astype(np.float32),
                          bias=(s * (b - p["mean"]) + p["bias"]).astype(np.float32))
            if not all(np.all(np.isfinite(v)) for v in params.values()):
                raise ModelError(f"folding {bn.node!r} into {layer.node!r} overflows float32")
            out.append(dataclasses.replace(layer, params=params, sites={}, output=bn.output))
            absorbed.add(bn.index)
            folded.append(layer.index)
        elif layer.index not in absorbed:
            out.append(layer)
    return [layer for layer in out if layer.index not in absorbed], folded
