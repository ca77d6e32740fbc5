"""Memory for large arrays written once (mapped apart from numpy's huge-page advice), and the
budget of a run."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_lineage import memory
from tests.conftest import fixture_path


@pytest.mark.parametrize("shape,dtype", [((0,), np.float32), ((7, 3), np.float16),
                                         ((3, 1024, 1024 + 5), np.float32), ((5 << 20,), np.uint8)])
def test_plain_empty_is_a_writable_array_of_the_shape_and_type_asked(shape, dtype):
    from onnx_lineage.memory import PLAIN_FROM, plain_empty
    arr = plain_empty(shape, dtype)
    assert arr.shape == shape and arr.dtype == dtype and arr.flags.writeable
    assert arr.flags.c_contiguous
    arr[...] = 3
    assert float(arr.sum(dtype=np.float64)) == 3.0 * arr.size
    assert (arr.base is not None) == (arr.nbytes >= PLAIN_FROM)  # a mapping of its own


def test_arrays_taken_from_large_weights_are_the_same_values():
    """take_rows and take_columns write into such memory: the values and memory order are
    numpy's own."""
    from onnx_lineage.matching.permutation import take_columns, take_rows
    rng = np.random.default_rng(0)
    w = rng.normal(size=(1500, 1200)).astype(np.float32)  # 7 MB
    perm = rng.permutation(1500)
    for x in (w, w.T.copy().T):
        np.testing.assert_array_equal(take_rows(x, perm), x[perm])
        np.testing.assert_array_equal(take_rows(x, perm[:700]), x[perm[:700]])
        np.testing.assert_array_equal(take_columns(x.T, perm), x.T[:, perm])
    assert take_rows(w.T.copy().T, perm).flags.f_contiguous


def test_an_analysis_s_budget_holds_for_its_call_only(tmp_path):
    """``max_memory`` is the run's: the reading is checked against it, and the budget in force
    before the call is back after it, whether the call failed or not."""
    from onnx_lineage.analyses.determination import determine
    from onnx_lineage.memory import MemoryBudgetError, budget
    before = budget()
    model = fixture_path("torch_mlp_legacy")
    with pytest.raises(MemoryBudgetError, match="memory budget of 4.0 KiB"):
        determine(model, model, max_memory="4K")
    assert budget() == before
    memory.set_budget("8G")
    try:
        with memory.limited("1M"):
            assert budget() == 1024**2
        assert budget() == 8 * 1024**3
    finally:
        memory.set_budget(None)


def test_a_spilled_copy_keeps_its_values_when_its_pages_are_let_go():
    """A copy that stands for a weight read in place lives in an unlinked temporary file:
    letting its pages go (as after each layer is read) loses nothing, and it leaves no file."""
    import os
    from onnx_lineage.model.weights import release_pages
    arr = memory.spilled_empty((memory.SPILL_FROM // 4 + 7,), np.float32)
    assert arr.flags.writeable and arr.base is not None
    if os.path.exists("/proc/self/maps"):  # Linux: the array lies in a deleted file's mapping
        start = arr.ctypes.data
        mapped = [line for line in open("/proc/self/maps")
                  if int(line.split("-")[0], 16) <= start < int(line.split()[0].split("-")[1], 16)]
        assert mapped and mapped[0].rstrip().endswith("(deleted)")  # no file left on the disk
    arr[:] = np.arange(arr.size, dtype=np.float32)
    release_pages()
    assert float(arr[-1]) == arr.size - 1 and float(arr[123]) == 123.0
    small = memory.spilled_empty((5, 3), np.float16)
    assert small.shape == (5, 3) and small.dtype == np.float16
