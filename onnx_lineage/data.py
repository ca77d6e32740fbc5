"""Data sets: ``.npy`` / ``.npz`` files and the built-in handwritten digits.

In an ``.npz``, an array named after a model input feeds that input; an array ``x`` feeds the first
input that no named array feeds; ``y`` holds labels (optional); arrays that no input asks for are
ignored and reported. Each model of a pair takes what it declares.

An array is written in its input's own layout: rows on the input's batch axis
(:mod:`onnx_lineage.model.inputs`), axis 0 for most models, axis 1 for a recurrent state
``[layers, batch, hidden]``. An input without a batch axis (a sample rate, a temperature) takes
its array whole, the same value for every row. A recurrent state the data does not give starts at
zero, and the run says so. :func:`arrange` puts a file in that shape for a pair of models: rows
first, one count of them.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onnx_lineage import memory
from onnx_lineage.errors import DataError
from onnx_lineage.model.graph import MAX_TENSOR_ELEMENTS
from onnx_lineage.model.inputs import declared_inputs

#: Largest data file, and largest total of its arrays once decompressed, in bytes; override with
#: the environment variable ``ONNX_LINEAGE_MAX_DATA_BYTES``. The run's memory budget
#: (:mod:`onnx_lineage.memory`) caps the arrays too.
MAX_DATA_BYTES = int(os.environ.get("ONNX_LINEAGE_MAX_DATA_BYTES", 2 * 1024**3))
#: Most arrays in one ``.npz``.
MAX_DATA_ARRAYS = 1024
#: The source name of the built-in digits.
BUILTIN = "builtin:digits"
#: Ops that pass token ids on unchanged in value, between an input and the embedding it reads.
_ID_PASSING = frozenset({"Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})


@dataclass(frozen=True)
class Dataset:
    """Arrays by name, labels, and where they came from.

    Attributes
    ----------
    arrays : dict of str to ndarray
        Input arrays, all with the same first dimension n after :func:`arrange` (as read from
        a file, in the layout of the inputs they feed).
    y : ndarray of shape (n,), int64, or None
        Labels.
    source : str
        File name, or ``builtin:digits``.
    notes : tuple of str
        What :func:`arrange` did that a report should say (a state started at zero).
    fixed : dict of str to ndarray
        Arrays for inputs without a batch axis, given whole to every row.
    arranged : bool
        Rows first (:func:`arrange` ran).
    started : tuple of str
        Arrays :func:`arrange` made for recurrent states the file left out (zeros): a model that
        does not read them is not said to ignore them.
    """

    arrays: dict
    y: np.ndarray | None = None
    source: str = ""
    notes: tuple = field(default_factory=tuple)
    fixed: dict = field(default_factory=dict)
    arranged: bool = False
    started: tuple = ()

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 1

    def subset(self, idx: np.ndarray) -> "Dataset":
        """Rows ``idx`` of every array (and of ``y``)."""
        return dataclasses.replace(self, arrays={k: v[idx] for k, v in self.arrays.items()},
                                   y=None if self.y is None else self.y[idx])


def digits() -> Dataset:
    """scikit-learn's 1,797 handwritten digits, 8x8, scaled to [0, 1]: ``x`` (n, 64) float32, ``y``."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return Dataset({"x": (d.data / 16.0).astype(np.float32)}, d.target.astype(np.int64),
                   BUILTIN)


def described(data: Dataset) -> str:
    """Where ``data`` came from, for messages: its file name, or the built-in digits and why."""
    if data.source == BUILTIN:
        return "the built-in digits (used because no --data was given: 64 pixels in [0, 1] a row)"
    return data.source or "the data"


def load_data(path: str | Path) -> Dataset:
    """Read a ``.npy`` or ``.npz`` data file (no pickles)."""
    p = Path(path)
    if str(path) == BUILTIN:
        return digits()
    if not p.is_file():
        raise DataError(f"{p}: no such data file")
    if p.stat().st_size > MAX_DATA_BYTES:
        raise DataError(f"{p}: larger than {MAX_DATA_BYTES} bytes (ONNX_LINEAGE_MAX_DATA_BYTES)")
    try:
        _check_sizes(p)
        if p.suffix == ".npy":
            arrays = {"x": np.load(p, allow_pickle=False)}
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        else:
            raise DataError(f"{p}: data must be a .npy or .npz file")
    except DataError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{p}: not a readable numpy file ({str(exc).splitlines()[0][:200]})") from None
    y = arrays.pop("y", None)
    if not arrays:
        raise DataError(f"{p}: no input arrays (only 'y')")
    for k, a in arrays.items():
        if a.dtype.kind not in "fiub":
            raise DataError(f"{p}: array {k!r} has dtype {a.dtype}, expected numbers")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise DataError(f"{p}: array {k!r} contains NaN or Inf")
        if a.size == 0:
            raise DataError(f"{p}: array {k!r} is empty")
    if y is not None:
        if y.ndim != 1 or y.dtype.kind not in "iub":
            raise DataError(f"{p}: 'y' must be integer labels, one per row, got shape {y.shape} "
                            f"dtype {y.dtype}")
        y = y.astype(np.int64)
    return Dataset(arrays, y, p.name)


