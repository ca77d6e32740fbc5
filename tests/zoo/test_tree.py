"""The lineage forest: chains, siblings, independent roots; screening; Ray gives the same result."""

from __future__ import annotations

import html

import numpy as np
import onnx
import pytest

from onnx_lineage.demo.family import mlp_to_onnx
from onnx_lineage.model.loading import load_model
from onnx_lineage.model.parameters import extract_layers
from onnx_lineage.zoo import tree
from onnx_lineage.zoo.fingerprint import candidates, fingerprint
from onnx_lineage.zoo.forest import PairOutcome, orient, spanning_forest
from onnx_lineage.zoo.tree import shares_of


@pytest.fixture(scope="module")
def lineage(tmp_path_factory, family):
    """root -> child -> grandchild (a chain), root -> sibling, plus an independent model.

    child is root pruned to 30% zeros plus weight noise, grandchild is child pruned further to 60%
    (pruning leaves evidence of direction: the sparser model is the child); sibling is root plus
    noise (no strong evidence: it hangs where its weights are closest, and its arrow follows the
    tree's root).
    """
    d = tmp_path_factory.mktemp("lineage")
    layers = extract_layers(load_model(family["parent"]).proto)
    w0 = [x.weight for x in layers]
    b0 = [x.params["bias"] for x in layers]
    rng = np.random.default_rng(0)

    def noisy(ws, level):
        return [w + rng.normal(0, level * w.std(), w.shape).astype(np.float32) for w in ws]

    def pruned(ws, frac):
        return [np.where(np.abs(w) < np.quantile(np.abs(w), frac), 0, w).astype(np.float32)
                for w in ws]

    w1 = pruned(noisy(w0, 0.05), 0.3)
    w2 = pruned(w1, 0.6)
    ws = noisy(w0, 0.05)
    for name, w in (("root", w0), ("child", w1), ("grandchild", w2), ("sibling", ws)):
        onnx.save(mlp_to_onnx(w, b0), d / f"{name}.onnx")
    ind = extract_layers(load_model(family["independent"]).proto)
    onnx.save(mlp_to_onnx([x.weight for x in ind], [x.params["bias"] for x in ind]),
              d / "stranger.onnx")
    return d


def test_chain_siblings_and_independent_roots(lineage):
    r = tree([lineage], with_closeness=False)
    edges = {(e["parent"], e["child"]) for e in r.edges}
    assert edges == {("root", "child"), ("child", "grandchild"), ("root", "sibling")}
    assert r.roots == ["root", "stranger"]
    conf = {(e["parent"], e["child"]): e["confidence"] for e in r.edges}
    assert conf[("root", "child")] > 0.5 and conf[("child", "grandchild")] > 0.5


def test_screening_skips_independent_pairs(lineage):
    r = tree([lineage], with_closeness=False)
    assert r.all_pairs == 10
    assert r.exact_tests == r.candidates < r.all_pairs  # the stranger is never tested exactly


def test_json_and_mermaid(lineage):
    r = tree([lineage])
    d = r.to_dict()
    assert set(d) >= {"edges", "roots", "schema_version"}
    assert all(set(e) >= {"parent", "child", "closeness"} for e in d["edges"])
    assert r.mermaid.startswith("graph TD") and "root" in r.mermaid


def test_fingerprints_see_through_permutation(family):
    fps = [fingerprint(n, extract_layers(load_model(family[n]).proto))
           for n in ("parent", "obfuscated", "independent")]
    cand = candidates(fps)
    assert ("obfuscated", "parent") in cand
    assert ("independent", "parent") not in cand


def test_forest_orients_by_evidence_and_keeps_quantized_copies_as_leaves():
    # q: a float parent; a: its fine-tuned child (a has the larger norm: direction -1 for (a, q));
    # b: an int8 copy of q (a leaf whatever its similarities: nothing is trained from int8)
    outs = [PairOutcome("a", "b", True, 0.995, 0.0, ()),
            PairOutcome("b", "q", True, 0.999, -2.0, ()),
            PairOutcome("a", "q", True, 0.98, -1.0, ())]
    kept = spanning_forest(["a", "b", "q"], outs, leaves=frozenset({"b"}))
    directed, roots = orient(["a", "b", "q"], kept)
    assert roots == ["q"]
    assert {(p, c) for p, c, _ in directed} == {("q", "a"), ("q", "b")}


