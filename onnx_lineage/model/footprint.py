"""What a command will hold in memory, estimated from the graphs and the data before it starts.

A model's weights stay in its files (:mod:`onnx_lineage.model.weights`): pages read from them
are the page cache's, released as each layer is done, and are not counted here. What a run
allocates of its own is counted, part by part, from the graph alone (no weight is read):

* **an onnxruntime session** of a model keeps its own float32 copy of every weight stored in
  another type that reaches a computation through ``Cast`` or ``DequantizeLinear`` (the graph
  optimizer folds the conversion into a new constant), and a prepacked copy of every float32
  weight of ``MatMul``, ``Gemm`` and ``Conv``; block-quantized weights (``MatMulNBits``,
  ``GatherBlockQuantized``) and integer kernels keep their stored bytes (:func:`session_bytes`);
* **the blend buffer** of the sweep and the basin test: every parameter in float32
  (:func:`blend_bytes`);
* of a forward pass whose session or blend buffer would take more than a share of the budget,
  only the largest stage's (:mod:`onnx_lineage.model.stages`, :func:`in_one_pass`);
* **a batch** of intermediate values: what one row needs by shape inference, times the rows of a
  batch, at most the runner's batch memory (:func:`batch_bytes`);
* **matching** without data: the largest tensor of each model in float64 (:func:`matching_bytes`);
* **quantized weights** (int8, 4-bit blocks) dequantized in float32, held while a model is
  analysed (:func:`dequantized_bytes`).

Each is what the run must at least hold at once; the peaks measured on the big-model benchmark
(``benchmarks/big_models.py``, RESULTS "Big models") are set beside these estimates there.
:func:`require` refuses a run whose estimate exceeds the memory budget, in one line naming the
figure, its largest part, and what would fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from onnx_lineage import memory
from onnx_lineage.model.graph import attr
from onnx_lineage.model.runner import BATCH_MEMORY_BYTES, parameter_count, row_bytes
from onnx_lineage.model.stages import split, stage_bytes

#: Ops whose float32 weight onnxruntime's CPU kernels prepack into a copy of their own.
PREPACKED = frozenset({"MatMul", "Gemm", "Conv", "FusedMatMul", "FusedGemm", "FusedConv"})
#: Ops through which a weight stored in another type becomes a folded float32 constant.
WIDENING = frozenset({"Cast", "DequantizeLinear", "CastLike"})
#: Ops whose weight :func:`~onnx_lineage.model.parameters.extract_layers` holds dequantized in
#: float32 for as long as the model is analysed, by the weight's input slot.
DEQUANTIZED = {"MatMulNBits": 1, "GatherBlockQuantized": 0, "QLinearMatMul": 3, "QLinearConv": 3,
               "QGemm": 3, "MatMulInteger": 1, "ConvInteger": 1, "DequantizeLinear": 0,
               "DynamicQuantizeMatMul": 1, "MatMulIntegerToFloat": 1}
#: Ops that keep a quantized weight in (about) its stored bytes in an onnxruntime session.
KEEPS_STORED = frozenset(DEQUANTIZED) - {"DequantizeLinear"}


def _elements(t: onnx.TensorProto) -> int:
    return int(np.prod(t.dims, dtype=np.int64)) if len(t.dims) else 1


@dataclass(frozen=True)
class Footprint:
    """Memory a run holds at once, by part.

    Attributes
    ----------
    parts : tuple of (str, float)
        What (``"A's onnxruntime session"``) and its bytes.
    """

    parts: tuple = ()

    @property
    def total(self) -> float:
        """Bytes of every part together."""
        return float(sum(b for _, b in self.parts))

    def __add__(self, other: "Footprint") -> "Footprint":
        return Footprint(self.parts + other.parts)

    def largest(self) -> tuple[str, float]:
        """The part that holds most."""
        return max(self.parts, key=lambda p: p[1]) if self.parts else ("nothing", 0.0)


def widest(*footprints: Footprint) -> Footprint:
    """The largest of footprints held one after the other (steps of one run)."""
    return max(footprints, key=lambda f: f.total, default=Footprint())


def session_sizes(model: onnx.ModelProto) -> dict[str, float]:
    """Bytes one onnxruntime CPU session of ``model`` allocates for each of its weights (module
    docstring): a folded float32 copy of a weight widened by ``Cast``/``DequantizeLinear``, a
    prepacked copy of a float32 ``MatMul``/``Gemm``/``Conv`` weight, a quantized kernel's own
    bytes; none for the rest. Main graph only; weights of subgraphs are small in every model we
    have met."""
    g = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    sizes = {}
    for t in g.initializer:
        n = _elements(t)
        ops = {u.op_type for u in consumers.get(t.name, [])}
        if ops & KEEPS_STORED:  # as stored (4-bit blocks: two values to a stored byte)
            sizes[t.name] = n * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        elif t.data_type != onnx.TensorProto.FLOAT and ops & WIDENING:
            sizes[t.name] = 4.0 * n
        elif t.data_type == onnx.TensorProto.FLOAT and ops & PREPACKED:
            sizes[t.name] = 4.0 * n
    return sizes


def session_bytes(model: onnx.ModelProto) -> float:
    """Bytes one onnxruntime CPU session of ``model`` allocates for its weights
    (:func:`session_sizes`)."""
    return float(sum(session_sizes(model).values()))


def blend_sizes(model: onnx.ModelProto) -> dict[str, float]:
    """The sweep's blend buffer for ``model``, by weight: each initializer in float32, a
    ``MatMulNBits`` weight counted by its ``K x N`` values rather than its packed bytes."""
    sizes = {t.name: 4.0 * _elements(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "MatMulNBits" and len(n.input) > 1 and n.input[1] in sizes:
            sizes[n.input[1]] = 4.0 * attr(n, "K", 0) * attr(n, "N", 0)
    return sizes


def blend_bytes(model: onnx.ModelProto) -> float:
    """The sweep's blend buffer for ``model``: every parameter
    (:func:`~onnx_lineage.model.runner.parameter_count`) in float32, a ``MatMulNBits`` weight
    counted by its ``K x N`` values rather than its packed bytes (:func:`blend_sizes`)."""
    stored = {t.name: 4.0 * _elements(t) for t in model.graph.initializer}
    unpacked = sum(blend_sizes(model).values()) - sum(stored.values())
    return 4.0 * parameter_count(model) + unpacked


def in_one_pass(model: onnx.ModelProto, sizes: dict[str, float]) -> float:
    """What a forward pass holds at once of weights ``sizes``: all of them, or where it runs a
    stage at a time (:func:`~onnx_lineage.model.stages.stage_bytes`), its largest stage's."""
    total = float(sum(sizes.values()))
    most = stage_bytes(total)
    if most is None:
        return total
    return max((st.size for st in split(model, most, sizes)), default=0.0)