def check_labels(data: Dataset, classes: int | None, model_name: str) -> None:
    """Refuse labels that a model of ``classes`` classes cannot predict.

    Parameters
    ----------
    data : Dataset
        Its ``y`` (n,), int64, if any, is checked.
    classes : int or None
        The width of the model's class scores; None (labels only, embeddings, regression):
        nothing to check against.

    Raises
    ------
    DataError
        A label below 0 or at least ``classes``: one line naming the range and how many.
    """
    y = data.y
    if y is None or classes is None or y.size == 0:
        return
    out = (y < 0) | (y >= classes)
    if out.any():
        raise DataError(f"{data.source or 'data'}: labels run from {int(y.min())} to "
                        f"{int(y.max())}, but {model_name} predicts {classes} classes "
                        f"(0-{classes - 1}): {int(out.sum())} of {y.size} labels are out of its "
                        "range")


def arrange(data: Dataset, models: list[tuple[str, list, set]]) -> Dataset:
    """``data`` in the shape the analyses use: the arrays of batched inputs rows first, one count
    of rows, arrays of inputs without a batch axis in :attr:`Dataset.fixed`, absent recurrent
    states as zeros (noted). A no-op on an arranged dataset.

    Parameters
    ----------
    data : Dataset
    models : list of (name, list of InputSpec, set of str)
        Each model's name, inputs and state inputs
        (:func:`onnx_lineage.model.inputs.declared_inputs`); the first model that reads an array
        decides its layout.

    Raises
    ------
    DataError
        An input nothing can feed, an array that does not fit its input's layout, or batched
        arrays that disagree on the number of rows; the message names the input.
    """
    if data.arranged:
        return data
    arrays, fixed, notes = dict(data.arrays), dict(data.fixed), list(data.notes)
    rows: dict[str, int] = {}  # array -> rows
    decided: set[str] = set()
    states: dict[str, object] = {}
    for name, inputs, state in models:
        src = sources(inputs, data, name, optional=state)
        for spec in inputs:
            key = src.get(spec.name)
            if key is None:
                states.setdefault(spec.name, spec)
                continue
            if key in decided:
                continue
            decided.add(key)
            a = arrays.pop(key)
            if spec.batch_axis is None:
                fixed[key] = a
                continue
            k = spec.batch_axis
            if k:
                if a.ndim != len(spec.shape):
                    shown = ", ".join("batch" if i == k else ("?" if d is None else str(d))
                                      for i, d in enumerate(spec.shape))
                    raise DataError(f"{name}: input {spec.name!r} holds its rows on axis {k} "
                                    f"([{shown}]); its array {key!r} must have that layout, "
                                    f"got shape {a.shape}")
                a = np.moveaxis(a, k, 0)
            elif a.ndim == 0:
                raise DataError(f"{name}: input {spec.name!r} takes rows; its array {key!r} is "
                                "a single value")
            arrays[key] = a
            rows[f"{key!r} (input {spec.name!r})"] = len(a)
    if len(set(rows.values())) > 1:
        shown = ", ".join(f"{k}: {v}" for k, v in rows.items())
        raise DataError(f"{data.source or 'data'}: the arrays disagree on the number of rows "
                        f"({shown})")
    n = next(iter(rows.values()), len(data.y) if data.y is not None else 1)
    if n == 0:
        raise DataError(f"{data.source or 'data'}: no rows")
    if data.y is not None and len(data.y) != n:
        raise DataError(f"{data.source or 'data'}: 'y' holds {len(data.y)} labels for {n} rows")
    for name, spec in states.items():
        arrays[name] = np.zeros((n,) + tuple(spec.row_shape), spec.dtype)
        notes.append(f"input {name!r} (a recurrent state, shape {list(spec.row_shape)} per row) "
                     "started at zero: the data has no array for it")
    for k in list(arrays):
        if k not in decided and k not in states and (arrays[k].ndim == 0 or len(arrays[k]) != n):
            del arrays[k]  # read by no input, and of another length: it cannot be sampled
    return dataclasses.replace(data, arrays=arrays, fixed=fixed, notes=tuple(notes),
                               arranged=True, started=tuple(states))


