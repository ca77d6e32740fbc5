"""The test registry: the shares of alpha add up to at most 1, and every test the evidence runs
is registered under the name its result carries."""

from onnx_lineage.evidence.aligned import NAME as ALIGNED
from onnx_lineage.evidence.basin import NAME as BASIN
from onnx_lineage.evidence.registry import TESTS, registered
from onnx_lineage.evidence.same_values import NAME as SAME_VALUES
from onnx_lineage.evidence.unit_order import NAME as UNIT_ORDER
from onnx_lineage.evidence.verdict import WEIGHTS, share


def test_the_shares_of_alpha_are_fixed_and_spend_at_most_alpha():
    assert sum(t.weight for t in TESTS) <= 1 + 1e-12
    assert WEIGHTS == {t.name: t.weight for t in TESTS}
    assert share(0.01, "aligned") == registered("aligned").level(0.01) == 0.01 * (1 / 3)


def test_every_test_the_evidence_runs_is_registered_once():
    assert [t.name for t in TESTS] == [UNIT_ORDER, ALIGNED, SAME_VALUES, BASIN]
    assert registered("unit_order").title == "unit order (exact)"
    assert registered("aligned").title == "aligned weights (calibrated)"
