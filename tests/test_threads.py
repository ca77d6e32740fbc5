"""The thread helpers: one worker runs in the caller's thread, the BLAS limit is undone."""

import os
import threading

from threadpoolctl import threadpool_info

from onnx_lineage.threads import InPlace, blas_threads, pool


def test_one_worker_runs_each_task_in_the_callers_thread_as_it_is_submitted():
    seen = []
    with pool(1) as tasks:
        assert isinstance(tasks, InPlace)
        done = tasks.submit(lambda x: seen.append(threading.get_ident()) or x * 2, 21)
        assert seen == [threading.get_ident()]  # already run
    assert done.result() == 42


def test_several_workers_run_on_other_threads():
    with pool(2) as tasks:
        ident = tasks.submit(threading.get_ident).result()
    assert ident != threading.get_ident()


def test_the_blas_limit_holds_inside_and_is_undone_after():
    before = [(x["internal_api"], x["num_threads"]) for x in threadpool_info()]
    with blas_threads(1):
        inside = [x["num_threads"] for x in threadpool_info() if x["user_api"] == "blas"]
    assert all(n == 1 for n in inside)
    assert [(x["internal_api"], x["num_threads"]) for x in threadpool_info()] == before
    with blas_threads(0):  # no limit asked
        assert [(x["internal_api"], x["num_threads"]) for x in threadpool_info()] == before


def test_class_matching_stays_on_the_callers_thread_below_a_million_parameters(monkeypatch):
    """A small model's classes are matched without starting threads; a large one's on several
    (the choice is by matched parameters, :data:`~onnx_lineage.matching.classes.PARALLEL_FROM`)."""
    import numpy as np

    from onnx_lineage.matching import classes

    asked = []
    monkeypatch.setattr(classes, "pool", lambda workers: asked.append(workers) or InPlace())
    params = {0: {"weight": np.zeros((4, 3), np.float32)}}
    classes.match_classes([], params, params, np.random.default_rng(0))
    monkeypatch.setattr(classes, "PARALLEL_FROM", 10)
    classes.match_classes([], params, params, np.random.default_rng(0))
    assert asked == [1, min(os.cpu_count() or 1, 4)]