def _check_sizes(p: Path) -> None:
    """Refuse a data file whose arrays, as their ``.npy`` headers declare them, hold too many
    elements or bytes, before any array is read (a few MB of deflated zeros can declare GiBs)."""
    if p.suffix == ".npy":
        with open(p, "rb") as f:
            headers = [("x", _header(f))]
    elif p.suffix == ".npz":
        with zipfile.ZipFile(p) as z:
            members = [i for i in z.infolist() if i.filename.endswith(".npy")]
            if len(members) > MAX_DATA_ARRAYS:
                raise DataError(f"{p}: {len(members)} arrays, over the limit of {MAX_DATA_ARRAYS}")
            headers = []
            for info in members:
                with z.open(info) as f:
                    headers.append((info.filename[:-4], _header(f)))
    else:
        return
    total = 0
    for name, (shape, dtype) in headers:
        count = int(np.prod(shape, dtype=np.float64))
        if count > MAX_TENSOR_ELEMENTS:
            raise DataError(f"{p}: array {name!r} declares {count} elements, over the limit of "
                            f"{MAX_TENSOR_ELEMENTS} (ONNX_LINEAGE_MAX_TENSOR_ELEMENTS)")
        total += count * dtype.itemsize
    if total > MAX_DATA_BYTES:
        raise DataError(f"{p}: its arrays declare {memory.describe(total)} once decompressed, "
                        f"over the limit of {memory.describe(MAX_DATA_BYTES)} "
                        "(ONNX_LINEAGE_MAX_DATA_BYTES)")
    try:
        memory.check(total, f"{p.name}: its arrays")
    except memory.MemoryBudgetError as exc:
        raise DataError(str(exc)) from None


def _header(f) -> tuple[tuple, np.dtype]:
    """Shape and dtype from a ``.npy`` header, reading nothing past it."""
    version = np.lib.format.read_magic(f)
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read(f)
    return shape, dtype


def arrange_for(data: Dataset, *models) -> Dataset:
    """:func:`arrange` for loaded models (anything with ``name`` and ``proto``), in order; token
    ids are checked against the embedding tables they index (:func:`check_token_ids`)."""
    declared = [(m.name, *declared_inputs(m.proto)) for m in models]
    out = arrange(data, declared)
    for m, (name, inputs, state) in zip(models, declared):
        check_token_ids(m.proto.graph, out, name, sources(inputs, out, name, optional=state))
    return out


#: Ops that gather rows of a table, by the name of their axis attribute (onnxruntime's
#: GatherBlockQuantized: a block-quantized table, whose rows are its first dimension).
_GATHER_AXIS = {"axis": "Gather", "gather_axis": "GatherBlockQuantized"}


def embedding_sizes(graph) -> dict[str, int]:
    """Graph inputs that index an embedding table directly: input name -> rows of the smallest
    table it indexes (a ``Gather`` or ``GatherBlockQuantized`` on axis 0 of an initializer,
    reached through casts and reshapes)."""
    tables = {t.name: list(t.dims) for t in graph.initializer}
    readers: dict[str, list] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, i))
    sizes: dict[str, int] = {}
    for inp in graph.input:
        todo, seen = [inp.name], set()
        while todo:
            value = todo.pop()
            if value in seen:
                continue
            seen.add(value)
            for node, i in readers.get(value, []):
                axis = next((a.i for a in node.attribute if a.name in _GATHER_AXIS), 0)
                if (node.op_type in _GATHER_AXIS.values() and i == 1 and node.input[0] in tables
                        and axis == 0 and tables[node.input[0]]):
                    rows = int(tables[node.input[0]][0])
                    sizes[inp.name] = min(rows, sizes.get(inp.name, rows))
                elif node.op_type in _ID_PASSING and i == 0:
                    todo.extend(node.output)
    return sizes


def check_token_ids(graph, data: Dataset, model_name: str, src: dict[str, str]) -> None:
    """Refuse token ids outside the embedding tables they index, before anything runs.

    Parameters
    ----------
    graph : onnx.GraphProto
    data : Dataset
        Arranged (:func:`arrange`).
    src : dict of input name to array name
        :func:`sources` of the model's inputs.

    Raises
    ------
    DataError
        An id below 0 or at least the table's rows: one line naming the input, the array, the
        vocabulary and where the data came from.
    """
    for name, rows in embedding_sizes(graph).items():
        key = src.get(name)
        if key is None:
            continue
        arr = data.arrays.get(key, data.fixed.get(key))
        if arr is None or arr.size == 0 or (arr.dtype.kind == "f"
                                            and not np.all(np.equal(np.mod(arr, 1), 0))):
            continue  # fractional values: :func:`fit` says so
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= rows:
            bad = int(np.count_nonzero((arr < 0) | (arr >= rows)))
            raise DataError(f"{model_name}: input {name!r} indexes an embedding of {rows} rows "
                            f"(token ids 0-{rows - 1}), but {described(data)} gives it ids "
                            f"from {lo:g} to {hi:g} in {key!r} ({bad} of {arr.size} out of "
                            "range)")


