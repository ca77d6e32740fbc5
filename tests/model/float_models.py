"""A float model with an embedding and three dense layers, built in code, for quantized
exports of it (onnxruntime's 4-bit quantizer, float8 weights) to be read and paired with."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

VOCAB, WIDTH, HIDDEN, CLASSES, TOKENS = 300, 64, 96, 10, 8


def embedding_mlp(seed: int = 0):
    """``y = MLP(mean of the embeddings of 8 token ids)``, opset 21: the model and its weights by
    initializer name (``emb`` (300, 64) gathered by rows, ``w0`` (64, 96), ``w1`` (96, 64),
    ``w2`` (64, 10) as MatMul operands, stored ``(in, out)``)."""
    rng = np.random.default_rng(seed)
    weights = {"emb": rng.normal(size=(VOCAB, WIDTH)) / 4,
               "w0": rng.normal(size=(WIDTH, HIDDEN)) / 8,
               "w1": rng.normal(size=(HIDDEN, WIDTH)) / 10,
               "w2": rng.normal(size=(WIDTH, CLASSES)) / 8}
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["e"]),
             helper.make_node("ReduceMean", ["e", "axis"], ["x"], keepdims=0),
             helper.make_node("MatMul", ["x", "w0"], ["h0"]), helper.make_node("Relu", ["h0"], ["a0"]),
             helper.make_node("MatMul", ["a0", "w1"], ["h1"]), helper.make_node("Relu", ["h1"], ["a1"]),
             helper.make_node("MatMul", ["a1", "w2"], ["y"])]
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis"))
    graph = helper.make_graph(
        nodes, "embedding_mlp", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", TOKENS])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model, weights