def dequantized_bytes(model: onnx.ModelProto) -> float:
    """The model's quantized weights as the analyses hold them: dequantized, float32, every
    value (a 4-bit ``MatMulNBits`` weight's ``K x N``, not its packed bytes). A 7B model's 4-bit
    export holds 26 GiB this way: it cannot be analysed in 24 GiB (not yet read a layer at a
    time)."""
    weights = {t.name: t for t in model.graph.initializer}
    seen, total = set(), 0.0
    for node in model.graph.node:
        slot = DEQUANTIZED.get(node.op_type)
        if slot is None or len(node.input) <= slot or node.input[slot] in seen:
            continue
        t = weights.get(node.input[slot])
        if t is None or t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
            continue
        seen.add(t.name)
        if node.op_type == "MatMulNBits":
            total += 4.0 * attr(node, "K", 0) * attr(node, "N", 0)
        elif node.op_type == "GatherBlockQuantized" and t.data_type == onnx.TensorProto.UINT8:
            total += 4.0 * _elements(t) * (8 // max(attr(node, "bits", 4), 1))
        else:
            total += 4.0 * _elements(t)
    return total


def matching_bytes(model: onnx.ModelProto) -> float:
    """Matching without data: the model's largest tensor in float64 (its features as the
    matching reads them)."""
    return 8.0 * max((_elements(t) for t in model.graph.initializer), default=0)


def batch_bytes(model: onnx.ModelProto, rows: int) -> float:
    """One batch of ``rows`` rows' intermediate values by shape inference, at most the runner's
    batch memory (:data:`~onnx_lineage.model.runner.BATCH_MEMORY_BYTES`) where a batch can be
    smaller."""
    one = float(row_bytes(model)[0])
    return max(one, min(rows * one, BATCH_MEMORY_BYTES))


def require(fp: Footprint, what: str, fits: tuple = ()) -> None:
    """Refuse ``what`` (e.g. ``"determine on a.onnx and b.onnx"``) when ``fp`` exceeds the memory
    budget: a :class:`~onnx_lineage.memory.MemoryBudgetError` in one line with the estimate, its
    largest part, and the first of ``fits`` (``(what would run instead, its Footprint)``) whose
    estimate is within the budget."""
    limit = memory.budget()
    if fp.total <= limit:
        return
    part, size = fp.largest()
    line = (f"{what} needs about {memory.describe(fp.total)} ({part} "
            f"{memory.describe(size)}), over the memory budget of {memory.describe(limit)} "
            f"(--max-memory or {memory.ENV})")
    for instead, other in fits:
        if other.total <= limit:
            line += f"; {instead} needs about {memory.describe(other.total)} and fits"
            break
    else:
        if fits:
            line += "; nothing smaller this command can do fits either"
    raise memory.MemoryBudgetError(line)


# -- per command ------------------------------------------------------------------------------
# Each takes the models' graphs (onnx.ModelProto) and returns the widest step of the command.

def inspect_footprint(a: onnx.ModelProto) -> Footprint:
    """``inspect``: one session of the model."""
    return Footprint((("its onnxruntime session", session_bytes(a)),))


def predict_footprint(a: onnx.ModelProto) -> Footprint:
    """The model's predictions: its session, a stage at a time where the whole would take more
    than a share of the budget (:func:`in_one_pass`)."""
    return Footprint((("its onnxruntime session", in_one_pass(a, session_sizes(a))),))


def held(a: onnx.ModelProto, b: onnx.ModelProto) -> Footprint:
    """What both models hold while they are analysed: their quantized weights, dequantized
    (:func:`dequantized_bytes`; float weights stay in their files)."""
    dq = dequantized_bytes(a) + dequantized_bytes(b)
    return Footprint((("the quantized weights dequantized", dq),) if dq else ())


def match_footprint(a: onnx.ModelProto, b: onnx.ModelProto) -> Footprint:
    """``match``: the quantized weights dequantized, and both models' largest tensors as the
    matching reads them."""
    return held(a, b) + Footprint((("matching", matching_bytes(a) + matching_bytes(b)),))


def closeness_footprint(a: onnx.ModelProto, b: onnx.ModelProto, rows: int) -> Footprint:
    """``closeness``: a session of each model, and a batch of each."""
    return Footprint((("A's onnxruntime session", session_bytes(a)),
                      ("B's onnxruntime session", session_bytes(b)),
                      ("a batch of values", batch_bytes(a, rows) + batch_bytes(b, rows))))


def determine_footprint(a: onnx.ModelProto, b: onnx.ModelProto, rows: int,
                        sweep: bool = True) -> Footprint:
    """``determine``: matching, then the function test (a session of one model at a time, for
    models with gated units), then (``sweep``) the interpolated model's blend buffer, which
    takes its weights as inputs (no folded or prepacked copy), and a batch. What a session
    allocated stays with the process after it is closed (onnxruntime's and the C library's
    allocators keep it: measured on the 1.1B decoder, RESULTS "Big models"), so the session
    counts beside the blend buffer. Each runs a stage at a time where the whole would take
    more than a share of the budget (:func:`in_one_pass`): then one stage of each counts."""
    later = held(a, b) + Footprint((("a session of one model (function test)",
                                     max(in_one_pass(m, session_sizes(m)) for m in (a, b))),))
    if sweep:
        later += Footprint((("the blend buffer",
                             min(in_one_pass(m, blend_sizes(m)) for m in (a, b))),
                            ("a batch of values", batch_bytes(a, rows))))
    return widest(match_footprint(a, b), later)
