"""The test registry: the shares of alpha add up to at most 1, and every test the evidence runs
is registered under the name its result carries."""

from onnx_lineage.evidence.aligned import NAME as ALIGNED
from onnx_lineage.evidence.basin import NAME as BASIN
from onnx_lineage.evidence.function import NAME as FUNCTION
from onnx_lineage.evidence.registry import TESTS, registered
from onnx_lineage.evidence.same_values import NAME as SAME_VALUES
from onnx_lineage.evidence.unit_order import NAME as UNIT_ORDER
from onnx_lineage.evidence.verdict import WEIGHTS, share


def test_the_shares_of_alpha_are_fixed_and_spend_at_most_alpha():
    assert sum(t.weight for t in TESTS) <= 1 + 1e-12
    assert WEIGHTS == {t.name: t.weight for t in TESTS}
    assert share(0.01, "aligned") == registered("aligned").level(0.01) == 0.01 * (1 / 3)


def test_every_test_the_evidence_runs_is_registered_once():
    assert [t.name for t in TESTS] == [UNIT_ORDER, ALIGNED, SAME_VALUES, FUNCTION, BASIN]
    assert registered("unit_order").title == "unit order (exact)"
    assert registered("aligned").title == "aligned weights (calibrated)"


def test_the_data_free_tests_run_through_the_registry_with_one_signature(family):
    from onnx_lineage.evidence import data_free
    from onnx_lineage.matching import match
    m = match(family["parent"], family["finetuned_light"])
    free = data_free(m, 0.01)
    assert [t.name for t in free.tests] == [t.name for t in TESTS if not t.needs_data]
    # they run after the data-free tests: the function test on the data, the basin test after
    # the sweep
    assert [t.name for t in TESTS if t.needs_data] == ["function", "basin"]
    for t in free.tests:
        assert t.null == registered(t.name).null or t.null.startswith(registered(t.name).null)


def test_the_basin_test_runs_through_the_registry_too_and_says_when_it_had_no_path(family):
    from onnx_lineage.evidence import Evidence
    from onnx_lineage.matching import match
    m = match(family["parent"], family["finetuned_light"])
    r = registered("basin").run(Evidence(m), registered("basin").level(0.01))
    assert r.name == "basin" and r.p_value is None and r.reason == "not run: nothing to interpolate"
