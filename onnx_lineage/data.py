"""Data sets: ``.npy`` / ``.npz`` files and the built-in handwritten digits.

In an ``.npz``, an array named after a model input feeds that input; an array ``x`` feeds the first
input that no named array feeds; ``y`` holds labels (optional); arrays that no input asks for are
ignored and reported. Each model of a pair takes what it declares.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onnx_lineage import memory
from onnx_lineage.errors import DataError
from onnx_lineage.model.graph import MAX_TENSOR_ELEMENTS

#: Largest data file, and largest total of its arrays once decompressed, in bytes; override with
#: the environment variable ``ONNX_LINEAGE_MAX_DATA_BYTES``. The run's memory budget
#: (:mod:`onnx_lineage.memory`) caps the arrays too.
MAX_DATA_BYTES = int(os.environ.get("ONNX_LINEAGE_MAX_DATA_BYTES", 2 * 1024**3))
#: Most arrays in one ``.npz``.
MAX_DATA_ARRAYS = 1024


@dataclass(frozen=True)
class Dataset:
    """Arrays by name, labels, and where they came from.

    Attributes
    ----------
    arrays : dict of str to ndarray
        Input arrays, all with the same first dimension n.
    y : ndarray of shape (n,), int64, or None
        Labels.
    source : str
        File name, or ``builtin:digits``.
    """

    arrays: dict
    y: np.ndarray | None = None
    source: str = ""
    notes: tuple = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def subset(self, idx: np.ndarray) -> "Dataset":
        """Rows ``idx`` of every array (and of ``y``)."""
        return Dataset({k: v[idx] for k, v in self.arrays.items()},
                       None if self.y is None else self.y[idx], self.source, self.notes)


def digits() -> Dataset:
    """scikit-learn's 1,797 handwritten digits, 8x8, scaled to [0, 1]: ``x`` (n, 64) float32, ``y``."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return Dataset({"x": (d.data / 16.0).astype(np.float32)}, d.target.astype(np.int64),
                   "builtin:digits")


def load_data(path: str | Path) -> Dataset:
    """Read a ``.npy`` or ``.npz`` data file (no pickles)."""
    p = Path(path)
    if str(path) == "builtin:digits":
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
    n = {len(a) if a.ndim else 0 for a in arrays.values()}
    if len(n) != 1:
        raise DataError(f"{p}: arrays have different numbers of rows {sorted(n)}")
    rows = n.pop()
    if rows == 0:
        raise DataError(f"{p}: the arrays are empty")
    for k, a in arrays.items():
        if a.dtype.kind not in "fiub":
            raise DataError(f"{p}: array {k!r} has dtype {a.dtype}, expected numbers")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise DataError(f"{p}: array {k!r} contains NaN or Inf")
    if y is not None:
        if y.ndim != 1 or len(y) != rows or y.dtype.kind not in "iub":
            raise DataError(f"{p}: 'y' must be {rows} integer labels, got shape {y.shape} "
                            f"dtype {y.dtype}")
        y = y.astype(np.int64)
    return Dataset(arrays, y, p.name)


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


def sources(inputs, data: Dataset, model_name: str = "model") -> dict[str, str]:
    """Which data array feeds each model input (see the module docstring for the rules).

    Returns
    -------
    dict of input name to array name
    """
    src: dict[str, str] = {}
    for spec in inputs:
        if spec.name in data.arrays:
            src[spec.name] = spec.name
    for spec in inputs:
        if spec.name not in src and "x" in data.arrays and "x" not in src.values():
            src[spec.name] = "x"
    missing = [s.name for s in inputs if s.name not in src]
    if missing:
        have = ", ".join(sorted(data.arrays)) or "nothing"
        raise DataError(f"{model_name}: no data for input(s) {', '.join(missing)} "
                        f"(the data has {have}; name arrays after inputs, or use 'x')")
    return src


def feeds_for(inputs, data: Dataset, model_name: str = "model") -> tuple[dict, list[str]]:
    """Map a dataset onto a model's inputs.

    Parameters
    ----------
    inputs : list of InputSpec
        The model's inputs.
    data : Dataset

    Returns
    -------
    feeds : dict of input name to ndarray
        Cast to the input's dtype; reshaped when a row's element count matches the input's
        fixed row shape (e.g. 64 pixels into (1, 8, 8)).
    ignored : list of str
        Arrays that no input asked for.
    """
    src = sources(inputs, data, model_name)
    out = {spec.name: fit(spec, data.arrays[src[spec.name]], model_name) for spec in inputs}
    return out, sorted(set(data.arrays) - set(src.values()))


def fit(spec, arr: np.ndarray, model_name: str = "model") -> np.ndarray:
    """``arr`` (n, ...) cast and reshaped to what input ``spec`` expects, or a DataError."""
    want = spec.row_shape
    have = arr.shape[1:]
    if len(want) == len(have) and all(w is None or w == h for w, h in zip(want, have)):
        pass
    elif all(isinstance(w, int) for w in want) and int(np.prod(want)) == int(np.prod(have)):
        arr = arr.reshape((len(arr),) + tuple(want))
    else:
        shown = tuple("?" if w is None else w for w in want)
        raise DataError(f"{model_name}: input {spec.name!r} expects rows of shape {shown}, "
                        f"the data has {tuple(have)}")
    if arr.dtype != spec.dtype:
        if spec.dtype.kind in "iu" and arr.dtype.kind == "f":
            if not np.all(np.equal(np.mod(arr, 1), 0)):
                raise DataError(f"{model_name}: input {spec.name!r} expects integers "
                                f"({spec.dtype}), the data has fractional {arr.dtype} values")
        arr = arr.astype(spec.dtype)
    return np.ascontiguousarray(arr)