def test_ray_gives_the_local_result(lineage):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = tree([lineage], ray="auto")
    finally:
        ray.shutdown()
    local = tree([lineage])
    assert remote.executor == "ray" and local.executor == "local"
    assert remote.edges == local.edges and remote.roots == local.roots


def test_distances_grow_along_the_lineage_and_every_model_has_its_statistics(lineage):
    r = tree([lineage], with_closeness=False)
    dist = {frozenset((p["a"], p["b"])): p["distance"] for p in r.related}
    assert dist[frozenset(("root", "child"))] < dist[frozenset(("root", "grandchild"))]
    assert set(r.stats) == set(r.models) and all(s["loss"] > 0 for s in r.stats.values())
    assert all(e["direction"] in ("decided", "undecided") and e["distance"] > 0 for e in r.edges)


def test_the_exact_tests_share_alpha_among_them(lineage):
    r = tree([lineage], with_closeness=False, alpha=0.05)
    assert r.alpha == 0.05 and r.alpha_per_test == pytest.approx(0.05 / r.exact_tests)


def test_shares_read_real_models_in_any_unit_order(tmp_path, family):
    """root -> child -> grandchild and root -> sibling, each step its own weight noise: the
    grandchild carries about all of the child's own change, the sibling about none, whatever the
    order of the grandchild's hidden units; a permuted and rescaled copy says nothing."""
    from onnx_lineage.demo.family import obfuscate
    layers = extract_layers(load_model(family["parent"]).proto)
    w0, b0 = [x.weight for x in layers], [x.params["bias"] for x in layers]
    rng = np.random.default_rng(1)

    def step(ws):
        return [w + rng.normal(0, 0.05 * w.std(), w.shape).astype(np.float32) for w in ws]

    w1 = step(w0)
    w2, ws = step(w1), step(w0)
    perm = rng.permutation(w2[0].shape[0])
    w2p = [w2[0][perm], w2[1][:, perm], w2[2]]
    b2p = [b0[0][perm], b0[1], b0[2]]
    ow, ob = obfuscate(w2, b0, np.random.default_rng(2))
    models = {"root": (w0, b0), "child": (w1, b0), "grandchild": (w2, b0), "sibling": (ws, b0),
              "permuted": (w2p, b2p), "rescaled": (ow, ob)}
    for name, (w, b) in models.items():
        onnx.save(mlp_to_onnx(w, b), tmp_path / f"{name}.onnx")
    share = shares_of({n: load_model(tmp_path / f"{n}.onnx") for n in models}, 0)
    assert share("root", "child", "grandchild") == pytest.approx(1.0, abs=0.15)
    assert abs(share("root", "child", "sibling")) < 0.15
    assert share("root", "child", "permuted") == pytest.approx(
        share("root", "child", "grandchild"), abs=1e-6)
    assert share("root", "child", "rescaled") is None


def test_a_transfer_child_is_said_to_score_other_labels(tmp_path, family, transfer):
    import shutil
    for name in ("parent", "independent"):
        shutil.copy(family[name], tmp_path / f"{name}.onnx")
    shutil.copy(transfer, tmp_path / "a_transfer.onnx")  # sorts first: no tie goes its way
    r = tree([tmp_path])
    (edge,) = [e for e in r.edges if "a_transfer" in (e["parent"], e["child"])]
    assert edge["classes"] == ({"parent": 10, "child": 2} if edge["parent"] == "parent"
                               else {"parent": 2, "child": 10})
    assert edge["closeness"] is None and edge["direction"] == "undecided"
    assert not any("fits the data worse" in x for x in edge["evidence"])
    assert r.stats["a_transfer"]["loss"] is None and r.stats["parent"]["loss"] is not None
    assert any("their label spaces differ" in n and "closeness not measured" in n
               for n in r.notes)
    assert any(n.startswith("a_transfer scores 2 classes, but the labels of builtin:digits run "
                            "from 0 to 9") for n in r.notes)
    assert not any("carry the same weights" in n for n in r.notes)
    shared = tree([tmp_path], label_space="shared", with_closeness=True)
    (edge,) = [e for e in shared.edges if "a_transfer" in (e["parent"], e["child"])]
    assert 0.0 <= edge["closeness"] <= 1.0