def sources(inputs, data: Dataset, model_name: str = "model",
            optional: set = frozenset()) -> dict[str, str]:
    """Which data array feeds each model input (see the module docstring for the rules).

    Parameters
    ----------
    optional : set of str
        Inputs that may go without an array (recurrent states, which start at zero).

    Returns
    -------
    dict of input name to array name
    """
    have = set(data.arrays) | set(data.fixed)
    src: dict[str, str] = {}
    for spec in inputs:
        if spec.name in have:
            src[spec.name] = spec.name
    for spec in inputs:
        if (spec.name not in src and spec.name not in optional and "x" in have
                and "x" not in src.values()):
            src[spec.name] = "x"
    missing = [s for s in inputs if s.name not in src and s.name not in optional]
    if missing:
        shown = ", ".join(sorted(have)) or "nothing"
        first = missing[0]
        if first.batch_axis is None:
            raise DataError(f"{model_name}: no data for input {first.name!r} ({first.dtype}, "
                            f"shape {list(first.shape)}, no batch axis: one value for every row); "
                            f"give it as an array named {first.name!r} (arrays in "
                            f"{described(data)}: {shown})")
        fed = [s.name for s in inputs if s.name in src]
        what = ", ".join(f"{s.name!r} ({s.dtype}, shape "
                         f"[{', '.join('?' if d is None else str(d) for d in s.shape)}])"
                         for s in missing)
        raise DataError(f"{model_name}: no data for input(s) {what}; arrays in "
                        f"{described(data)}: {shown}"
                        + (f" (feeding {', '.join(map(repr, fed))})" if fed else "")
                        + ("; give a --data file with an array named after each input"
                           if data.source == BUILTIN
                           else "; name arrays after inputs, or use 'x'"))
    return src


def feeds_for(inputs, data: Dataset, model_name: str = "model") -> tuple[dict, list[str]]:
    """Map a dataset onto a model's inputs.

    Parameters
    ----------
    inputs : list of InputSpec
        The model's inputs.
    data : Dataset
        Arranged (:func:`arrange`); a dataset that is not is arranged for these inputs alone.

    Returns
    -------
    feeds : dict of input name to ndarray
        Rows first, cast to the input's dtype; reshaped when a row's element count matches the
        input's fixed row shape (e.g. 64 pixels into (1, 8, 8)). Inputs without a batch axis
        get their value whole.
    ignored : list of str
        Arrays that no input asked for.
    """
    data = arrange(data, [(model_name, inputs, set())])
    src = sources(inputs, data, model_name)
    out = {spec.name: fit(spec, data.fixed[src[spec.name]] if spec.batch_axis is None
                          else data.arrays[src[spec.name]], model_name, described(data))
           for spec in inputs}
    return out, sorted((set(data.arrays) | set(data.fixed)) - set(src.values())
                       - set(data.started))


def fit(spec, arr: np.ndarray, model_name: str = "model", source: str = "the data") -> np.ndarray:
    """``arr`` (n, ...) cast and reshaped to what input ``spec`` expects, or a DataError
    naming ``source``, where the array came from (:func:`described`)."""
    want = spec.row_shape
    if spec.batch_axis is None:  # one value for every row: the whole input
        if arr.shape != tuple(want) and all(isinstance(w, int) for w in want) \
                and arr.size == int(np.prod(want)):
            arr = arr.reshape(want)
        elif len(arr.shape) != len(want) or any(w is not None and w != h
                                                for w, h in zip(want, arr.shape)):
            raise DataError(f"{model_name}: input {spec.name!r} has no batch axis and takes one "
                            f"value of shape {tuple('?' if w is None else w for w in want)}, "
                            f"but the array in {source} has shape {arr.shape}")
        return np.array(arr, dtype=spec.dtype, order="C")  # a 0-d value stays 0-d
    have = arr.shape[1:]
    if len(want) == len(have) and all(w is None or w == h for w, h in zip(want, have)):
        pass
    elif all(isinstance(w, int) for w in want) and int(np.prod(want)) == int(np.prod(have)):
        arr = arr.reshape((len(arr),) + tuple(want))
    else:
        shown = tuple("?" if w is None else w for w in want)
        raise DataError(f"{model_name}: input {spec.name!r} expects rows of shape {shown}, "
                        f"but rows in {source} have shape {tuple(have)}")
    if arr.dtype != spec.dtype:
        if spec.dtype.kind in "iu" and arr.dtype.kind == "f":
            if not np.all(np.equal(np.mod(arr, 1), 0)):
                raise DataError(f"{model_name}: input {spec.name!r} expects integers "
                                f"({spec.dtype}), but values in {source} are fractional "
                                f"{arr.dtype}")
        arr = arr.astype(spec.dtype)
    return np.ascontiguousarray(arr)
