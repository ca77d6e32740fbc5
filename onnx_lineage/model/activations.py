"""What a model computes inside: the values of chosen intermediate tensors on the data, taken
from onnxruntime by making them outputs of the graph for one session.

Used by the function-level test (:mod:`onnx_lineage.evidence.function`): a hidden unit's
pre-activation on the same inputs does not change under any re-parametrisation of the layers
around it (a permutation of the units, a rotation of the residual stream, a per-unit rescaling
folded into the readers), while its weights do.
"""

from __future__ import annotations

import contextlib

import numpy as np
import onnx

from onnx_lineage import memory
from onnx_lineage.data import Dataset, feeds_for
from onnx_lineage.model.footprint import session_sizes
from onnx_lineage.model.stages import staged_runner

#: Most samples (rows times positions) kept per tensor: the positions of every row, evenly
#: thinned (fixed indices, no generator: the same samples for every seed).
MAX_SAMPLES = 4096


@contextlib.contextmanager
def _exposed(model: onnx.ModelProto, names: list[str]):
    """``model`` with ``names`` added to its graph outputs while the block runs (removed after:
    the caller's model is left as it was)."""
    outputs = {o.name for o in model.graph.output}
    added = [n for n in names if n not in outputs]
    for n in added:
        model.graph.output.append(onnx.ValueInfoProto(name=n))
    try:
        yield model
    finally:
        for _ in added:
            model.graph.output.pop()


def unit_values(model: onnx.ModelProto, names: list[str], data: Dataset, *, device: str = "cpu",
                name: str = "model", samples: int = MAX_SAMPLES) -> dict[str, np.ndarray]:
    """The values of tensors ``names`` on ``data``, one row per sample and one column per unit.

    Parameters
    ----------
    model : onnx.ModelProto
        Its weights as loaded (read in place); left unchanged.
    names : list of str
        Intermediate tensors whose last axis holds the units (a dense layer's output, of shape
        ``(rows, ..., units)``).
    data : Dataset
        The rows, arranged for the model or not.
    samples : int
        Most samples kept per tensor: a tensor of shape ``(rows, positions, units)`` gives
        ``rows * positions`` samples; the rows run are evenly spaced ones, as few as give this
        many samples (all of them where they give fewer), and the samples are thinned evenly.

    Returns
    -------
    dict of name to ndarray of shape (samples, units), float32
    """
    with _exposed(model, names) as exposed:
        # a few rows, run once: batches of a bounded size rather than a probe session
        # a model too large for one session runs a stage at a time
        runner = staged_runner(exposed, session_sizes(exposed), device=device, name=name,
                               probe=False)
        feeds, _ = feeds_for(runner.inputs, data, name)
        first = runner.run(runner.take(feeds, np.arange(1)), outputs=list(names))
        positions = max(int(first[0].size // max(first[0].shape[-1], 1)), 1)
        rows = min(len(data), -(-samples // positions))
        memory.check(4 * rows * sum(v.size for v in first),
                     f"{name}: its hidden units' values on {rows} rows")
        pick = np.linspace(0, len(data) - 1, rows).astype(np.int64)
        # all of them again: one row more to run costs less than joining the arrays
        values = runner.run(runner.take(feeds, pick), outputs=list(names))
    out = {}
    for n, v in zip(names, values):
        flat = np.asarray(v, np.float32).reshape(-1, v.shape[-1])
        if flat.shape[0] > samples:
            flat = flat[np.linspace(0, flat.shape[0] - 1, samples).astype(np.int64)]
        out[n] = np.ascontiguousarray(flat)
    return out
