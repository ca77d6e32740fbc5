"""benchmarks/merges.py's parts that the decoder family adds: the adapters' truth per layer of a
decoder (its LoRA targets adapted, every other layer not), and the p_share table's reading."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
torch = pytest.importorskip("torch")
import llm_derivations as D  # noqa: E402
import merges  # noqa: E402
from harness.export import batch_axes, export_onnx  # noqa: E402
from harness.llama import Config, Llama  # noqa: E402

TINY = Config(hidden=32, layers=2, heads=4, kv_heads=2, ff=64, context=16)


def _export(model, path: Path) -> Path:
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 16)))
    return export_onnx(model.eval(), (ids,), path, ("input_ids",),
                       dynamic_axes=batch_axes(("input_ids",), tokens=True))


def _random_lora(model, rank: int):
    """``model`` with a rank-``rank`` LoRA on every target whose factors are random (no
    training), merged."""
    def fill(m):
        with torch.no_grad():
            for module in m.modules():
                if isinstance(module, D.LoRALinear):
                    module.b.normal_(0.0, 0.05)
    return D.lora(model, rank, fill, seed=rank)


@pytest.mark.parametrize("rank", [2, 8])
def test_a_decoders_lora_targets_are_expected_at_their_rank_and_every_other_layer_at_0(
        tmp_path, rank):
    torch.manual_seed(0)
    base = Llama(TINY).eval()
    child = _random_lora(base, rank)
    targets = tuple(t.split(".")[1] for t in D.LORA_TARGETS)
    rows = merges._ranks("decoder", 0, _export(base, tmp_path / "base.onnx"),
                         [(rank, _export(child, tmp_path / "child.onnx"))],
                         lambda layer: any(f"/{t}/" in layer.node for t in targets))
    layers = rows[0]["layers"]
    adapted = [x for x in layers if x["expected"]]
    assert len(adapted) == len(D.LORA_TARGETS) * TINY.layers
    assert all(x["expected"] == min(rank, *x["shape"]) for x in adapted)
    assert [x["found"] for x in layers] == [x["expected"] for x in layers]


def test_the_p_share_table_counts_true_parents_and_the_fine_tunes_other_candidate():
    rows = [{"family": "f", "recipe": "linear", "truth": [0.5, 0.5], "p_shares": [1e-5, 0.2]},
            {"family": "f", "recipe": "slerp", "truth": [0.3, 0.7], "p_shares": [1e-4, 1e-6]},
            {"family": "f", "recipe": "fine-tune", "truth": None, "p_shares": [1e-9, 0.003]},
            {"family": "f", "recipe": "none", "truth": None, "p_shares": [None, None]}]
    table = merges._p_share_table(rows)
    assert table[-1].startswith("| f | 3 of 4 | 1 of 1 | 0.003 |")
