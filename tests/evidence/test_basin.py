"""The basin test on the demo family: a fine-tuned child sits below every permuted copy."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_lineage.analyses.determination import determine


@pytest.mark.parametrize("member", ["finetuned_light", "pruned_50"])
def test_a_child_in_a_s_basin_is_below_every_permuted_copy(family, member):
    r = determine(family["parent"], family[member], copies=19, all_tests=True)
    basin = r.test("basin")
    # 19 copies only: undecided, the p-value is the upper 99% bound of a share of 0 in 19
    assert basin.p_value == pytest.approx(1 - 0.005 ** (1 / 19)) and basin.power is False
    assert "showed a barrier" in basin.power_reason


def test_an_independent_model_is_like_a_permuted_copy(family):
    r = determine(family["parent"], family["independent"], copies=99, all_tests=True)
    basin = r.test("basin")
    assert basin.p_value > 0.1 and "stopped early" in basin.reason


def test_the_copies_compute_the_same_function(family, digits):
    """A permuted copy of B interpolated at alpha 1 gives B's own predictions."""
    from onnx_lineage.analyses.sweep import Sweep, plan_path
    from onnx_lineage.evidence import symmetry_classes
    from onnx_lineage.matching import match
    from onnx_lineage.model.loading import load_model
    a, b = load_model(family["parent"]), load_model(family["finetuned_light"])
    m = match(a, b)
    plan = plan_path(a, b, m)
    sweep = Sweep(plan.base, plan.endpoints, digits.subset(np.arange(50)), None, "cpu")
    before = sweep.scores(1.0).copy()
    params = dict(m.correspondence.b_own)
    for c in symmetry_classes(m):
        c.permute(params, np.random.default_rng(1).permutation(c.width))
    for k, (i, key) in enumerate(plan.keys):
        sweep.set_b(k, params[i][key])
    after = sweep.scores(1.0)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
    assert not np.allclose(sweep.scores(0.5), before, atol=1e-3)
