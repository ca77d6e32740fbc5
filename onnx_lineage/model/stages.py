"""A forward pass run a stage at a time, so that it holds one stage's weights and not the model's.

:func:`split` cuts a graph's nodes (in their stored order, which
:func:`~onnx_lineage.model.loading.sort_nodes` made topological) into stages whose weights stay
under a size. Each cut is placed, among the positions where the stage has reached half that size,
where fewest values cross it: in a transformer, between two blocks (the residual stream and what
every block reads, such as the attention mask). :class:`StagedRunner` runs the stages
stage-major: every batch of rows through the first stage, the values later stages read carried
for each batch, then the next stage. A stage's weights are thus given once per pass, not once per
batch: blended into a buffer the size of the largest stage (the interpolated model of the sweep,
:class:`~onnx_lineage.analyses.interpolation.InterpolatedModel`), or read into a session made for
the stage and let go after it (a model's own weights, ``keep=False``).

The outputs are those of the whole graph, bit for bit where onnxruntime computes each node the
same way (a fusion across a cut is not made: the stages are optimised one by one).
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import onnx
from onnx import helper

from onnx_lineage import memory
from onnx_lineage.errors import ModelError
from onnx_lineage.model.runner import Runner, session_options
from onnx_lineage.model.runtime import ort
from onnx_lineage.model.runtime import session as runtime_session
from onnx_lineage.model.weights import release_pages

#: A model whose weights, as one session or one blend buffer holds them, take more than this share
#: of the memory budget runs a stage at a time (:func:`stage_bytes`)...
STAGED_FROM = 0.25
#: ... in stages of at most this share of the budget each (a single node's weights larger than that
#: make a stage of their own).
STAGE_SHARE = 1 / 16


def stage_bytes(weights: float) -> float | None:
    """The most weight bytes per stage for a forward pass that holds ``weights`` bytes in all, or
    None where the whole model fits (:data:`STAGED_FROM`)."""
    limit = memory.budget()
    return limit * STAGE_SHARE if weights > limit * STAGED_FROM else None


@dataclass(frozen=True)
class Stage:
    """A run of consecutive nodes of the graph.

    Attributes
    ----------
    nodes : tuple of onnx.NodeProto
    reads : tuple of str
        Values it reads that come from before it: graph inputs or earlier stages' values.
    weights : tuple of str
        Initializers and weight inputs (given at run time) its nodes read.
    gives : tuple of str
        Values it makes that later stages or the graph's outputs need.
    done : tuple of str
        Values read here for the last time (no later stage reads them, nor the outputs).
    size : float
        Bytes of its weights (as :func:`split` counted them).
    """

    nodes: tuple
    reads: tuple
    weights: tuple
    gives: tuple
    done: tuple
    size: float


def _read_names(node: onnx.NodeProto) -> set[str]:
    """Names a node reads, those its subgraphs read from the enclosing scopes among them (every
    input of a subgraph's node: names a subgraph makes itself are not the main graph's)."""
    names = set(node.input) - {""}
    stack = [a for a in node.attribute]
    while stack:
        a = stack.pop()
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else
                  list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else []):
            for n in g.node:
                names.update(i for i in n.input if i)
                stack.extend(n.attribute)
    return names


def split(model: onnx.ModelProto, most: float, sizes: dict[str, float]) -> list[Stage]:
    """Cut ``model``'s main graph into stages of at most ``most`` weight bytes (module docstring).

    Parameters
    ----------
    model : onnx.ModelProto
    most : float
        Weight bytes a stage may hold.
    sizes : dict of str to float
        Bytes of each weight input (given at run time) and initializer as the run will hold it
        (an initializer not in it counts nothing); other names are values, carried between
        stages.

    Returns
    -------
    list of Stage
        In order; their nodes, joined, are the graph's.
    """
    g = model.graph
    nodes = list(g.node)
    produced = {o for n in nodes for o in n.output if o}
    sizes = {**{t.name: 0.0 for t in g.initializer}, **sizes}  # every initializer is a weight
    known = produced | {i.name for i in g.input} | set(sizes)
    reads = [_read_names(n) & known for n in nodes]
    end = len(nodes)
    last: dict[str, int] = {o.name: end for o in g.output}
    born: dict[str, int] = {}
    for k, (node, names) in enumerate(zip(nodes, reads)):
        for name in names:
            last[name] = max(last.get(name, -1), k)
        for o in node.output:
            if o:
                born.setdefault(o, k)
    # values crossing the cut before node p: born before p, read at p or after
    change = np.zeros(end + 2, np.int64)
    for name, k in last.items():
        if name in sizes:
            continue
        start = born.get(name, -1) + 1
        if start <= k:
            change[start] += 1
            change[k + 1] -= 1
    crossing = np.cumsum(change)
    cuts, start = [0], 0
    held: dict[str, float] = {}
    total = [0.0]  # weight bytes of nodes start..p-1, by p - start
    for k in range(end):
        new = {w: sizes[w] for w in reads[k] if w in sizes and w not in held}
        if held and sum(held.values()) + sum(new.values()) > most and k > start:
            floor = 0.5 * most
            candidates = [p for p in range(start + 1, k + 1) if total[p - start] >= floor] or [k]
            cut = min(reversed(candidates), key=lambda p: crossing[p])
            cuts.append(cut)
            start = cut
            held, total = {}, [0.0]
            for j in range(cut, k):
                held.update({w: sizes[w] for w in reads[j] if w in sizes})
                total.append(sum(held.values()))
            new = {w: sizes[w] for w in reads[k] if w in sizes and w not in held}
        held.update(new)
        total.append(sum(held.values()))
    cuts.append(end)
    stages = []
    for s, e in zip(cuts[:-1], cuts[1:]):
        inside = {o for n in nodes[s:e] for o in n.output if o}
        names = set().union(*reads[s:e]) if e > s else set()
        weights = {w for w in names if w in sizes}
        stages.append(Stage(
            nodes=tuple(nodes[s:e]),
            reads=tuple(sorted(names - inside - weights)),
            weights=tuple(sorted(weights)),
            gives=tuple(sorted(o for o in inside if last.get(o, -1) >= e)),
            done=tuple(sorted(v for v in names - weights if last.get(v, -1) < e)),
            size=float(sum(sizes.get(w, 0.0) for w in weights))))
    return stages


def stage_model(model: onnx.ModelProto, stage: Stage, arrays: dict[str, np.ndarray]
                ) -> onnx.ModelProto:
    """The model of one stage: its nodes, the initializers they read, its reads typed as
    ``arrays`` (one batch's values) are, the weight inputs as the graph declares them, and what it
    gives as outputs."""
    g = model.graph
    wanted = set(stage.weights)
    inits = [t for t in g.initializer if t.name in wanted]
    declared = {i.name: i for i in g.input}
    inputs = [helper.make_tensor_value_info(
        n, helper.np_dtype_to_tensor_dtype(arrays[n].dtype), [None] * arrays[n].ndim)
        for n in stage.reads]
    inputs += [declared[w] for w in stage.weights if w in declared and
               w not in {t.name for t in inits}]
    graph = helper.make_graph(list(stage.nodes), f"{g.name}_stage", inputs,
                              [onnx.ValueInfoProto(name=n) for n in stage.gives], inits)
    out = helper.make_model(graph, opset_imports=list(model.opset_import),
                            ir_version=model.ir_version)
    out.functions.extend(model.functions)
    return out


class _Arg:
    """An input or output as an onnxruntime session would describe it (name, type, shape)."""

    _TYPES = {onnx.TensorProto.FLOAT: "float", onnx.TensorProto.DOUBLE: "double",
              onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.INT64: "int64",
              onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT8: "int8",
              onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.BOOL: "bool",
              onnx.TensorProto.STRING: "string"}

    def __init__(self, vi: onnx.ValueInfoProto):
        tt = vi.type.tensor_type
        self.name = vi.name
        self.type = f"tensor({self._TYPES.get(tt.elem_type, 'float')})"
        self.shape = ([d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                       for d in tt.shape.dim] if tt.HasField("shape") else None)


class _Signature:
    """What :class:`~onnx_lineage.model.runner.Runner` reads of a session, from the graph alone:
    a staged model has no session of the whole."""

    def __init__(self, model: onnx.ModelProto, provider: str):
        inits = {t.name for t in model.graph.initializer}
        self._inputs = [_Arg(i) for i in model.graph.input if i.name not in inits]
        self._outputs = [_Arg(o) for o in model.graph.output]
        self._provider = provider

    def get_inputs(self):
        return self._inputs

    def get_outputs(self):
        return self._outputs

    def get_providers(self):
        return [self._provider]


@runtime_checkable
class StageFeeds(Protocol):
    """Weights given a stage at a time (:meth:`StagedRunner.run`'s ``static``): ``stage(s, names)``
    returns the feeds of stage ``s``'s weight inputs ``names``, valid until the next call."""

    def stage(self, s: int, names: tuple) -> dict[str, np.ndarray]: ...


class StagedRunner(Runner):
    """A :class:`~onnx_lineage.model.runner.Runner` whose passes run the graph a stage at a time.

    Parameters
    ----------
    model : onnx.ModelProto
    most : float
        Weight bytes a stage may hold (:func:`stage_bytes`).
    sizes : dict of str to float
        Each weight's bytes as the run holds it (:func:`split`).
    keep : bool
        Keep every stage's session between passes (weights given at run time: a session holds
        none of them); else each is made for its stage of a pass and let go after it.
    **kwargs
        As :class:`~onnx_lineage.model.runner.Runner`; ``static`` feeds of :meth:`run` may be a
        :class:`StageFeeds` that gives each stage's weights as it comes.
    """

    def __init__(self, model: onnx.ModelProto, most: float, sizes: dict[str, float],
                 keep: bool = False, **kwargs):
        self.stages = split(model, most, sizes)
        self.keep = keep
        self._sessions: dict[int, object] = {}
        kwargs["probe"] = False  # a probe would run the whole model at once
        super().__init__(model, **kwargs)

    def _open(self, model, opts, providers):
        self._opts, self._providers = opts, providers
        return _Signature(model, providers[0] if isinstance(providers[0], str)
                          else providers[0][0])

    def _stage_session(self, s: int, arrays: dict):
        if s in self._sessions:
            return self._sessions[s]
        proto = stage_model(self.model, self.stages[s], arrays)
        # options of its own: a session's options take its external weights
        opts = session_options(ort(), self._opts.intra_op_num_threads or None)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                session = runtime_session(proto, opts, self._providers)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"{self.name}: onnxruntime cannot run stage {s + 1} of "
                             f"{len(self.stages)} of this model: {first[:300]}") from None
        self.provider = session.get_providers()[0]
        if self.keep:
            self._sessions[s] = session
        return session

    def _passes(self, names: list[str], batches: list, static) -> list[list]:
        """Every batch (``(feeds rows first, real rows)``) through every stage, stage-major
        (module docstring): per batch, the outputs ``names``, rows first."""
        carried = [self._in_model_layout(batch) for batch, _ in batches]
        for s, stage in enumerate(self.stages):
            weights = (static.stage(s, stage.weights) if isinstance(static, StageFeeds) else
                       {k: v for k, v in (static or {}).items() if k in stage.weights})
            session = self._stage_session(s, {n: carried[0][n] for n in stage.reads})
            gives = list(stage.gives)
            for values in carried:
                feeds = {n: values[n] for n in stage.reads}
                feeds.update(weights)
                t0 = time.perf_counter()
                try:
                    res = session.run(gives, feeds) if gives else []
                except Exception as exc:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise ModelError(f"{self.name}: forward pass failed: {first[:300]}") from None
                self.forward_seconds += time.perf_counter() - t0
                values.update(zip(gives, res))
                for n in stage.done:
                    if n not in names:
                        values.pop(n, None)
            del session, weights
            release_pages()  # the stage's weights are read: their file pages need not stay
        out = []
        for values, (_, rows) in zip(carried, batches):
            self.forward_rows += rows
            out.append([np.moveaxis(values[n], self._out_axis[n], 0) if self._out_axis.get(n)
                        else values[n] for n in names])
        return out


def staged_runner(model: onnx.ModelProto, sizes: dict[str, float], **kwargs) -> Runner:
    """A runner of ``model``: a :class:`StagedRunner` (sessions made a stage at a time) where its
    weights, ``sizes`` (as a session holds them), exceed :data:`STAGED_FROM` of the budget, else a
    :class:`~onnx_lineage.model.runner.Runner`."""
    most = stage_bytes(sum(sizes.values()))
    if most is None:
        return Runner(model, **kwargs)
    return StagedRunner(model, most, sizes, keep=False, **kwargs)
