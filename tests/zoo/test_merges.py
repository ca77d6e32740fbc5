"""tree draws a merge with every parent it was made from, and no merge where there is none."""

import numpy as np

from onnx_lineage.report.tree import tree_html
from onnx_lineage.zoo import tree
from tests.analyses.test_attribution import SIZES, _combine, _moved, _slerp, dare, ties
from tests.evidence.models import random_mlp, save


def test_a_merge_gets_each_of_its_parents_with_its_share(tmp_path):
    base = random_mlp(0, SIZES)
    p1, p2 = _moved(base, 1), _moved(base, 2)
    save(*base, tmp_path / "base.onnx")
    save(*p1, tmp_path / "p1.onnx")
    save(*p2, tmp_path / "p2.onnx")
    save(*_moved(p1, 3, size=0.1), tmp_path / "p1_ft.onnx")  # a fine-tune: one parent
    save(*_combine([p1, p2], [0.35, 0.65]), tmp_path / "merge.onnx")
    x = np.random.default_rng(0).random((300, 64)).astype(np.float32)
    from onnx_lineage.data import Dataset
    r = tree([tmp_path], Dataset({"x": x}, None, "random"), with_closeness=False)
    merged = {m["child"]: m for m in r.merges}
    assert set(merged) == {"merge"}, r.merges
    m = merged["merge"]
    assert m["recipe"] == "linear"
    assert sorted((p["parent"], round(p["share"], 2)) for p in m["parents"]) == [
        ("p1", 0.35), ("p2", 0.65)]
    tree_parent = next(e["parent"] for e in r.edges if e["child"] == "merge")
    other = ({"p1", "p2"} - {tree_parent}).pop()
    assert '-. "linear' in r.mermaid  # the other parent, dotted
    assert "merge" not in r.roots and {"p1", "p2"} <= {e["parent"] for e in r.edges} | set(r.roots)
    assert not any(e["parent"] == "merge" and e["child"] in ("p1", "p2") for e in r.edges)
    page = tree_html(r)
    assert "<h2>Merges</h2>" in page and "#d9822b" in page and other in page


def test_an_adapter_s_edge_is_labelled_with_its_rank_everywhere(tmp_path):
    from onnx_lineage.data import Dataset
    from tests.analyses.test_lowrank import SIZES as MLP, adapted
    parent = random_mlp(0, MLP)
    save(*parent, tmp_path / "parent.onnx")
    save(*adapted(*parent, [4, 8, 8, 4]), tmp_path / "adapter.onnx")
    save(*_moved(parent, 3, size=0.1), tmp_path / "finetune.onnx")  # full rank: no label
    x = np.random.default_rng(0).random((300, 64)).astype(np.float32)
    r = tree([tmp_path], Dataset({"x": x}, None, "random"), with_closeness=False)
    # the rank labels the edge whichever way its direction was read
    by_pair = {frozenset((e["parent"], e["child"])): e for e in r.edges}
    assert by_pair[frozenset(("parent", "adapter"))]["adapter"] == 8
    assert by_pair[frozenset(("parent", "finetune"))]["adapter"] is None
    assert "adapter r8" in r.mermaid and r.mermaid.count("adapter r") == 1
    page = tree_html(r)
    assert "adapter rank" in page and "adapter r8" in page


def _family(tmp_path) -> dict:
    """A base, two fine-tunes of it, a sibling, a grandchild, and a task-arithmetic merge of the
    two fine-tunes from the base (weights 0.8 and 0.6)."""
    base = random_mlp(0, SIZES)
    p1, p2 = _moved(base, 1), _moved(base, 2)
    models = {"base": base, "p1": p1, "p2": p2, "sibling": _moved(base, 4),
              "p1_ft": _moved(p1, 3, size=0.1), "merge": _combine([p1, p2], [0.8, 0.6], base=base)}
    for name, model in models.items():
        save(*model, tmp_path / f"{name}.onnx")
    return {name: tmp_path / f"{name}.onnx" for name in models}


def _outcomes(paths: dict) -> list:
    """Every pair's exact test, as tree runs it."""
    from onnx_lineage.data import Dataset
    from onnx_lineage.zoo.tree import _pair_task
    x = np.random.default_rng(0).random((300, 64)).astype(np.float32)
    names = sorted(paths)
    return [_pair_task(a, paths[a].read_bytes(), b, paths[b].read_bytes(),
                       Dataset({"x": x}, None, "random"), 0, "cpu")
            for i, a in enumerate(names) for b in names[i + 1:]]


