"""benchmarks/same_results.py: figures compared, times and scratch folders not."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from same_results import differences, figures  # noqa: E402


def test_times_machines_and_scratch_folders_are_not_figures():
    a = {"rows": [{"a": "/tmp/cal_f/m/x.onnx", "p_value": 0.5, "seconds": 3.0}],
         "machine": "one", "median_seconds": 2.0}
    b = {"rows": [{"a": "/tmp/cal_h/m/x.onnx", "p_value": 0.5, "seconds": 9.0}],
         "machine": "two", "median_seconds": 5.0}
    assert differences(figures(a), figures(b)) == []


def test_a_moved_figure_is_found_with_its_place():
    a = {"rows": [{"verdict": "related", "p_value": 0.5}]}
    b = {"rows": [{"verdict": "related", "p_value": 0.25}]}
    assert differences(figures(a), figures(b)) == ["/rows[0]/p_value: 0.5 | 0.25"]
