"""Folding BatchNorm into the preceding convolution or dense layer.

``y = gamma * (W x + b - mean) / sqrt(var + eps) + beta`` equals ``W' x + b'`` with
``W' = s W`` (per output unit) and ``b' = s (b - mean) + beta``, ``s = gamma / sqrt(var + eps)``.
Exporters do this in eval mode; when only one of two models kept its BatchNorm nodes, folding that
one puts both in the same form.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import onnx
from onnx import numpy_helper

from onnx_lineage.errors import ModelError
from onnx_lineage.model.graph import drop_unused
from onnx_lineage.model.parameters import Layer, Site, extract_layers
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
            out.append(dataclasses.replace(layer, params=params, sites={}, output=bn.output,
                                           folded_bn=bn.node))
            absorbed.add(bn.index)
            folded.append(layer.index)
        elif layer.index not in absorbed:
            out.append(layer)
    return [layer for layer in out if layer.index not in absorbed], folded


def folded_graph(model: onnx.ModelProto, layers: list[Layer]) -> tuple[onnx.ModelProto, dict]:
    """A copy of ``model`` with the folds of ``layers`` done in the graph.

    Every layer that absorbed a BatchNorm (``folded_bn``, from :func:`fold`) gets its folded
    weight and bias as new initializers, and the BatchNorm node becomes an ``Identity``: the copy
    computes the same function, and its convolutions can now take a folded model's weights
    (an interpolation between a BatchNorm-kept and a folded model).

    Parameters
    ----------
    model : onnx.ModelProto
        The model the layers were extracted from (its nodes named by :func:`extract_layers`).
    layers : list of Layer
        Canonical layers after :func:`fold`.

    Returns
    -------
    proto : onnx.ModelProto
    sites : dict of layer index to dict of str to Site
        Where each folded layer's ``weight`` and ``bias`` live in ``proto``. Layers whose weight
        cannot be written (quantized, inside a subgraph, scaled by a Gemm's alpha) or whose node
        cannot take a bias input are left unfolded and out of ``sites``.
    """
    proto = copy.deepcopy(model)
    original = {x.index: x for x in extract_layers(proto)}
    nodes = {n.name: n for n in proto.graph.node}
    sites: dict[int, dict[str, Site]] = {}
    for layer in layers:
        src = original.get(layer.index)
        bn = nodes.get(layer.folded_bn) if layer.folded_bn else None
        ws = src.sites.get("weight") if src is not None else None
        if bn is None or ws is None or not ws.writable or not isinstance(ws.slot, int):
            continue
        bs = src.sites.get("bias")
        if bs is None or not bs.writable or not isinstance(bs.slot, int):
            node = nodes[ws.node]
            if node.op_type not in ("Conv", "Gemm") or len(node.input) > 2:
                continue
            node.input.append("")
            bs = Site(node.name, 2, (layer.units,), "identity", True)
        for key, site in (("weight", ws), ("bias", bs)):
            name = f"__lineage_folded_{layer.index}_{key}"
            proto.graph.initializer.append(numpy_helper.from_array(site.store(layer.params[key]),
                                                                   name))
            nodes[site.node].input[site.slot] = name
        source = bn.input[0]
        bn.op_type, bn.domain = "Identity", ""
        del bn.input[:], bn.attribute[:], bn.output[1:]
        bn.input.append(source)
        sites[layer.index] = {"weight": ws, "bias": bs}
    drop_unused(proto.graph)
    return proto, sites
