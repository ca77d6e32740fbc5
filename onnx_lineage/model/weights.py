"""Weights read in place: an ONNX file's tensors memory-mapped, never copied whole.

A model's weights are nearly all of its bytes. :func:`skeleton` reads the protobuf wire format
of a ``.onnx`` file through a memory map and returns the model with every main-graph initializer
that holds ``raw_data`` turned into an external-data reference to its own byte range in the file
(``location`` is the file's absolute path): the graph, a few kilobytes, is parsed; the weights
stay on disk until a page of them is read (files under :data:`MAP_ABOVE` are read whole
instead). External data files beside the model are referenced the same way. :func:`tensor_array`
gives any tensor's values, a read-only view of the mapped file for external ones;
:func:`external_tensors` lists a model's mapped tensors, which the runner hands to onnxruntime as
external initializers (no serialized copy of the weights).

The scan checks every length against the bytes that remain; anything it cannot follow makes
:func:`skeleton` return None, and the caller falls back to the protobuf parser.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

from onnx_lineage.memory import spilled_maps

#: Tensors smaller than this stay inline in the skeleton (their bytes are copied).
INLINE_BYTES = 4096
#: Files at least this large are memory-mapped; smaller ones are read whole (a map holds a file
#: descriptor for as long as any view of it lives, and a folder of a thousand small models
#: would hold a thousand).
MAP_ABOVE = 64 * 1024**2
#: Files kept open (mapped or read) for reuse, most recently used last.
KEPT_FILES = 64

_FILES: OrderedDict = OrderedDict()
_LOCK = threading.Lock()


def mapped(path: str) -> np.ndarray:
    """The whole file at absolute ``path`` as a read-only uint8 array: a memory map for large
    files, the bytes read for small ones; one per version of the file (path, inode, size and
    modification time), reused while it is among the :data:`KEPT_FILES` last used."""
    st = os.stat(path)
    key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
    with _LOCK:
        arr = _FILES.pop(key, None)
        if arr is None:
            if st.st_size < MAP_ABOVE:
                arr = np.fromfile(path, dtype=np.uint8)
                arr.flags.writeable = False
            else:
                with open(path, "rb") as f:
                    arr = np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ),
                                        np.uint8)
        _FILES[key] = arr
        while len(_FILES) > KEPT_FILES:
            _FILES.popitem(last=False)
        return arr


def release_pages() -> None:
    """Let the pages of every mapped file leave this process's resident memory.

    They stay in the page cache and come back, without a copy, on the next read: a model's
    weights, once read (checked, matched, blended), are not held against the process while the
    rest of it works, so its peak resident memory grows with what it allocates and the layer in
    hand, not with the files. Where the platform cannot advise the kernel, nothing happens."""
    advise = getattr(mmap, "MADV_DONTNEED", None)
    if advise is None:
        return
    with _LOCK:
        bases = [getattr(arr.base, "obj", arr.base) for arr in _FILES.values()]
    for m in bases + spilled_maps():  # B's permuted copies of such weights, in a file too
        if not isinstance(m, mmap.mmap):
            continue
        try:
            m.madvise(advise)
        except (OSError, ValueError):  # closed, or refused: the pages just stay
            pass


# -- the wire format -----------------------------------------------------------------------------

class _Malformed(Exception):
    pass


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf, start: int, end: int):
    """``(field, wire type, begin, value start, stop)`` of each field of the message in
    ``buf[start:end]``: ``begin`` is where its key starts, the value spans ``value start`` to
    ``stop`` (a length-delimited one without its length)."""
    pos = start
    while pos < end:
        begin = pos
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, stop = _varint(buf, pos, end)
        elif wire == 1:
            stop = pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            stop = pos + length
        elif wire == 5:
            stop = pos + 4
        else:
            raise _Malformed
        if stop > end or field == 0:
            raise _Malformed
        yield field, wire, begin, pos, stop
        pos = stop


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _message_field(field: int, payload: bytes) -> bytes:
    return _encode_varint(field << 3 | 2) + _encode_varint(len(payload)) + payload


def _raw(buf, start: int, stop: int) -> bytes:
    return bytes(buf[start:stop])


_GRAPH, _INITIALIZER, _RAW_DATA = 7, 5, 9  # ModelProto.graph, GraphProto.initializer, raw_data


def _stripped_tensor(buf, start: int, end: int, path: str) -> bytes:
    """The TensorProto in ``buf[start:end]``, its ``raw_data`` replaced by a reference to the
    same bytes of the file at ``path`` (small tensors as they are)."""
    kept, raw = bytearray(), None
    for field, wire, begin, a, b in _fields(buf, start, end):
        if field == _RAW_DATA and wire == 2:
            raw = (a, b)
        else:
            kept += _raw(buf, begin, b)
    if raw is None or raw[1] - raw[0] < INLINE_BYTES:
        return _raw(buf, start, end)
    t = onnx.TensorProto()
    t.ParseFromString(bytes(kept))
    t.data_location = onnx.TensorProto.EXTERNAL
    del t.external_data[:]
    for k, v in (("location", path), ("offset", str(raw[0])), ("length", str(raw[1] - raw[0]))):
        entry = t.external_data.add()
        entry.key, entry.value = k, v
    return t.SerializeToString()


def _graph_bytes(buf, start: int, end: int, path: str) -> bytes:
    out = bytearray()
    for field, wire, begin, a, b in _fields(buf, start, end):
        if field == _INITIALIZER and wire == 2:
            out += _message_field(field, _stripped_tensor(buf, a, b, path))
        else:
            out += _raw(buf, begin, b)
    return bytes(out)


def skeleton(path: str | os.PathLike) -> onnx.ModelProto | None:
    """The model at ``path`` with its large main-graph initializers referencing their bytes in
    the file (absolute ``location``, ``offset``, ``length``) instead of holding them; None when
    the file cannot be scanned (the caller parses it whole and reports what is wrong)."""
    p = str(Path(path).resolve())
    buf = memoryview(mapped(p))  # indexing gives Python ints
    try:
        out = bytearray()
        for field, wire, begin, a, b in _fields(buf, 0, len(buf)):
            if field == _GRAPH and wire == 2:
                out += _message_field(field, _graph_bytes(buf, a, b, p))
            else:
                out += _raw(buf, begin, b)
        model = onnx.ModelProto()
        model.ParseFromString(bytes(out))
        return model
    except Exception:  # _Malformed, or protobuf's own errors: the full parser names them
        return None


# -- reading tensors -----------------------------------------------------------------------------

def is_mapped(t: onnx.TensorProto) -> bool:
    """Whether ``t`` refers to external bytes by absolute path (a skeleton's weights)."""
    if not external_data_helper.uses_external_data(t):
        return False
    return os.path.isabs(external_data_helper.ExternalDataInfo(t).location or "")


def tensor_array(t: onnx.TensorProto) -> np.ndarray:
    """The values of ``t``: a read-only view of the mapped file for external data referenced by
    absolute path, else numpy's own conversion.

    Raises
    ------
    ValueError
        When the byte range does not fit the tensor's type and shape, or the file.
    """
    if not is_mapped(t):
        return numpy_helper.to_array(t)
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
    if dtype.kind in "OUS":
        raise ValueError("string tensors are not read from external data")
    raw = _raw_bytes(t)
    if t.data_type in _NARROW:
        # numpy_helper decodes these (and checks their size); it gets this tensor's bytes only
        return numpy_helper.to_array(_inline(t, raw))
    shape = tuple(int(d) for d in t.dims)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if raw.size != count * dtype.itemsize:
        raise ValueError(f"{raw.size} bytes do not hold {count} values of {dtype.name}")
    return raw.view(dtype.newbyteorder("<")).reshape(shape)


def _raw_bytes(t: onnx.TensorProto) -> np.ndarray:
    """The stored bytes of a tensor read in place: a uint8 view of its file, range-checked."""
    info = external_data_helper.ExternalDataInfo(t)
    buf = mapped(info.location)
    offset = int(info.offset or 0)
    length = int(info.length) if info.length is not None else buf.size - offset
    if offset < 0 or length < 0 or offset + length > buf.size:
        raise ValueError(f"{length} bytes at {offset} lie outside the file")
    return buf[offset:offset + length]


#: Element types numpy has no native layout for (bfloat16, 8- and 4-bit floats, 4-bit ints).
_NARROW = {getattr(onnx.TensorProto, n) for n in
           ("BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ",
            "UINT4", "INT4", "FLOAT4E2M1") if hasattr(onnx.TensorProto, n)}
#: Of those, the types packed two values to a byte: no numpy array holds their stored layout.
PACKED = {getattr(onnx.TensorProto, n) for n in ("UINT4", "INT4", "FLOAT4E2M1")
          if hasattr(onnx.TensorProto, n)}


def narrow(data_type: int) -> bool:
    """Whether the ONNX element type ``data_type`` has no native numpy layout (ml_dtypes holds
    its values: bfloat16, float8, 4-bit)."""
    return data_type in _NARROW


def _inline(t: onnx.TensorProto, raw: np.ndarray) -> onnx.TensorProto:
    out = onnx.TensorProto()
    out.CopyFrom(t)
    out.ClearField("data_location")
    del out.external_data[:]
    out.raw_data = raw.tobytes()
    return out


def external_tensors(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every main-graph initializer of ``model`` read in place (:func:`is_mapped`), by name."""
    return {t.name: tensor_array(t) for t in model.graph.initializer if is_mapped(t)}


def map_external(model: onnx.ModelProto, folder: Path) -> None:
    """Point every tensor's external data of ``model`` (relative to ``folder``, already checked
    to lie inside it) to its absolute path, so that it is read in place; in place."""
    for t in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(t) or is_mapped(t):
            continue
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = str((folder / entry.value).resolve())


def stored_bytes(model: onnx.ModelProto) -> int:
    """The model's size with its weights: the protobuf plus the bytes read in place."""
    return model.ByteSize() + sum(int(external_data_helper.ExternalDataInfo(t).length or 0)
                                  for t in external_data_helper._get_all_tensors(model)
                                  if is_mapped(t))


def inlined(model: onnx.ModelProto, names: set[str] | None = None) -> onnx.ModelProto:
    """A self-contained copy of ``model``: every tensor read in place (or those of them named in
    ``names``) holds its bytes again (to save or edit the model; under the 2 GB protobuf
    limit)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in external_data_helper._get_all_tensors(out):
        if is_mapped(t) and (names is None or t.name in names):
            t.CopyFrom(_inline(t, _raw_bytes(t)))
    return out
