"""Inputs as models declare them: which axis holds the rows, which inputs have none, which carry
a recurrent state.

Most models batch every input on axis 0. Others do not: a recurrent state ``[layers, batch,
hidden]`` batches on axis 1, a sample rate or a temperature is one scalar for every row. The batch
dimension is found from the symbolic names exporters give dimensions (``batch``), the same name
on every input that has rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

#: ONNX element types as numpy dtypes (the types a data file can feed).
_NUMPY = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64,
          onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.INT64: np.int64,
          onnx.TensorProto.INT32: np.int32, onnx.TensorProto.INT8: np.int8,
          onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.BOOL: np.bool_}


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, numpy dtype, shape (``None`` for symbolic dimensions), and the axis
    that holds its rows (``None``: the input has no batch axis, one value serves every row)."""

    name: str
    dtype: np.dtype
    shape: tuple
    batch_axis: int | None = 0

    @property
    def fixed_batch(self) -> int | None:
        """The batch size if the batch dimension is a fixed number, else None."""
        k = self.batch_axis
        if k is not None and len(self.shape) > k and isinstance(self.shape[k], int) \
                and self.shape[k] > 0:
            return self.shape[k]
        return None

    @property
    def row_shape(self) -> tuple:
        """Shape of one row (every dimension but the batch axis; the whole shape without one)."""
        if self.batch_axis is None:
            return tuple(self.shape)
        return tuple(self.shape[:self.batch_axis] + self.shape[self.batch_axis + 1:])


def batch_axes(shapes: list[tuple], outputs: list[tuple] = ()) -> list[int | None]:
    """Which axis of each input holds the rows, from the inputs' declared shapes.

    Parameters
    ----------
    shapes : list of tuple
        Per input, each dimension as an int (fixed), a str (a named symbolic dimension) or None
        (unnamed symbolic), as onnxruntime reports them.
    outputs : list of tuple
        The outputs' declared shapes, alike: an input that one mirrors is a recurrent state.

    Returns
    -------
    list of int or None
        The batch dimension is the symbolic name that the most inputs share among those that
        some input has on axis 0 (ties: the one more inputs have first). An input holding it
        batches on that axis (a recurrent state ``[layers, batch, hidden]`` on axis 1); one
        without it batches on axis 0 if that axis is symbolic, and has no batch axis (None) if
        not. Without such a name (a fixed batch, ``[1, seq]``, or dimensions without names),
        every input but a scalar batches on axis 0, except one whose axis 0 is fixed and that has
        exactly one unnamed dimension, where axis 0 is above 1 or an output mirrors the input (a
        state): ``[2, ?, 128]`` and a state ``[1, ?, 16]`` batch on that dimension, a token
        input ``[1, ?]`` on axis 0. In a model of fixed batch ``B`` (its first input's axis 0), a
        state that an output mirrors, whose axis 0 is not ``B`` and one other axis is, batches on
        that axis (``[2, 1, 128]`` beside an input ``[1, 576]``).
    """
    name = _name(shapes)
    fixed = shapes[0][0] if shapes and shapes[0] and isinstance(shapes[0][0], int) else None
    axes = []
    for shape in shapes:
        unnamed = [k for k, d in enumerate(shape) if d is None]
        if name is not None and name in shape:
            axes.append(shape.index(name))
        elif name is None and shape and isinstance(shape[0], int) and len(unnamed) == 1 \
                and (shape[0] > 1 or tuple(shape) in {tuple(o) for o in outputs}):
            axes.append(unnamed[0])
        elif (name is None and shape and fixed is not None and shape[0] != fixed
              and not unnamed and shape.count(fixed) == 1
              and tuple(shape) in {tuple(o) for o in outputs}):
            axes.append(shape.index(fixed))  # a state [2, 1, 128] of a model of batch 1
        elif shape and (name is None or not isinstance(shape[0], int)):
            axes.append(0)
        else:
            axes.append(None)
    return axes


def _name(shapes: list[tuple]) -> str | None:
    """The symbolic name shared by the most inputs among those that some input has first."""
    counts: dict[str, list[int]] = {}
    for shape in shapes:
        for d in dict.fromkeys(d for d in shape if isinstance(d, str)):
            c = counts.setdefault(d, [0, 0])
            c[0] += 1
            c[1] += int(shape[0] == d)
    first = [d for d in counts if counts[d][1]]
    return max(first, key=lambda d: tuple(counts[d]), default=None)


def batch_name(shapes: list[tuple], inputs: list[InputSpec]) -> str | None:
    """The symbolic name of the batch dimension (None: unnamed, or a fixed batch)."""
    for shape, spec in zip(shapes, inputs):
        if spec.batch_axis is not None and isinstance(shape[spec.batch_axis], str):
            return shape[spec.batch_axis]
    return None


def state_inputs(shapes: list[tuple], inputs: list[InputSpec], outputs: list[tuple]) -> set[str]:
    """Inputs that carry a recurrent state: floating-point, not the first input, batched, every
    other dimension fixed, and declared with exactly the shape of one of the model's outputs
    (the state the model returns for the next call). Absent from the data, they start at zero."""
    found = set()
    for k, (shape, spec) in enumerate(zip(shapes, inputs)):
        if (k and spec.dtype.kind == "f" and spec.batch_axis is not None
                and all(isinstance(d, int) for d in spec.row_shape)
                and any(tuple(shape) == tuple(o) for o in outputs)):
            found.add(spec.name)
    return found


def input_specs(names: list[str], dtypes: list, shapes: list[tuple],
                outputs: list[tuple]) -> tuple[list[InputSpec], set[str]]:
    """:class:`InputSpec` of each input, with its batch axis (:func:`batch_axes`), and the state
    inputs among them (:func:`state_inputs`).

    Parameters
    ----------
    names, dtypes : list
        Per input, its name and numpy dtype.
    shapes, outputs : list of tuple
        The inputs' and the outputs' declared shapes (int, str for a named symbolic dimension,
        None for an unnamed one).
    """
    specs = [InputSpec(name, np.dtype(dtype),
                       tuple(d if isinstance(d, int) else None for d in shape), axis)
             for name, dtype, shape, axis in zip(names, dtypes, shapes,
                                                 batch_axes(shapes, outputs))]
    return specs, state_inputs(shapes, specs, outputs)


def declared_inputs(model: onnx.ModelProto) -> tuple[list[InputSpec], set[str]]:
    """The data inputs of a model (graph inputs without an initializer), read from the graph
    without a session (:func:`input_specs`)."""
    inits = {t.name for t in model.graph.initializer}

    def shape_of(vi) -> tuple:
        return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                     for d in vi.type.tensor_type.shape.dim)

    values = [vi for vi in model.graph.input if vi.name not in inits]
    return input_specs([vi.name for vi in values],
                       [_NUMPY.get(vi.type.tensor_type.elem_type, np.float32) for vi in values],
                       [shape_of(vi) for vi in values], [shape_of(o) for o in model.graph.output])
