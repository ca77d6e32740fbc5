"""Hostile files built in code: small on disk, huge or deep once read naively (the fuzz tests and
benchmarks/hostile.py use them)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper


def nested_if(depth: int) -> onnx.ModelProto:
    """``If`` nodes nested ``depth`` deep, each then-branch holding the next level (a few KB)."""
    body = helper.make_graph([helper.make_node("Identity", ["x"], ["y0"])], "g0", [],
                             [helper.make_tensor_value_info("y0", TensorProto.FLOAT, [1])])
    for d in range(1, depth + 1):
        leaf = helper.make_graph([helper.make_node("Identity", ["x"], [f"e{d}"])], f"e{d}", [],
                                 [helper.make_tensor_value_info(f"e{d}", TensorProto.FLOAT, [1])])
        cond = helper.make_node("Constant", [], [f"c{d}"],
                                value=helper.make_tensor(f"cv{d}", TensorProto.BOOL, [], [True]))
        node = helper.make_node("If", [f"c{d}"], [f"y{d}"], then_branch=body, else_branch=leaf)
        body = helper.make_graph([cond, node], f"g{d}", [],
                                 [helper.make_tensor_value_info(f"y{d}", TensorProto.FLOAT, [1])])
    graph = helper.make_graph(list(body.node), "nested",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info(f"y{depth}", TensorProto.FLOAT, [1])])
    return _model(graph)


def zeros_npz(path: Path, rows: int, cols: int = 1024, chunk_rows: int = 4096) -> Path:
    """An ``.npz`` whose ``x.npy`` holds ``rows x cols`` float32 zeros, deflated: GiBs declared
    in a few MB. Written in chunks, never held whole."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (rows, cols)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("x.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(f, header)
            block = np.zeros((chunk_rows, cols), np.float32).tobytes()
            for start in range(0, rows, chunk_rows):
                f.write(block[: min(chunk_rows, rows - start) * cols * 4])
    return path


def huge_constant(shape: list[int]) -> onnx.ModelProto:
    """``y = x + ConstantOfShape(shape)``: a few hundred bytes declaring a giant tensor."""
    nodes = [helper.make_node("Constant", [], ["s"], value=helper.make_tensor(
                 "sv", TensorProto.INT64, [len(shape)], shape)),
             helper.make_node("ConstantOfShape", ["s"], ["big"]),
             helper.make_node("Add", ["x", "big"], ["y"])]
    graph = helper.make_graph(nodes, "huge", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", shape[-1]])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [f"d{k}" for k in range(len(shape))])])
    return _model(graph)


def tile_chain(steps: int, width: int = 8) -> onnx.ModelProto:
    """``x`` tiled twice along its features ``steps`` times: each row doubles at every step."""
    nodes, name = [], "x"
    reps = helper.make_node("Constant", [], ["r"], value=helper.make_tensor(
        "rv", TensorProto.INT64, [2], [1, 2]))
    nodes.append(reps)
    for k in range(steps):
        nodes.append(helper.make_node("Tile", [name, "r"], [f"t{k}"]))
        name = f"t{k}"
    graph = helper.make_graph(nodes, "tiles", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", width])], [helper.make_tensor_value_info(
            name, TensorProto.FLOAT, ["n", "m"])])
    return _model(graph)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model
