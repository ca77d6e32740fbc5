"""Batched predictions of one ONNX model through onnxruntime.

A :class:`Runner` owns one inference session. It feeds data in memory-bounded batches, loops over
models with a fixed batch dimension (padding the last batch), and runs batch-dependent models
(dynamic int8: ``DynamicQuantizeLinear`` computes its scale over the whole batch) one row at a time
so that every row's answer is independent of the rest. It picks the output that carries the
prediction and says what it holds: ``logits``, ``probabilities``, ``labels`` (label-only models),
``embedding`` or ``regression``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass

import numpy as np
import onnx

from kernels.labels import argmax_rows
from onnx_lineage import memory
from onnx_lineage.errors import DataError, LineageError, ModelError
from onnx_lineage.model.graph import inferred_values
from onnx_lineage.model.inputs import batch_name, input_specs
from onnx_lineage.model.runtime import ort, providers_for
from onnx_lineage.model.runtime import session as runtime_session
from onnx_lineage.model.weights import stored_bytes

OUTPUT_KINDS = ("auto", "logits", "probabilities", "labels", "embedding", "regression")

#: Memory budget for one batch's tensors (inputs, outputs and intermediate values), in bytes.
BATCH_MEMORY_BYTES = 256 * 1024**2
MAX_BATCH = 8192
#: Models whose values shape inference cannot size are probed on one and two rows (a second
#: session) up to this size; larger ones run batches of :data:`UNSIZED_LARGE_BATCH` rows.
PROBE_MAX_MODEL_BYTES = 256 * 1024**2
UNSIZED_LARGE_BATCH = 32

#: A model this small runs on one thread when no thread count is given: its passes are shorter
#: than waking a thread pool, which matters once pool threads do not spin (:data:`SPIN`). Small
#: means: no convolution, at most this many parameters and at most
#: :data:`SINGLE_THREAD_MAX_ROW_BYTES` of intermediate values per row (every size known to shape
#: inference), so that a row's work is about its parameter count. ``cost.py threads`` on 2 cores:
#: a 6.5k-parameter MLP's closeness was fastest on one thread; an 8.6k-parameter token encoder
#: (attention over 64 positions, 177 KB per row) was up to twice as slow on one thread; single
#: passes of MLPs from 51k parameters up are faster on the pool at any batch size.
SINGLE_THREAD_MAX_PARAMS = 32_768
SINGLE_THREAD_MAX_ROW_BYTES = 16 * 1024
#: Whether onnxruntime's idle pool threads spin for work. An analysis alternates between A's and
#: B's sessions, and the threads one leaves spinning take the cores the other needs.
SPIN = False

#: Providers whose sessions get batches padded to few shapes (:meth:`Runner.plan`).
PAD_PROVIDERS = ("CUDAExecutionProvider",)

#: Bytes per element of ONNX tensor types (others count 4).
_ELEMENT_BYTES = {onnx.TensorProto.DOUBLE: 8, onnx.TensorProto.INT64: 8, onnx.TensorProto.UINT64: 8,
                  onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.BFLOAT16: 2,
                  onnx.TensorProto.INT16: 2, onnx.TensorProto.UINT16: 2, onnx.TensorProto.INT8: 1,
                  onnx.TensorProto.UINT8: 1, onnx.TensorProto.BOOL: 1}

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
              "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
              "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
              "tensor(string)": np.object_}


@dataclass(frozen=True)
class Prediction:
    """What a model predicts on a batch of rows.

    Attributes
    ----------
    labels : ndarray of shape (n,), int64
        Predicted class (argmax of scores, the model's own label, or a derived label).
    scores : ndarray of shape (n, k), float32, or None
        Logits, probabilities, embeddings or regression values; None for label-only models.
    """

    labels: np.ndarray
    scores: np.ndarray | None


def _op_types(graph: onnx.GraphProto):
    """Every node's op type, subgraphs (If, Loop, Scan bodies) included."""
    for node in graph.node:
        yield node.op_type
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _op_types(a.g)


def is_batch_dependent(model: onnx.ModelProto) -> bool:
    """Whether a row's output can depend on other rows of its batch (DynamicQuantizeLinear)."""
    return any(op in ("DynamicQuantizeLinear", "DynamicQuantizeMatMul")
               for op in _op_types(model.graph))


def has_convolution(model: onnx.ModelProto) -> bool:
    """Whether the model convolves (Conv, ConvTranspose, QLinearConv, ConvInteger, fused forms)."""
    return any("Conv" in op for op in _op_types(model.graph))


def parameter_count(model: onnx.ModelProto, weight_inputs: frozenset = frozenset()) -> int:
    """Values in the main graph's initializers, Constant nodes and the inputs named in
    ``weight_inputs`` (weights fed at run time, as an interpolated model takes them)."""
    count = sum(int(np.prod(t.dims, dtype=np.int64)) for t in model.graph.initializer)
    for i in model.graph.input:
        if i.name in weight_inputs:
            count += int(np.prod([max(d.dim_value, 1) for d in i.type.tensor_type.shape.dim],
                                 dtype=np.int64))
    for node in model.graph.node:
        if node.op_type == "Constant":
            count += sum(int(np.prod(a.t.dims, dtype=np.int64)) for a in node.attribute
                         if a.type == onnx.AttributeProto.TENSOR)
    return count


def session_options(rt, threads: int | None):
    """Session options: quiet logging, ``threads`` intra-op threads (onnxruntime's choice when
    None), pool threads spinning or not (:data:`SPIN`)."""
    opts = rt.SessionOptions()
    opts.log_severity_level = 4  # our own one-line message replaces onnxruntime's log
    if threads:
        opts.intra_op_num_threads = int(threads)
    if not SPIN:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def row_bytes(model: onnx.ModelProto) -> tuple[int, bool, tuple[str, float]]:
    """Bytes of intermediate values per row from shape inference, whether every value of the main
    graph had a fully known row shape (if not, the estimate counts 16 per unknown dim and misses
    values without a shape, and :func:`_probed_row_bytes` should measure instead), and the
    largest value whose whole size is known (name, bytes: a batch of one for symbolic dims)."""
    try:
        infos = inferred_values(model) + list(model.graph.input)
    except Exception:
        infos = list(model.graph.output) + list(model.graph.input)
    shaped = {vi.name for vi in infos}
    certain = all(o in shaped for n in model.graph.node for o in n.output if o)
    total, largest = 0.0, ("", 0.0)
    for vi in infos:
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and not tt.HasField("shape"):
            certain = False  # rank unknown
        dims = tt.shape.dim
        if not dims:
            continue
        size = _ELEMENT_BYTES.get(tt.elem_type, 4)
        row, whole = float(size), float(size)
        for k, d in enumerate(dims):
            known = d.HasField("dim_value") and d.dim_value > 0
            whole *= d.dim_value if known else 1
            if k:
                certain &= known
                row *= d.dim_value if known else 16
        total += row
        if whole > largest[1]:
            largest = (vi.name, whole)
    return int(min(max(total, 1024), 2**62)), certain, largest


def _probed_row_bytes(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                      static: dict[str, np.ndarray]) -> int | None:
    """Bytes of intermediate values per real row: the model run on ``feeds``' first one and two
    rows (``static`` feeds whole) with all its values as outputs; the difference leaves out values
    that do not grow with the batch (weights computed by nodes). None if that cannot run."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = list(dict.fromkeys(o for n in probe.graph.node for o in n.output if o))
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            session = runtime_session(probe)
            size = [sum(v.nbytes for v in session.run(None, {**{k: a[:rows] for k, a in feeds.items()},
                                                              **static})
                        if isinstance(v, np.ndarray)) for rows in (1, 2)]
    except Exception:  # a model the probe cannot run: keep the estimate
        return None
    rows = min(2, len(next(iter(feeds.values()))))
    return size[1] - size[0] if rows == 2 and size[1] > size[0] else size[0]


class Runner:
    """An onnxruntime session with batching and output interpretation.

    Parameters
    ----------
    model : onnx.ModelProto
        The model (external data already loaded).
    device : {"auto", "cpu", "cuda"}
    output : str
        One of :data:`OUTPUT_KINDS`; ``auto`` decides from the graph.
    batch_size : int, optional
        Rows per forward pass; by default from :data:`BATCH_MEMORY_BYTES`.
    threads : int, optional
        onnxruntime intra-op threads (default: onnxruntime's own choice).
    name : str
        Label used in messages.
    static_inputs : set of str
        Inputs that are not data (weights fed at run time, same for every row): excluded from
        :attr:`inputs` and passed whole to every batch through ``run(..., static=...)``.
    probe : bool
        Where shape inference cannot size a row's intermediate values, measure them on one and
        two rows (a second session) before the first pass. False: batches of
        :data:`UNSIZED_LARGE_BATCH` rows instead, as for models too large to probe; for callers
        that run a few rows once, to whom the probe costs more than the passes.
    """

    def __init__(self, model: onnx.ModelProto, device: str = "auto", output: str = "auto",
                 batch_size: int | None = None, threads: int | None = None, name: str = "model",
                 static_inputs: frozenset = frozenset(), probe: bool = True):
        if output not in OUTPUT_KINDS:
            raise LineageError(f"unknown output kind {output!r}: choose one of {', '.join(OUTPUT_KINDS)}")
        rt = ort()
        self.name = name
        self.model = model
        convolves = has_convolution(model)
        one_row, certain, (largest, largest_bytes) = row_bytes(model)
        # refused before onnxruntime allocates: a few bytes of graph can declare terabytes
        memory.check(one_row, f"{name}: one row of its intermediate values")
        memory.check(largest_bytes, f"{name}: its value {largest!r}")
        small = (not convolves and certain and one_row <= SINGLE_THREAD_MAX_ROW_BYTES
                 and parameter_count(model, static_inputs) <= SINGLE_THREAD_MAX_PARAMS)
        opts = session_options(rt, 1 if threads is None and small else threads)
        providers = providers_for(device)
        try:
            # onnxruntime prints provider failures on stdout, which belongs to the JSON output
            with contextlib.redirect_stdout(sys.stderr):
                self.session = self._open(model, opts, providers)
            self.provider = self.session.get_providers()[0]
            if device == "cuda" and self.provider != "CUDAExecutionProvider":
                raise LineageError("--device cuda: onnxruntime could not start CUDA here and would "
                                   "run on the CPU (are the CUDA and cuDNN libraries that "
                                   "onnxruntime-gpu needs installed?)")
            self._read_inputs(static_inputs)
        except LineageError:
            raise
        except UnicodeDecodeError:
            raise ModelError(f"{name}: names in the model are not valid UTF-8") from None
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"{name}: onnxruntime cannot run this model: {first[:300]}") from None
        self.batch_dependent = is_batch_dependent(model)
        self.output_name, self.output_kind = self._choose_output(output)
        fixed = {i.fixed_batch for i in self.inputs} - {None}
        self.fixed_batch = fixed.pop() if len(fixed) == 1 else None
        self.batch_size = self._batch_size(batch_size, one_row, certain, probe)
        #: pad batches to few shapes (see :meth:`plan`): under CUDA, for models that convolve
        #: (a model of matrix products gains nothing, measured); never batch-dependent ones
        self.pad_shapes = self.provider in PAD_PROVIDERS and not self.batch_dependent and convolves
        self.forward_rows = 0  # rows run so far (query accounting)
        self.forward_seconds = 0.0  # time spent inside onnxruntime

    def _open(self, model: onnx.ModelProto, opts, providers):
        """The session its passes run (a staged runner has one per stage instead)."""
        return runtime_session(model, opts, providers)

    def _read_inputs(self, static_inputs: frozenset) -> None:
        """The session's data inputs (states among them), their batch axes and the outputs'."""
        declared = [i for i in self.session.get_inputs() if i.name not in static_inputs]
        shapes = [tuple(d if isinstance(d, (int, str)) else None for d in i.shape or ())
                  for i in declared]
        self.inputs, self.states = input_specs(
            [i.name for i in declared], [_ORT_TYPES.get(i.type, np.float32) for i in declared],
            shapes, [tuple(o.shape or ()) for o in self.session.get_outputs()])
        batch = batch_name(shapes, self.inputs)
        self._axis = {i.name: i.batch_axis for i in self.inputs}
        self._unbatched = {i.name for i in self.inputs if i.batch_axis is None}
        self._out_axis = {o.name: list(o.shape).index(batch) for o in self.session.get_outputs()
                          if batch is not None and o.shape and batch in o.shape}
        for o in self.session.get_outputs():  # names and types readable (hostile graphs)
            _ = (o.name, o.type, o.shape)

    def _batch_size(self, asked: int | None, row_bytes: float, certain: bool,
                    probe: bool) -> int:
        """Rows per forward pass: ``asked``, else what the memory per batch allows for a row of
        ``row_bytes`` (small batches, or a probe of one row first if ``probe``, where that size
        is not ``certain``); one for a batch-dependent model, the model's own for a fixed
        batch."""
        self._probe = False  # measure one row's intermediate values before the first pass
        if asked is None:
            per_batch = min(BATCH_MEMORY_BYTES, memory.budget())
            asked = int(np.clip(per_batch // row_bytes, 1, MAX_BATCH))
            if not certain and (not probe or stored_bytes(self.model) > PROBE_MAX_MODEL_BYTES):
                # too large to load twice for a probe (or not asked for): small batches
                asked = min(asked, UNSIZED_LARGE_BATCH)
            else:
                self._probe = not certain
        if self.batch_dependent:
            asked = 1
        if self.fixed_batch:
            asked = self.fixed_batch
        return int(asked)

    # -- outputs ---------------------------------------------------------------------------
    def _choose_output(self, requested: str) -> tuple[str, str]:
        outs = self.session.get_outputs()
        producers = {o: n for n in self.model.graph.node for o in n.output}

        def rank(o):
            return len(o.shape) if o.shape is not None else 0

        floats = [o for o in outs if o.type in ("tensor(float)", "tensor(double)", "tensor(float16)")]
        ints = [o for o in outs if o.type in ("tensor(int64)", "tensor(int32)") and rank(o) == 1]
        if requested == "labels":
            if not ints:
                raise ModelError(f"{self.name}: --output labels, but no integer label output")
            return ints[0].name, "labels"
        if requested in ("embedding", "regression", "logits", "probabilities"):
            if not floats:
                raise ModelError(f"{self.name}: --output {requested}, but no float output")
            return floats[0].name, requested
        probs = [o for o in floats if "prob" in o.name.lower()]
        if probs:
            return probs[0].name, "probabilities"
        for o in floats:
            if rank(o) == 2 and (o.shape[1] is None or not isinstance(o.shape[1], int) or o.shape[1] > 1):
                node = producers.get(o.name)
                kind = "probabilities" if node is not None and node.op_type == "Softmax" else "logits"
                return o.name, kind
        if ints:
            return ints[0].name, "labels"
        if floats:
            o = floats[0]
            return o.name, "regression" if rank(o) <= 1 or o.shape[-1] == 1 else "embedding"
        raise ModelError(f"{self.name}: no numeric output to read predictions from")

    # -- running ---------------------------------------------------------------------------
    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None,
            static: dict[str, np.ndarray] | None = None, rows: int | None = None) -> list[np.ndarray]:
        """Run all rows of ``feeds`` in batches and concatenate the outputs.

        Parameters
        ----------
        feeds : dict of input name to ndarray of shape (m, ...)
            Every model input, same number of rows.
        outputs : list of str, optional
            Output names (default: the prediction output).
        static : dict of str to ndarray, optional
            Feeds given whole to every batch (interpolated weights).
        rows : int, optional
            The real rows, the first ``rows`` of the feeds (default: all ``m``). Rows after them
            (any finite values) serve as padding where :meth:`plan` pads, instead of copies of
            the last row; see :meth:`padded_rows`.

        Returns
        -------
        list of ndarray, one per output, of ``rows`` rows each
        """
        names = outputs or [self.output_name]
        # inputs without a batch axis go whole to every batch, beside the static feeds
        whole = {k: v for k, v in feeds.items() if k in self._unbatched}
        feeds = {k: v for k, v in feeds.items() if k not in self._unbatched}
        m = len(next(iter(feeds.values()))) if feeds else 1
        n = m if rows is None else int(rows)
        if n == 0:
            raise DataError("no rows to run")
        if not 0 < n <= m:
            raise ValueError(f"rows={rows} but the feeds hold {m}")
        if self._probe:
            self._probe = False
            measured = _probed_row_bytes(self.model, self._in_model_layout(feeds),
                                         {**whole, **(static or {})})
            if measured:
                memory.check(measured, f"{self.name}: one row of its intermediate values")
                per_batch = min(BATCH_MEMORY_BYTES, memory.budget())
                self.batch_size = int(np.clip(per_batch // max(measured, 1024), 1,
                                              self.batch_size))
        plan = self.plan(n)
        if len(plan) == 1 and plan[0][2] == m:  # one batch, the feeds as given: no copies
            return [np.asarray(r)[:n] for r in self._passes(names, [({**feeds, **whole}, n)],
                                                              static)[0]]
        batches = []
        for start, stop, computed in plan:
            real = stop - start
            if start + computed <= m:  # the rows after the real ones pad the batch
                batch = {k: v[start:start + computed] for k, v in feeds.items()}
            else:  # padded with copies of the last real row
                pad = computed - real
                batch = {k: np.concatenate([v[start:stop], np.repeat(v[stop - 1:stop], pad, axis=0)])
                         for k, v in feeds.items()}
            batches.append(({**batch, **whole}, real))
        parts = zip(*self._passes(names, batches, static))
        return [np.concatenate([np.asarray(r)[:real] for r, (_, real) in zip(p, batches)])
                if len(batches) > 1 else np.asarray(p[0])[:batches[0][1]] for p in parts]

    def _passes(self, names: list[str], batches: list, static: dict | None) -> list[list]:
        """The outputs ``names`` of each batch (feeds rows first, its real rows), the ``static``
        feeds given to every one: a session run per batch."""
        return [self._run_batch(names, {**batch, **(static or {})}, real)
                for batch, real in batches]

    def take(self, feeds: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
        """Rows ``idx`` of ``feeds`` (inputs without a batch axis kept whole)."""
        return {k: (v if k in self._unbatched else v[idx]) for k, v in feeds.items()}

    def padded_rows(self, n: int) -> int:
        """Rows feeds for ``n`` real rows need for :meth:`run` to pad them without copying."""
        return max(start + computed for start, _, computed in self.plan(n))

    def plan(self, n: int) -> list[tuple[int, int, int]]:
        """How ``n`` rows are run: ``(start, stop, rows computed)`` per forward pass.

        Batches hold at most :attr:`batch_size` rows. A model with a fixed batch gets every batch
        padded to it. Under CUDA, for a model that convolves (:attr:`pad_shapes`), the batches are
        of equal size and padded up to a power of two (at most :attr:`batch_size`): onnxruntime's
        cuDNN convolutions redo their setup whenever a pass's input shape differs from the
        previous one's, which costs more than the padded rows (measured on an H100 with
        ``cost.py padding``: a CNN's sweep of 755- and 245-row batches 0.091 s, of two 512-row
        ones 0.026 s), and a search's shrinking query sets then fall into few shapes.
        """
        if self.fixed_batch:
            step = self.fixed_batch
            return [(s, min(s + step, n), step) for s in range(0, n, step)]
        if not self.pad_shapes:
            step = self.batch_size
            return [(s, min(s + step, n), min(s + step, n) - s) for s in range(0, n, step)]
        step = -(-n // -(-n // self.batch_size))  # equal batches
        plan = []
        for start in range(0, n, step):
            rows = min(step, n - start)
            power_of_two = 1 << (rows - 1).bit_length()
            plan.append((start, start + rows, min(power_of_two, self.batch_size)))
        return plan

    def _in_model_layout(self, feeds: dict) -> dict:
        """Rows-first feeds with each batched input's rows moved to its batch axis."""
        return {k: (np.ascontiguousarray(np.moveaxis(v, 0, self._axis[k]))
                    if self._axis.get(k) else v) for k, v in feeds.items()}

    def _run_batch(self, names: list[str], batch: dict, rows: int) -> list:
        """One ``session.run``, timed and counted (``rows``: the real rows in it, padding left out);
        inputs and outputs rows first."""
        try:
            t0 = time.perf_counter()
            res = self.session.run(names, self._in_model_layout(batch))
            res = [np.moveaxis(r, self._out_axis[n], 0) if self._out_axis.get(n) else r
                   for n, r in zip(names, res)]
            self.forward_seconds += time.perf_counter() - t0
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"{self.name}: forward pass failed: {first[:300]}") from None
        self.forward_rows += rows
        return res

    def predict(self, feeds: dict[str, np.ndarray], static: dict | None = None) -> Prediction:
        """Labels (and scores when the model gives them) for every row of ``feeds``."""
        (out,) = self.run(feeds, static=static)
        return self.interpret(out)

    def interpret(self, out: np.ndarray) -> Prediction:
        """Turn the raw prediction output into a :class:`Prediction`."""
        if self.output_kind == "labels":
            return Prediction(np.asarray(out).reshape(-1).astype(np.int64), None)
        scores = self.score_rows(out)
        labels = np.zeros(len(scores), dtype=np.int64)  # derived later for embeddings, regression
        if not argmax_rows(scores, labels):
            raise ModelError(f"{self.name}: the model's outputs contain NaN or Inf")
        if self.output_kind not in ("logits", "probabilities"):
            labels[:] = 0
        return Prediction(labels, scores)

    def score_rows(self, out: np.ndarray) -> np.ndarray:
        """A float prediction output as contiguous float32 rows, shape (n, k); an empty one is a
        ModelError (NaN and Inf are checked where the rows are read)."""
        scores = np.ascontiguousarray(out, dtype=np.float32)
        if scores.ndim != 2:
            scores = scores.reshape(len(scores), -1)
        if scores.shape[1] == 0:
            raise ModelError(f"{self.name}: the prediction output {self.output_name!r} is empty")
        return scores

    def describe(self) -> dict:
        """Provider, inputs, prediction output and batching, for reports."""
        return {"provider": self.provider, "output": self.output_name, "output_kind": self.output_kind,
                "batch_dependent": self.batch_dependent, "batch_size": self.batch_size,
                "fixed_batch": self.fixed_batch,
                "inputs": [{"name": i.name, "dtype": str(i.dtype), "shape": list(i.shape)}
                           for i in self.inputs]}