def test_the_report_draws_the_forest_with_each_edges_evidence(lineage, tmp_path):
    import re
    import xml.etree.ElementTree as ET

    from onnx_lineage.report.tree import forest_svg, tree_html
    r = tree([lineage], with_closeness=False)
    assert all(e["p_value"] is not None and e["p_value"] <= r.alpha_per_test for e in r.edges)
    page = tree_html(r)
    svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    root = ET.fromstring(svg)  # well-formed, no external asset
    ns = "{http://www.w3.org/2000/svg}"
    names = [t.text for t in root.iter(f"{ns}title")]
    assert sorted(names) == sorted(r.models) and "<script" not in page and "http" not in \
        page.replace("http://www.w3.org/2000/svg", "")
    assert len(list(root.iter(f"{ns}line"))) == len(r.edges)
    labels = [t.text for t in root.iter(f"{ns}text") if t.text and t.text.startswith("p ")]
    assert len(labels) == len(r.edges)
    # roots on the top row, every child a row below its parent
    y = {g.find(f"{ns}title").text: float(g.find(f"{ns}rect").get("y")) for g in root.iter(f"{ns}g")}
    assert all(y[e["child"]] > y[e["parent"]] for e in r.edges)
    assert {n for n in r.models if y[n] == min(y.values())} == set(r.roots)
    for e in r.edges:
        assert html.escape(e["child"]) in page and e["direction"] in page
    lone = forest_svg(["only"], [])
    assert ET.fromstring(lone).find(f"{ns}g/{ns}title").text == "only"


def test_models_whose_sessions_do_not_fit_are_joined_by_the_data_free_tests(lineage, monkeypatch):
    """Where one model's onnxruntime session would exceed the memory budget even a stage at a
    time (a weight larger than the budget), the pairs are decided by the data-free tests alone,
    each loss is left unmeasured and each closeness out, and the notes say so; nothing is
    refused or killed."""
    from onnx_lineage.model import footprint
    monkeypatch.setattr(footprint, "session_sizes",
                        lambda model: {model.graph.initializer[0].name: float(1 << 40)})
    r = tree([lineage])
    edges = {(e["parent"], e["child"]) for e in r.edges}
    assert {("root", "child"), ("child", "grandchild")} <= edges and len(edges) == 3
    assert "stranger" in r.roots and not r.failed
    assert all(e["closeness"] is None for e in r.edges)
    assert all(s["loss"] is None for s in r.stats.values())
    said = [n for n in r.notes if "the data-free tests only" in n]
    assert len(said) == r.exact_tests and "1.0 TiB" in said[0]
    unmeasured = [n for n in r.notes if "its loss and the closeness of its edges" in n]
    assert len(unmeasured) == len(r.models)


def test_a_model_whose_dequantized_weights_exceed_the_budget_is_left_out_and_said(lineage,
                                                                                 monkeypatch):
    """A 7B model's 4-bit export holds 26 GiB once dequantized: rather than be killed, the tree
    leaves it out and says so, and draws the others."""
    import sys
    tree_module = sys.modules["onnx_lineage.zoo.tree"]  # the package's ``tree`` is the function

    def dequantized(proto):  # the sibling's file stands for such an export
        where = [e.value for t in proto.graph.initializer for e in t.external_data
                 if e.key == "location"] or [proto.graph.name]
        return float(1 << 40) if any("sibling" in w for w in where) else 0.0

    monkeypatch.setattr(tree_module, "dequantized_bytes", dequantized)
    r = tree([lineage], with_closeness=False)
    assert "sibling" not in r.models and len(r.models) == 4
    assert any(n.startswith("sibling left out: its quantized weights dequantized need about "
                            "1.0 TiB") for n in r.notes)
