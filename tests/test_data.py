"""Data files against the inputs models declare: layouts, scalars, states, clear errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnx_lineage.data import Dataset, arrange, arrange_for, feeds_for, load_data
from onnx_lineage.errors import DataError
from onnx_lineage.model.inputs import declared_inputs
from onnx_lineage.model.loading import load_model
from tests.conftest import fixture_path


@pytest.fixture(scope="module")
def detector():
    return load_model(fixture_path("torch_vad_state"))


def _data(**arrays):
    return Dataset({k: np.asarray(v) for k, v in arrays.items()}, source="test.npz")


def test_a_state_in_the_models_layout_is_put_rows_first(detector):
    state = np.arange(5 * 16, dtype=np.float32).reshape(1, 5, 16)
    d = arrange_for(_data(input=np.zeros((5, 64), np.float32), state=state, sr=16000), detector)
    assert len(d) == 5 and d.arrays["state"].shape == (5, 1, 16)
    np.testing.assert_array_equal(d.arrays["state"][3, 0], state[0, 3])
    assert set(d.fixed) == {"sr"} and d.subset(np.array([1, 2])).fixed["sr"] == 16000


def test_an_absent_state_starts_at_zero_and_says_so(detector):
    d = arrange_for(_data(input=np.ones((4, 64), np.float32), sr=8000), detector)
    assert d.arrays["state"].shape == (4, 1, 16) and not d.arrays["state"].any()
    assert any("'state'" in n and "zero" in n for n in d.notes)


def test_an_absent_scalar_is_named_in_the_error(detector):
    with pytest.raises(DataError, match="input 'sr'.*no batch axis"):
        arrange_for(_data(input=np.ones((4, 64), np.float32)), detector)


def test_a_state_written_rows_first_is_refused_with_its_layout(detector):
    with pytest.raises(DataError, match=r"'state' holds its rows on axis 1 \(\[1, batch, 16\]\)"):
        arrange_for(_data(input=np.ones((4, 64), np.float32), state=np.zeros((4, 16)), sr=1),
                    detector)


def test_rows_that_disagree_name_the_inputs(detector):
    with pytest.raises(DataError, match="disagree on the number of rows.*'input'.*'state'"):
        arrange_for(_data(input=np.ones((4, 64), np.float32), state=np.zeros((1, 3, 16)), sr=1),
                    detector)


def test_labels_must_match_the_rows():
    specs, states = declared_inputs(onnx.load(fixture_path("torch_mlp_legacy")))
    d = Dataset({"x": np.zeros((5, 64), np.float32)}, y=np.zeros(4, np.int64))
    with pytest.raises(DataError, match="4 labels for 5 rows"):
        arrange(d, [("m", specs, states)])


def test_feeds_give_the_scalar_whole(detector):
    specs, states = declared_inputs(detector.proto)
    d = arrange(_data(input=np.ones((3, 64)), sr=16000.0), [("m", specs, states)])
    feeds, ignored = feeds_for(specs, d, "m")
    assert feeds["sr"].shape == () and feeds["sr"].dtype == np.int64 and ignored == []
    assert feeds["input"].dtype == np.float32


def test_the_model_runs_end_to_end_on_a_state_file(tmp_path, detector):
    from onnx_lineage.analyses.determination import determine
    rng = np.random.default_rng(0)
    path = tmp_path / "vad.npz"
    np.savez(path, input=rng.normal(size=(40, 64)).astype(np.float32),
             state=np.zeros((1, 40, 16), np.float32), sr=np.array(16000))
    res = determine(detector, detector, load_data(path), seed=0)
    assert res.interpolated_fraction == 1.0 and res.curve[0]["loss"] == res.curve[-1]["loss"]


def test_a_state_started_at_zero_for_one_model_is_not_data_the_other_ignores():
    from onnx_lineage.model.inputs import InputSpec
    x = InputSpec("x", np.dtype(np.float32), (None, 4), 0)
    state = InputSpec("state", np.dtype(np.float32), (2, None, 3), 1)
    data = arrange(Dataset({"x": np.zeros((5, 4), np.float32)}, source="d.npz"),
                   [("a", [x], set()), ("b", [x, state], {"state"})])
    assert data.started == ("state",) and data.arrays["state"].shape == (5, 2, 3)
    _, ignored = feeds_for([x], data, "a")
    assert ignored == []


@pytest.mark.parametrize("stored,axis,rows", [("UINT8", 1, 12), ("INT4", 0, 48)])
def test_token_ids_are_checked_against_a_block_quantized_table_s_rows(stored, axis, rows):
    from onnx_lineage.data import embedding_sizes
    from tests.model.test_blockquant import _gather_model
    assert embedding_sizes(_gather_model(stored, quantize_axis=axis).graph) == {"ids": rows}
