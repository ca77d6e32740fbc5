"""benchmarks/llm_family.py and its parts: the disguises of llm_derivations.py keep a decoder's
function, MATCH (llm_match.py) finds a permuted copy and not an independent model, and --quick
builds the family and compares every pair (slow: trains and exports six tiny decoders)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
torch = pytest.importorskip("torch")
import llm_derivations as D  # noqa: E402
import llm_family  # noqa: E402
import llm_match  # noqa: E402
from harness.llama import Config, Llama  # noqa: E402

TINY = Config(hidden=32, layers=2, heads=4, kv_heads=2, ff=64, context=16)


def _tiny(seed: int) -> Llama:
    """A random decoder whose norm gains are not ones (so folding them matters)."""
    torch.manual_seed(seed)
    model = Llama(TINY)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return model.eval()


def _ids(seed: int = 0):
    return np.random.default_rng(seed).integers(0, 256, (8, 16))


@pytest.mark.parametrize("make", [D.permute_heads, D.permute_ffn, D.rotate_stream])
def test_each_disguise_keeps_the_function_and_changes_the_weights(make):
    model = _tiny(0)
    copy = make(model, np.random.default_rng(1))
    ids = torch.from_numpy(_ids())
    with torch.no_grad():
        assert torch.allclose(model(ids), copy(ids), atol=1e-5)
    a, b = model.state_dict(), copy.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in b)


def test_match_finds_a_permuted_copy_and_not_an_independent_model():
    model = _tiny(0)
    ids = _ids()
    acts = llm_match.ffn_activations(model, ids)
    permuted = llm_match.ffn_activations(D.permute_ffn(model, np.random.default_rng(1)), ids)
    other = llm_match.ffn_activations(_tiny(5), ids)
    assert llm_match.match_test(acts, permuted).p_value < 1e-10
    assert llm_match.match_test(acts, other).p_value > 1e-3


@pytest.mark.slow
def test_quick_run_builds_checks_and_compares_every_pair(tmp_path):
    doc = llm_family.run(llm_family.quick_plan(), [11, 12, 13], tmp_path)
    kinds = [r["kind"] for r in doc["pairs"]]
    assert kinds.count("derived") == 2 and kinds.count("independent") == 6
    assert all(c["same"] for c in doc["checks"])
    assert all(m["export_diff"] < 1e-4 for m in doc["models"].values())
    assert doc["models"]["parent"]["loss"] < 4.0  # log(256) = 5.5: it learned something
    assert all(r["lineage"]["error"] is None for r in doc["pairs"])
    derived = [r for r in doc["pairs"] if r["kind"] == "derived"]
    assert all(r["match"]["p_value"] < 1e-6 for r in derived)
    assert "| parent | ffn_permuted |" in llm_family.summary(doc)
