"""The command line: tables, one JSON document, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import fixture_path


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "typer_app", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def test_help_lists_the_commands():
    r = cli("--help")
    assert r.returncode == 0
    for name in ("inspect", "match", "determine", "closeness", "demo"):
        assert name in r.stdout


def test_inspect_json_reports_batch_dependence():
    r = cli("inspect", fixture_path("torch_mlp_int8_dynamic"), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["batch_dependent"] is True and d["quantization"] == ["dynamic"]
    assert len(d["layers"]) == 3 and d["schema_version"] == 2


@pytest.mark.parametrize("name", ["keras_cnn", "sklearn_logreg", "torch_encoder", "torch_lstm",
                                  "torch_cnn_int8_qoperator", "torch_mlp_dynamo"])
def test_inspect_reads_every_kind_of_fixture(name):
    r = cli("inspect", fixture_path(name))
    assert r.returncode == 0, r.stderr
    assert "parametric layers" in r.stdout


def test_match_json():
    r = cli("match", fixture_path("torch_mlp_legacy"), fixture_path("sklearn_mlp_from_torch"), "--json")
    d = json.loads(r.stdout)
    assert d["coverage"] == {"a": 1.0, "b": 1.0} and d["alpha"] == 0.01
    order = next(t for t in d["tests"] if t["name"] == "unit_order")
    assert [c["units"] for c in order["classes"]] == [32, 16] and order["p_value"] < 1e-30
    assert set(d["timings"]) == {"match", "tests"} and min(d["timings"].values()) >= 0


def test_determine_json_fields(tmp_path):
    r = cli("determine", fixture_path("torch_mlp_legacy"), fixture_path("torch_mlp_int8_qdq"), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for key in ("verdict", "related", "barrier", "threshold", "p_value", "coverage", "curve",
                "alpha", "tests", "shared_layers", "interpolated_fraction"):
        assert key in d
    assert d["verdict"] == "related" and d["schema_version"] == 2
    assert {t["name"] for t in d["tests"]} == {"unit_order", "aligned", "same_values", "basin"}
    for t in d["tests"]:
        assert {"name", "statistic", "p_value", "null", "classes"} <= set(t)


def test_closeness_json_fields():
    r = cli("closeness", fixture_path("torch_mlp_legacy"), fixture_path("torch_mlp_fp16"), "--json",
            "--points", "32")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for key in ("closeness", "ci95", "matching_rate", "distance_similarity", "mean_distance",
                "points", "queries"):
        assert key in d
    assert set(d["mean_distance"]) == {"a", "b"}


def test_data_file_with_labels(tmp_path, digits):
    p = tmp_path / "d.npz"
    np.savez(p, x=digits.arrays["x"][:300], y=digits.y[:300], unused=np.zeros(300))
    r = cli("determine", fixture_path("torch_mlp_legacy"), fixture_path("torch_mlp_fp16"),
            "--data", p, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["criterion"] == "cross-entropy against the labels"
    assert any("unused" in n for n in d["notes"])


@pytest.mark.parametrize("content", [b"", b"garbage" * 20])
def test_corrupt_model_is_one_line_and_exit_1(tmp_path, content):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    r = cli("inspect", p)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_wrong_data_is_one_line_and_exit_1(tmp_path):
    p = tmp_path / "d.npy"
    np.save(p, np.zeros((5, 3), np.float32))
    r = cli("closeness", fixture_path("torch_mlp_legacy"), fixture_path("torch_mlp_legacy"), "--data", p)
    assert r.returncode == 1 and "expects rows of shape" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [["closeness", "a.onnx", "b.onnx", "--points", "-5"],
                                  ["inspect", "a.onnx", "--device", "tpu"],
                                  ["determine", "a.onnx"]])
def test_usage_errors_exit_2(args):
    r = cli(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_demo_runs_and_gets_every_verdict_right(tmp_path):
    r = cli("demo", "--json", "--report", tmp_path / "demo.html")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["correct"] == d["total"] == 8
    assert (tmp_path / "demo.html").stat().st_size > 10_000


def test_analyze_writes_a_report_and_gates_on_expect(tmp_path, family):
    report = tmp_path / "r.html"
    r = cli("analyze", family["parent"], family["noisy"], "--report", report, "--points", "32",
            "--expect", "related", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verdict"] == "related"
    assert report.read_text().startswith("<!DOCTYPE html>")
    r = cli("analyze", family["parent"], family["noisy"], "--points", "32", "--expect", "unrelated")
    assert r.returncode == 1 and "expected unrelated" in r.stderr


def test_unwritable_report_is_one_line(tmp_path, family):
    r = cli("analyze", family["parent"], family["noisy"], "--points", "16", "--report",
            tmp_path / "missing" / "r.html")
    assert r.returncode == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def _custom_domain_model(path):
    import onnx
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Mystery", ["x"], ["y"], domain="com.example")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                                  helper.make_opsetid("com.example", 1)]), path)


def test_custom_domain_operator_is_a_clear_error(tmp_path):
    p = tmp_path / "custom.onnx"
    _custom_domain_model(p)
    r = cli("inspect", p)
    assert r.returncode == 1 and "cannot run this model" in r.stderr
    assert r.stderr.count("\n") == 1


def test_model_without_parameters(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 64])])
    p = tmp_path / "noparams.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), p)
    r = cli("inspect", p, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["layers"] == []
    r = cli("determine", p, p, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["verdict"] == "undetermined"


def test_nan_outputs_are_a_clear_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Log", ["x"], ["l"]), helper.make_node("Neg", ["l"], ["n"]),
                           helper.make_node("Sqrt", ["n"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 64])])
    p = tmp_path / "nan.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), p)
    r = cli("closeness", p, p, "--points", "8")
    assert r.returncode == 1 and "NaN or Inf" in r.stderr and "Traceback" not in r.stderr


def test_tree_over_a_folder(tmp_path, family):
    import shutil
    for name in ("parent", "noisy", "independent"):
        shutil.copy(family[name], tmp_path / f"{name}.onnx")
    r = cli("tree", tmp_path, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert {"parent", "child", "closeness"} <= set(d["edges"][0])
    assert "independent" in d["roots"]


def test_a_stateful_model_runs_on_its_own_layout_and_names_a_missing_input(tmp_path):
    rng = np.random.default_rng(0)
    good, bad = tmp_path / "vad.npz", tmp_path / "vad_no_sr.npz"
    x = rng.normal(size=(30, 64)).astype(np.float32)
    np.savez(good, input=x, state=np.zeros((1, 30, 16), np.float32), sr=np.array(16000))
    np.savez(bad, input=x)
    model = fixture_path("torch_vad_state")
    r = cli("determine", model, model, "--data", good, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["interpolated_fraction"] == 1.0
    r = cli("closeness", model, model, "--data", bad)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "input 'sr'" in r.stderr


def test_inspect_says_where_each_input_keeps_its_rows():
    r = cli("inspect", fixture_path("torch_vad_state"), "--json")
    assert r.returncode == 0, r.stderr
    inputs = json.loads(r.stdout)["inputs"]
    assert [(i["name"], i["batch_axis"], i["state"]) for i in inputs] == [
        ("input", 0, False), ("state", 1, True), ("sr", None, False)]



def test_per_class_table_shows_each_residual_stream(tmp_path):
    import onnx

    from tests.conv_residual import projection_model
    onnx.save(projection_model(0), tmp_path / "a.onnx")
    onnx.save(projection_model(0, permuted=True), tmp_path / "b.onnx")
    r = cli("match", tmp_path / "a.onnx", tmp_path / "b.onnx")
    assert r.returncode == 0, r.stderr
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in r.stdout.splitlines()
            if line.startswith("│ residual stream")]
    assert [row[:3] for row in rows] == [["residual stream #1", "0,2", "8"],
                                         ["residual stream #2", "4,5,6", "12"]]


def test_closeness_refuses_other_label_spaces_unless_asked(family, transfer):
    r = cli("closeness", family["parent"], transfer, "--points", "32")
    assert r.returncode == 1 and r.stdout == "" and r.stderr.count("\n") == 1
    assert "parent.onnx scores 10 classes and transfer2.onnx 2" in r.stderr
    assert "--shared-labels" in r.stderr
    r = cli("closeness", family["parent"], transfer, "--points", "32", "--shared-labels")
    assert r.returncode == 0, r.stderr
    assert "2 labels compared (A scores 10, B 2)" in r.stdout
    assert "- parent.onnx scores 10 classes and transfer2.onnx 2: their label spaces differ; " \
           "closeness is computed on the 2 labels both have (0-1)" in " ".join(r.stdout.split())
    from onnx_lineage import closeness  # the same through the API, and its JSON fields
    d = closeness(family["parent"], transfer, points=32, label_space="shared").to_dict()
    assert d["classes"] == {"a": 10, "b": 2, "compared": 2} and 0.0 <= d["closeness"] <= 1.0
    same = closeness(family["parent"], family["noisy"], points=32).to_dict()
    assert same["classes"] == {"a": 10, "b": 10, "compared": 10}


def test_analyze_says_why_closeness_is_missing(family, transfer):
    r = cli("analyze", family["parent"], transfer, "--points", "32", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["verdict"] == "related" and d["closeness"] is None
    assert "label spaces differ" in d["closeness_refused"]
    assert "Closeness not measured" in d["summary"]
    d = json.loads(cli("analyze", family["parent"], transfer, "--points", "32", "--json",
                       "--shared-labels").stdout)
    assert d["closeness_refused"] is None and d["closeness_detail"]["classes"]["compared"] == 2


@pytest.mark.parametrize("command", ["determine", "closeness"])
def test_labels_out_of_range_are_one_line(command, family, digits, tmp_path):
    p = tmp_path / "y42.npz"
    y = digits.y[:200].copy()
    y[5] = 42
    np.savez(p, x=digits.arrays["x"][:200], y=y)
    r = cli(command, family["parent"], family["noisy"], "--data", p)
    assert r.returncode == 1 and r.stdout == "" and r.stderr.count("\n") == 1
    assert ("y42.npz: labels run from 0 to 42, but parent.onnx predicts 10 classes (0-9): 1 of "
            "200 labels are out of its range") in r.stderr


def test_version():
    from onnx_lineage import __version__
    r = cli("--version")
    assert r.returncode == 0 and r.stdout == f"onnx-lineage {__version__}\n"


@pytest.mark.parametrize("command", ["inspect", "match", "determine", "closeness", "analyze",
                                     "tree", "demo"])
def test_help_shows_flags_as_flags(command):
    r = cli(command, "--help")
    assert r.returncode == 0 and "Usage: onnx-lineage " + command in r.stdout
    assert "<bool>" not in r.stdout and "--json" in r.stdout
    assert "--alphas" not in r.stdout  # the old name of determine's --grid is hidden


def test_grid_and_its_old_name(family):
    curves = {}
    for flag in ("--grid", "--alphas"):
        r = cli("determine", family["parent"], family["independent"], flag, "5", "--json")
        assert r.returncode == 0, r.stderr
        curves[flag] = [c["alpha"] for c in json.loads(r.stdout)["curve"]]
    assert curves["--grid"] == curves["--alphas"]
    assert {0.0, 0.25, 0.5, 0.75, 1.0} <= set(curves["--grid"]) and len(curves["--grid"]) <= 7
    r = cli("determine", family["parent"], family["independent"], "--grid", "5", "--alphas", "7")
    assert r.returncode == 2 and "former name of --grid" in r.stderr


def _forest_model(path):
    """A one-tree ai.onnx.ml TreeEnsembleClassifier over the 64 digit pixels, 10 classes: a model
    with no weights that onnx-lineage reads."""
    import onnx
    from onnx import TensorProto, helper
    node = helper.make_node(
        "TreeEnsembleClassifier", ["x"], ["label", "probabilities"], domain="ai.onnx.ml",
        classlabels_int64s=list(range(10)), nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2],
        nodes_featureids=[36, 0, 0], nodes_values=[0.5, 0.0, 0.0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_truenodeids=[1, 0, 0],
        nodes_falsenodeids=[2, 0, 0], class_treeids=[0, 0], class_nodeids=[1, 2],
        class_ids=[0, 8], class_weights=[1.0, 1.0], post_transform="NONE")
    g = helper.make_graph([node], "forest",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
                          [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                           helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                                         [None, 10])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                                  helper.make_opsetid("ai.onnx.ml", 3)]), path)


def test_undetermined_reasons_say_what_is_the_case(tmp_path):
    forest = tmp_path / "forest.onnx"
    _forest_model(forest)

    def reason(a, b):
        r = cli("determine", a, b, "--json")
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        assert d["verdict"] == "undetermined"
        return d["reason"]

    said = reason(forest, forest)
    assert "neither model has weights that onnx-lineage reads" in said and "convex" not in said
    said = reason(fixture_path("torch_mlp_legacy"), forest)
    assert "forest.onnx has no weights that onnx-lineage reads" in said and "convex" not in said
    said = reason(fixture_path("torch_mlp_legacy"), fixture_path("torch_cnn_bn"))
    assert "convex" not in said and "different architectures" in said
    assert "torch_mlp_legacy.onnx (3 dense)" in said and "torch_cnn_bn.onnx (2 conv, 1 dense)" in said
    said = reason(fixture_path("sklearn_logreg"), fixture_path("sklearn_logreg"))
    assert "single linear layer" in said and "a convex model" in said


def _token_model(path, length=64, vocab=30):
    """Token ids (int64, ``length`` a row) through a Cast and an embedding of ``vocab`` rows,
    averaged, into a 10-class head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(vocab, 6)).astype(np.float32), "emb"),
             numpy_helper.from_array(rng.normal(size=(10, 6)).astype(np.float32), "head")]
    nodes = [helper.make_node("Cast", ["ids"], ["ids32"], to=TensorProto.INT32),
             helper.make_node("Gather", ["emb", "ids32"], ["e"]),
             helper.make_node("ReduceMean", ["e"], ["m"], axes=[1], keepdims=0),
             helper.make_node("Gemm", ["m", "head"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "tokens",
                          [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", length])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
                          inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def _two_input_model(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = np.random.default_rng(0).normal(size=(10, 68)).astype(np.float32)
    g = helper.make_graph([helper.make_node("Concat", ["x", "meta"], ["c"], axis=1),
                           helper.make_node("Gemm", ["c", "w"], ["logits"], transB=1)], "two",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64]),
                           helper.make_tensor_value_info("meta", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
                          [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_without_data_errors_say_the_builtin_digits_were_used(tmp_path, digits):
    tokens, two = tmp_path / "tokens.onnx", tmp_path / "two.onnx"
    _token_model(tokens)
    _two_input_model(two)
    builtin = "the built-in digits (used because no --data was given"
    r = cli("determine", tokens, tokens)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "input 'ids' expects integers (int64), but values in " + builtin in r.stderr
    r = cli("closeness", two, two)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "no data for input(s) 'meta' (float32, shape [?, 4]); arrays in " + builtin in r.stderr
    assert "(feeding 'x'); give a --data file with an array named after each input" in r.stderr
    p = tmp_path / "x.npz"
    np.savez(p, x=digits.arrays["x"][:50])
    r = cli("determine", two, two, "--data", p)
    assert r.returncode == 1 and "arrays in x.npz: x (feeding 'x')" in r.stderr
    assert "built-in" not in r.stderr


@pytest.mark.parametrize("command", ["determine", "closeness", "analyze"])
def test_token_ids_outside_the_vocabulary_are_one_line(command, tmp_path):
    tokens = tmp_path / "tokens.onnx"
    _token_model(tokens)
    ids = np.random.default_rng(1).integers(0, 30, size=(100, 64))
    ids[7, 3] = 2878
    np.savez(tmp_path / "ids.npz", ids=ids)
    r = cli(command, tokens, tokens, "--data", tmp_path / "ids.npz")
    assert r.returncode == 1 and r.stdout == "" and r.stderr.count("\n") == 1
    assert ("tokens.onnx: input 'ids' indexes an embedding of 30 rows (token ids 0-29), but "
            "ids.npz gives it ids from 0 to 2878 in 'ids' (1 of 6400 out of range)") in r.stderr
    if command == "closeness":  # the largest id the table has is fine
        ids[7, 3] = 29
        np.savez(tmp_path / "ids.npz", ids=ids)
        r = cli(command, tokens, tokens, "--data", tmp_path / "ids.npz", "--points", "16")
        assert r.returncode == 0, r.stderr


def test_determine_says_b_is_a_merged_adapter_of_a_and_its_rank(tmp_path):
    from tests.analyses.test_lowrank import SIZES, adapted
    from tests.evidence.models import random_mlp, save
    parent = random_mlp(0, SIZES)
    a = save(*parent, tmp_path / "parent.onnx")
    b = save(*adapted(*parent, [4, 4, 4, 4]), tmp_path / "adapter.onnx")
    r = cli("determine", a, b)
    assert r.returncode == 0, r.stderr
    assert "B - A" in r.stdout and "low-rank" in r.stdout  # a row of the table (wrapped)
    d = json.loads(cli("determine", a, b, "--json").stdout)
    assert d["verdict"] == "related" and d["difference"]["adapter"] and d["difference"]["rank"] == 4
    other = save(*random_mlp(7, SIZES), tmp_path / "other.onnx")
    assert json.loads(cli("determine", a, other, "--json").stdout)["difference"] is None


def test_attribute_gives_a_merge_s_parents_their_shares_and_a_stranger_none(tmp_path):
    from tests.analyses.test_attribution import SIZES, _combine, _moved
    from tests.evidence.models import random_mlp, save
    base = random_mlp(0, SIZES)
    p1, p2 = _moved(base, 1), _moved(base, 2)
    paths = [save(*p1, tmp_path / "p1.onnx"), save(*p2, tmp_path / "p2.onnx"),
             save(*random_mlp(9, SIZES), tmp_path / "x.onnx")]
    b = save(*_combine([p1, p2], [0.25, 0.75]), tmp_path / "merge.onnx")
    r = cli("attribute", b, "--parents", *paths, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["recipe"] == "linear" and [s["related"] for s in d["parents"]] == [True, True, False]
    assert [round(s["share"], 3) for s in d["parents"][:2]] == [0.25, 0.75]
    assert d["parents"][2]["share"] is None
    table = cli("attribute", b, "--parents", paths[0], "--parents", paths[1])
    assert table.returncode == 0 and "linear average" in table.stdout
    assert cli("attribute", b).returncode == 2  # no parent: a usage error


def test_tree_names_each_merge_s_recipe_parents_and_base(tmp_path):
    from tests.analyses.test_attribution import SIZES, _combine, _moved, ties
    from tests.evidence.models import random_mlp, save
    base = random_mlp(0, SIZES)
    p1, p2, p3 = (_moved(base, s) for s in (1, 2, 3))
    for name, model in {"base": base, "p1": p1, "p2": p2, "p3": p3,
                        "avg": _combine([p1, p2], [0.25, 0.75]),
                        "ta": _combine([p1, p2, p3], [0.9, 0.6, 0.5], base=base),
                        "ties": ties([p1, p2, p3], base)}.items():
        save(*model, tmp_path / f"{name}.onnx")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((300, 64)).astype(np.float32))
    r = cli("tree", tmp_path, "--data", tmp_path / "x.npy", "-q")
    assert r.returncode == 0, r.stderr
    assert "- merge: avg is a linear merge of p2 0.750, p1 0.250\n" in r.stdout, r.stdout
    assert "- merge: ta is a task arithmetic merge of p1 0.900, p2 0.600, p3 0.500 from base" in (
        r.stdout)
    assert "- merge: ties is a ties merge of" in r.stdout
    d = json.loads(cli("tree", tmp_path, "--data", tmp_path / "x.npy", "--json").stdout)
    assert {m["child"]: m["base"] for m in d["merges"]} == {"avg": None, "ta": "base",
                                                             "ties": "base"}
    assert not {"avg", "ta", "ties"} & set(d["roots"])
    assert not any(e["parent"] in ("avg", "ta", "ties") for e in d["edges"])


def test_determine_and_analyze_say_when_b_sits_between_a_and_another_model(tmp_path):
    from tests.analyses.test_attribution import SIZES, _combine, _moved
    from tests.evidence.models import random_mlp, save
    base = random_mlp(0, SIZES)
    p1, p2 = _moved(base, 1), _moved(base, 2)
    a, c = save(*p1, tmp_path / "a.onnx"), save(*p2, tmp_path / "c.onnx")
    b = save(*_combine([p1, p2], [0.4, 0.6]), tmp_path / "b.onnx")
    d = json.loads(cli("determine", a, b, "--also", c, "--json").stdout)
    assert d["between"]["recipe"] == "linear"
    assert [round(s["share"], 3) for s in d["between"]["parents"]] == [0.4, 0.6]
    r = cli("analyze", a, b, "--also", c, "--points", 32, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "linear average" in out["summary"] and out["determination"]["between"]["recipe"] == "linear"
    assert json.loads(cli("determine", a, b, "--json").stdout)["between"] is None


def test_determine_copies_bounds_the_basin_tests_draws(tmp_path):
    """Two independent MLPs: the basin test runs, and draws at most --copies copies."""
    from tests.evidence.models import random_mlp, save
    sizes = (64, 32, 32, 10)
    a, b = (save(*random_mlp(seed, sizes), tmp_path / f"m{seed}.onnx") for seed in (0, 1))
    drawn = {}
    for copies in ("2", None):
        r = cli("determine", a, b, "--json", "--rows", "200",
                *(("--copies", copies) if copies else ()))
        assert r.returncode == 0, r.stderr
        basin = next(t for t in json.loads(r.stdout)["tests"] if t["name"] == "basin")
        drawn[copies] = basin["monte_carlo"]["copies"]
    assert drawn["2"] <= 2 < drawn[None]