def test_a_merge_of_task_vectors_is_found_from_its_base_where_the_forest_says_which_it_is(
        tmp_path):
    from onnx_lineage.model.loading import load_model
    from onnx_lineage.zoo.merges import merge_edges
    paths = _family(tmp_path)
    outcomes = _outcomes(paths)
    loaded = {n: load_model(p) for n, p in paths.items()}
    pair = {frozenset((o.a, o.b)): o for o in outcomes}
    forest = [(p, c, pair[frozenset((p, c))]) for p, c in
              [("base", "p1"), ("base", "p2"), ("base", "sibling"), ("p1", "p1_ft")]]
    merges, _ = merge_edges(outcomes, loaded, 0, forest)
    assert [m["child"] for m in merges] == ["merge"], merges
    m = merges[0]
    assert m["recipe"] == "task arithmetic" and m["base"] == "base"
    assert [(p["parent"], round(p["share"], 2)) for p in m["parents"]] == [("p1", 0.8),
                                                                           ("p2", 0.6)]
    # read with the base and the merge swapped, the same algebra holds: only the forest's
    # directions tell them apart, and without decided ones no merge of task vectors is claimed
    assert merge_edges(outcomes, loaded, 0, []) == ([], [])
    wrong = [(p, c, pair[frozenset((p, c))]) for p, c in
             [("merge", "p1"), ("merge", "p2"), ("p1", "p1_ft")]]
    assert [m["child"] for m in merge_edges(outcomes, loaded, 0, wrong)[0]] == ["base"]


def test_tree_shows_a_merge_of_task_vectors_with_its_base():
    from onnx_lineage.zoo.forest import mermaid
    merge = {"child": "merge", "recipe": "task arithmetic", "statement": "", "base": "base",
             "parents": [{"parent": "p1", "share": 0.8, "interval": None},
                         {"parent": "p2", "share": 0.6, "interval": None}]}
    edges = [{"parent": "base", "child": x, "closeness": None} for x in ("p1", "p2")] + [
        {"parent": "p1", "child": "merge", "closeness": None}]
    assert '-. "task arithmetic 0.60" .->' in mermaid(edges, ["base"], [merge])


def _outcomes_all_related(names: list, strangers=()) -> list:
    """Every pair's outcome as the exact tests would give it for one family (``strangers``
    related to nothing)."""
    from onnx_lineage.zoo.forest import PairOutcome
    return [PairOutcome(a, b, a not in strangers and b not in strangers, 0.9, 0.0, (),
                        distance=0.1) for i, a in enumerate(names) for b in names[i + 1:]]


def test_every_merge_of_a_crowded_folder_is_found_with_exactly_its_parents(tmp_path):
    """Averages on one line (a linear merge and a SLERP of the same two parents), averages of
    three, task arithmetic from the base with weights over 1 (so the base is no average of
    anything), TIES and DARE beside a fine-tune and a stranger: each merge gets the models it
    was made from, not another merge that lies in their span; nothing else is called a merge,
    and no forest directions are needed to tell the base from its merges."""
    from onnx_lineage.model.loading import load_model
    from onnx_lineage.zoo.merges import merge_edges
    base = random_mlp(0, SIZES)
    p1, p2, p3 = (_moved(base, s) for s in (1, 2, 3))
    made = {"linear_2": ([p1, p2], _combine([p1, p2], [0.3, 0.7]), "linear"),
            "slerp_2": ([p1, p2], tuple([_slerp(x, y, 0.6) for x, y in zip(p1[k], p2[k])]
                                        for k in (0, 1)), "slerp"),
            "linear_3": ([p1, p2, p3], _combine([p1, p2, p3], [0.2, 0.5, 0.3]), "linear"),
            "ta_2": ([p1, p2], _combine([p1, p2], [0.8, 0.6], base=base), "task arithmetic"),
            "ta_3": ([p1, p2, p3], _combine([p1, p2, p3], [0.5, 0.8, 0.7], base=base),
                     "task arithmetic"),
            "ties_3": ([p1, p2, p3], ties([p1, p2, p3], base), "ties"),
            "dare_2": ([p2, p3], dare([p2, p3], [0.9, 0.6], base, np.random.default_rng(4)),
                       "dare")}
    models = {"base": base, "p1": p1, "p2": p2, "p3": p3, "p1_ft": _moved(p1, 5, size=0.1),
              "stranger": random_mlp(9, SIZES), **{k: v[1] for k, v in made.items()}}
    loaded = {n: load_model(save(*m, tmp_path / f"{n}.onnx")) for n, m in models.items()}
    name = {id(m): n for n, m in models.items()}
    found, _ = merge_edges(_outcomes_all_related(sorted(models), ["stranger"]), loaded, 0)
    merges = {m["child"]: m for m in found}
    assert set(merges) == set(made), sorted(merges)
    for child, (parents, _, recipe) in made.items():
        got = merges[child]
        assert sorted(p["parent"] for p in got["parents"]) == sorted(
            name[id(p)] for p in parents), (child, got["parents"])
        assert got["recipe"] == recipe, (child, got["recipe"])
        assert got["base"] == ("base" if recipe in ("task arithmetic", "ties", "dare") else None)


