"""benchmarks/forests.py and its recipes (benchmarks/families.py): recipe names, the
confidence bands, and an adapter child that is its parent plus a low-rank update."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
torch = pytest.importorskip("torch")
import families  # noqa: E402
import forests  # noqa: E402


def test_each_derived_model_is_scored_under_its_recipe():
    assert forests.recipe_of("mlp/s1_recipes_adv2") == "adv"
    assert forests.recipe_of("cnn/s1_recipes_smooth2") == "adam"
    assert forests.recipe_of("enc/s1_mixed_p") == "prune"
    assert forests.recipe_of("enc/s1_mixed_q") == "int8"
    assert forests.recipe_of("mlp/s1_chain_g2") == "adam"
    assert forests.forest_of("mlp/s1_indep_distil") == "mlp/s1_indep_distil"
    with pytest.raises(ValueError, match="valid: adv, sgdwd"):
        forests.recipe(None, families.dataset("digits"), 0, "pgd", False)


def _rows(confidences_right):
    return {1: {"tree": {"edge_directions": [{"confidence": c, "right": r}
                                             for c, r in confidences_right]}}}


def test_bands_hold_only_where_each_band_from_0_9_is_right_that_often():
    # 0.9-0.99: 9 of 10 right (90%, holds); >= 0.99: 99 of 100 (holds)
    ok = [(0.95, True)] * 9 + [(0.95, False)] + [(0.995, True)] * 99 + [(0.995, False)]
    assert forests.bands_hold(_rows(ok + [(0.6, False)] * 5))
    table = {name: (n, bad) for name, n, _, _, bad in forests.calibration(_rows(ok))}
    assert table == {"0.9-0.99": (10, 1), ">= 0.99": (100, 1)}
    # two wrong of 100 at >= 0.99: 98% < 99%
    assert not forests.bands_hold(_rows(ok + [(0.999, False)]))


def test_an_adapter_child_is_its_parent_plus_a_low_rank_update():
    data = families.dataset("digits")
    torch.manual_seed(0)
    parent = families.mlp(64, 16, 10)
    child = families.adapted(parent, data, data.first[:256], 1, 1e-2, 0, rank=2)
    lin = [(a, b) for a, b in zip(parent, child) if isinstance(a, torch.nn.Linear)]
    for a, b in lin:
        delta = (b.weight - a.weight).detach().numpy()
        assert np.abs(delta).max() > 0 and np.linalg.matrix_rank(delta, tol=1e-6) <= 2
        assert torch.equal(a.bias, b.bias)
    assert all(p.requires_grad for p in child.parameters())