def test_a_merge_and_a_parent_with_copies_beside_them_are_still_found(tmp_path):
    """Re-exports hold the same values: measured from its copy, no fit of a merge looks like
    rounding, and a parent is explained by its copy alone. Each copy is set aside (one of the
    two stands for both)."""
    from onnx_lineage.model.loading import load_model
    from onnx_lineage.zoo.merges import merge_edges
    base = random_mlp(0, SIZES)
    p1, p2 = _moved(base, 1), _moved(base, 2)
    merge = _combine([p1, p2], [0.4, 0.6])
    models = {"base": base, "p1": p1, "p1_again": p1, "p2": p2, "merge": merge,
              "merge_again": merge}
    loaded = {n: load_model(save(*m, tmp_path / f"{n}.onnx")) for n, m in models.items()}
    merges, _ = merge_edges(_outcomes_all_related(sorted(models)), loaded, 0)
    assert [m["child"] for m in merges] == ["merge"], merges
    assert sorted(p["parent"] for p in merges[0]["parents"]) == ["p1", "p2"]


def test_merges_of_the_same_two_parents_in_one_plane_claim_no_base(tmp_path):
    """Two task-arithmetic merges of p1 and p2 from the base lie in one plane with them: the five
    make a convex pentagon, where every model reads as a positive merge of its two neighbours
    from any other vertex. Nothing tells the base, so no merge of task vectors is claimed; the
    average inside the pentagon is still found."""
    from onnx_lineage.model.loading import load_model
    from onnx_lineage.zoo.merges import merge_edges
    base = random_mlp(0, SIZES)
    p1, p2 = _moved(base, 1), _moved(base, 2)
    models = {"base": base, "p1": p1, "p2": p2, "avg": _combine([p1, p2], [0.25, 0.75]),
              "ta": _combine([p1, p2], [0.9, 0.6], base=base),
              "ta_more": _combine([p1, p2], [0.7, 1.0], base=base)}
    loaded = {n: load_model(save(*m, tmp_path / f"{n}.onnx")) for n, m in models.items()}
    merges, _ = merge_edges(_outcomes_all_related(sorted(models)), loaded, 0)
    assert [(m["child"], m["recipe"]) for m in merges] == [("avg", "linear")], merges


def test_a_family_too_large_for_the_budget_is_not_searched_and_a_note_says_so(tmp_path):
    from onnx_lineage import memory
    from onnx_lineage.model.loading import load_model
    from onnx_lineage.zoo.merges import merge_edges
    base = random_mlp(0, SIZES)
    p1, p2 = _moved(base, 1), _moved(base, 2)
    models = {"p1": p1, "p2": p2, "merge": _combine([p1, p2], [0.4, 0.6])}
    loaded = {n: load_model(save(*m, tmp_path / f"{n}.onnx")) for n, m in models.items()}
    with memory.limited("256K"):
        merges, notes = merge_edges(_outcomes_all_related(sorted(models)), loaded, 0)
    assert merges == [] and len(notes) == 1
    assert notes[0].startswith("no merge looked for among merge, p1, p2: the merge search over 3")
    assert "over the memory budget of 256.0 KiB" in notes[0]


def test_a_base_sparser_than_its_merge_is_no_dare_base():
    """Pruning reads like DARE value by value (a pruned model keeps its source's values or zeroes
    them), with the sparser model as the base. The same DARE reading from a base with half its
    values zero is refused; from the base made dense, found."""
    from onnx_lineage.zoo.merges import FamilyFrame, _TaskVectors
    rng = np.random.default_rng(0)
    n = 20_000

    def frame(q):
        t1, t2 = rng.normal(size=n), rng.normal(size=n)
        keep1, keep2 = rng.random(n) < 0.5, rng.random(n) < 0.5
        m = q + 0.8 * keep1 * t1 + 0.6 * keep2 * t2
        x = np.stack([q, q + t1, q + t2, m]).astype(np.float32)
        return FamilyFrame(["q", "p1", "p2", "m"], [x],
                           (x.astype(np.float64) @ x.T.astype(np.float64))[None])
    dense = rng.normal(size=n)
    assert _TaskVectors(frame(dense), [0, 1, 2, 3])._value_by_value(3) == [(0, (1, 2))]
    sparse = np.where(rng.random(n) < 0.5, 0.0, dense)
    assert _TaskVectors(frame(sparse), [0, 1, 2, 3])._value_by_value(3) == []
