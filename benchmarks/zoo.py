"""Build the benchmark lineage zoo: real models, trained here with fixed seeds on the CPU.

    python benchmarks/zoo.py OUT_DIR [--reduced]

Needs the ``[fixtures]`` extra (torch 2.13 CPU, skl2onnx). Data: scikit-learn's digits (ships
offline). Families (parents trained on the first half of the data):

* ``mlp``  PyTorch MLP 64-128-64-10
* ``cnn``  PyTorch CNN with BatchNorm (1x8x8 input), exported with BatchNorm folded
* ``enc``  PyTorch token encoder with two inputs (``input_ids``, ``attention_mask``): each image's
  64 pixel intensities (0-16) as a sequence of tokens, embeddings, self-attention, LayerNorm
* ``skl``  scikit-learn MLPClassifier 64-64-32-10 (skl2onnx)

Derived members (relation "related"): fine-tuning ladder (1, 3, 10, 30 epochs on the other half),
a large learning rate on shifted data, pruning ladder (30-90%), prune 90% + fine-tune, weight noise
ladder, adversarial (FGSM) fine-tuning, int8 in three formats, re-exports (dynamo exporter, BN
kept), permuted and rescaled copies (the encoder's residual stream permuted too), a new head on a
fine-tuned trunk, a three-generation chain, siblings, and weights carried from PyTorch into
scikit-learn then trained further. Negatives (relation "unrelated"): independent seeds, other
data, weight decay, distillation from scratch. ``--reduced``: every family with shorter ladders,
one negative and two calibration models (the zoo CI checks).

Writes ``OUT_DIR/<family>/<member>.onnx`` and ``OUT_DIR/zoo.json`` listing every pair to test
(``a``, ``b``, ``relation``, ``ladder``, ``level``, ``split``: ``calibration`` for the independent
pairs that set the thresholds, ``evaluation`` for the rest). The TensorFlow family comes from
``benchmarks/zoo_tf.py`` in its own environment.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import harness
from families import Encoder, cnn, noisy, permuted_mlp  # the architectures and derivations shared
from harness import cli, results, training
from harness.export import export_onnx

warnings.filterwarnings("ignore")
logging.getLogger().setLevel(logging.ERROR)
torch.set_num_threads(2)
harness.checkout_first()


def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    return x[order], y[order], d.data[order].astype(np.int64)


X, Y, TOKENS = digits()
HALF = len(X) // 2
A_IDX, B_IDX = np.arange(HALF), np.arange(HALF, len(X))


# -- architectures ---------------------------------------------------------------------------

def mlp():
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def inputs_of(family, idx, shift=0.0):
    if family == "enc":
        ids = torch.from_numpy(TOKENS[idx])
        return (ids, torch.ones_like(ids))
    x = torch.from_numpy(X[idx])
    return (x + shift,)


# -- training --------------------------------------------------------------------------------

def train(model, family, idx, epochs, lr=3e-3, seed=0, wd=0.0, shift=0.0, targets=None,
          adversarial=0.0, masks=None, sgd=False):
    """Mini-batch (128) training: Adam from scratch, SGD with momentum for fine-tuning ladders.

    Adam's first steps move every weight by about ``lr`` whatever its gradient, so one epoch of
    Adam fine-tuning can move a model further than ten; SGD makes drift grow with the epochs.
    """
    def loss(model, batch):
        inp = inputs_of(family, batch, shift)
        if adversarial and family != "enc":
            x = inp[0].clone().requires_grad_(True)
            (g,) = torch.autograd.grad(
                nn.functional.cross_entropy(model(x), torch.from_numpy(Y[batch])), x)
            inp = ((x + adversarial * g.sign()).clamp(0, 1).detach(),)
        out = model(*inp)
        if targets is not None:
            return nn.functional.kl_div(out.log_softmax(-1), targets[batch], reduction="batchmean")
        return nn.functional.cross_entropy(out, torch.from_numpy(Y[batch]))

    return training.train(model, idx, loss, epochs, lr, seed, sgd=sgd, weight_decay=wd,
                          masks=masks.items() if masks else ())


def new(family, seed):
    torch.manual_seed(seed)
    return {"mlp": mlp, "cnn": cnn, "enc": Encoder}[family]()


def weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding))]


def prune(model, frac):
    """Global magnitude pruning of the Linear/Conv weights; returns the masks."""
    ws = [w for w in weights(model) if w.dim() > 1]
    cut = torch.quantile(torch.cat([w.detach().abs().flatten() for w in ws]), frac)
    masks = {}
    with torch.no_grad():
        for w in ws:
            masks[w] = (w.abs() > cut).float()
            w.mul_(masks[w])
    return masks


def obfuscate_cnn(model, seed):
    """Permute the channels of the first conv (with its BatchNorm) and the second conv's inputs."""
    rng = np.random.default_rng(seed)
    conv1, bn1, conv2 = model[1], model[2], model[4]
    perm = torch.from_numpy(rng.permutation(conv1.out_channels))
    with torch.no_grad():
        conv1.weight.copy_(conv1.weight[perm])
        conv1.bias.copy_(conv1.bias[perm])
        for t in (bn1.weight, bn1.bias, bn1.running_mean, bn1.running_var):
            t.copy_(t[perm])
        conv2.weight.copy_(conv2.weight[:, perm])
    return model


def obfuscate_enc(model, seed):
    """Permute the residual stream (embeddings, value projection, LayerNorm and every layer that
    reads them) and the feed-forward units (with a positive rescaling): the same function."""
    rng = np.random.default_rng(seed)
    p = torch.from_numpy(rng.permutation(model.norm.normalized_shape[0]))
    q = torch.from_numpy(rng.permutation(model.ff.out_features))
    s = torch.from_numpy(rng.uniform(0.5, 2.0, model.ff.out_features).astype(np.float32))
    with torch.no_grad():
        for emb in (model.tok, model.pos):
            emb.weight.copy_(emb.weight[:, p])
        for lin in (model.q, model.k, model.v, model.ff):
            lin.weight.copy_(lin.weight[:, p])
        model.v.weight.copy_(model.v.weight[p])
        model.v.bias.copy_(model.v.bias[p])
        model.norm.weight.copy_(model.norm.weight[p])
        model.norm.bias.copy_(model.norm.bias[p])
        model.ff.weight.copy_(model.ff.weight[q] * s[:, None])
        model.ff.bias.copy_(model.ff.bias[q] * s)
        model.head.weight.copy_(model.head.weight[:, q] / s[None, :])
    return model


def soft_targets(model, family):
    with torch.no_grad():
        return model(*inputs_of(family, np.arange(len(X)))).softmax(-1)


# -- export ----------------------------------------------------------------------------------

def export(model, family, path, dynamo=False, keep_bn=False):
    example = tuple(t[:2] for t in inputs_of(family, np.arange(2)))
    names = ["input_ids", "attention_mask"] if family == "enc" else ["x"]
    if dynamo:
        prog = torch.onnx.export(model, example, dynamo=True, verbose=False,
                                 dynamic_shapes=({0: torch.export.Dim("batch")},))
        prog.save(str(path))
        return
    export_onnx(model, example, path, names, keep_bn=keep_bn)


def quantize(src, out_dir, name, family):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    class Reader:
        def __init__(self):
            self.it = iter([{"x": X[i:i + 64]} for i in range(0, 512, 64)])

        def get_next(self):
            return next(self.it, None)

    quantize_dynamic(str(src), str(out_dir / f"{name}_int8_dynamic.onnx"), weight_type=QuantType.QInt8)
    members = [f"{name}_int8_dynamic"]
    if family != "enc":
        for fmt, tag in ((QuantFormat.QDQ, "qdq"), (QuantFormat.QOperator, "qoperator")):
            quantize_static(str(src), str(out_dir / f"{name}_int8_{tag}.onnx"), Reader(),
                            quant_format=fmt, weight_type=QuantType.QInt8, per_channel=(tag == "qdq"))
            members.append(f"{name}_int8_{tag}")
    return members


# -- families --------------------------------------------------------------------------------

def build_torch_family(family, out, reduced):
    out.mkdir(parents=True, exist_ok=True)
    pairs = []
    ep = 20 if family != "enc" else 12
    parent = train(new(family, 0), family, A_IDX, ep)
    export(parent, family, out / "parent.onnx")

    def member(name, model, relation, ladder=None, level=None, a="parent", **kw):
        export(model, family, out / f"{name}.onnx", **kw)
        pairs.append(dict(a=f"{family}/{a}", b=f"{family}/{name}", relation=relation, ladder=ladder,
                          level=level, split="evaluation"))

    ft_epochs = (1, 10) if reduced else (1, 3, 10, 30)
    for e in ft_epochs:
        member(f"ft_{e}", train(copy.deepcopy(parent), family, B_IDX, e, lr=0.01, seed=1, sgd=True),
               "related", "finetune", e)
    fracs = (0.5, 0.9) if reduced else (0.3, 0.5, 0.7, 0.9)
    for f in fracs:
        member(f"prune_{int(f * 100)}", _pruned(parent, f), "related", "prune", f)
    levels = (0.05, 0.3) if reduced else (0.02, 0.05, 0.1, 0.3)
    for lv in levels:
        member(f"noise_{lv}", noisy(parent, lv, 7), "related", "noise", lv)
    for q in quantize(out / "parent.onnx", out, "parent", family):
        pairs.append(dict(a=f"{family}/parent", b=f"{family}/{q}", relation="related", ladder=None,
                          level=None, split="evaluation"))
    if family == "mlp":
        member("obfuscated", permuted_mlp(parent, 3), "related")
    if family == "enc":
        member("obfuscated", obfuscate_enc(copy.deepcopy(parent), 3), "related")
    if family == "cnn":
        member("obfuscated", obfuscate_cnn(copy.deepcopy(parent), 3), "related")
        member("bn_kept", parent, "related", keep_bn=True)
    if not reduced:
        member("ft_big_lr_shift", train(copy.deepcopy(parent), family, B_IDX, 10, lr=2e-2, seed=2,
                                        shift=0.1 if family != "enc" else 0.0), "related")
        pruned = copy.deepcopy(parent)
        masks = prune(pruned, 0.9)
        member("prune_90_ft", train(pruned, family, B_IDX, 10, lr=1e-3, seed=3, masks=masks), "related")
        if family != "enc":
            member("adversarial_ft", train(copy.deepcopy(parent), family, A_IDX, 10, lr=1e-3, seed=4,
                                           adversarial=0.05), "related")
        gen = parent
        for g in (1, 2, 3):
            gen = train(copy.deepcopy(gen), family, B_IDX, 5, lr=0.01, seed=10 + g, sgd=True)
            member(f"chain_{g}", gen, "related", "chain", g)
            if g > 1:
                pairs.append(dict(a=f"{family}/chain_{g - 1}", b=f"{family}/chain_{g}",
                                  relation="related", ladder=None, level=None, split="evaluation"))
        sib = train(copy.deepcopy(parent), family, A_IDX, 5, lr=1e-3, seed=20)
        member("sibling", sib, "related")
        pairs.append(dict(a=f"{family}/sibling", b=f"{family}/ft_3", relation="related",
                          ladder=None, level=None, split="evaluation"))
        # new head: the trunk fine-tuned with a 5-class head (digit mod 5)
        head = copy.deepcopy(parent)
        _replace_head(head, family)
        y_saved = Y.copy()
        Y[:] = y_saved % 5
        train(head, family, B_IDX, 5, lr=1e-3, seed=5)
        Y[:] = y_saved
        member("new_head", head, "related")
        if family == "mlp":
            member("dynamo", parent, "related", dynamo=True)
    # negatives
    seeds = (1,) if reduced else (1, 2)
    for s in seeds:
        member(f"indep_{s}", train(new(family, 100 + s), family, A_IDX, ep, seed=100 + s), "unrelated")
    if not reduced:
        member("other_data", train(new(family, 200), family, B_IDX, ep, seed=200), "unrelated")
        member("weight_decay", train(new(family, 300), family, A_IDX, ep, seed=300, wd=1e-2),
               "unrelated")
        member("distilled", train(new(family, 400), family, np.arange(len(X)), ep, seed=400,
                                  targets=soft_targets(parent, family)), "unrelated")
    # calibration: independent pairs among fresh seeds, never used for evaluation
    cal_seeds = (500, 501) if reduced else (500, 501, 502)
    for s in cal_seeds:
        export(train(new(family, s), family, A_IDX, ep, seed=s), family, out / f"cal_{s}.onnx")
    for i, s in enumerate(cal_seeds):
        for t in cal_seeds[i + 1:]:
            pairs.append(dict(a=f"{family}/cal_{s}", b=f"{family}/cal_{t}", relation="unrelated",
                              ladder=None, level=None, split="calibration"))
    return pairs, parent


def _pruned(parent, frac):
    m = copy.deepcopy(parent)
    prune(m, frac)
    return m


def _replace_head(model, family):
    if family == "enc":
        model.head = nn.Linear(64, 5)
    else:
        model[-1] = nn.Linear(model[-1].in_features, 5)


def build_sklearn_family(out, reduced, torch_mlp_parent=None):
    """scikit-learn MLPClassifier family, plus torch weights carried into scikit-learn."""
    from onnx import save
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier

    out.mkdir(parents=True, exist_ok=True)
    pairs = []

    def fit(seed, idx, epochs, init=None, lr=1e-3, alpha=1e-4, hidden=(64, 32)):
        clf = MLPClassifier(hidden_layer_sizes=hidden, max_iter=epochs, learning_rate_init=lr,
                            random_state=seed, alpha=alpha, tol=0, n_iter_no_change=10**6,
                            warm_start=init is not None)
        if init is not None:
            clf.fit(X[idx[:50]], Y[idx[:50]])  # sets up the structure, then overwritten
            clf.coefs_ = [c.copy() for c in init.coefs_]
            clf.intercepts_ = [b.copy() for b in init.intercepts_]
        clf.fit(X[idx], Y[idx])
        return clf

    def save_member(name, clf):
        save(to_onnx(clf, X[:1], options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3}),
             out / f"{name}.onnx")

    def member(name, clf, relation, ladder=None, level=None):
        save_member(name, clf)
        pairs.append(dict(a="skl/parent", b=f"skl/{name}", relation=relation, ladder=ladder,
                          level=level, split="evaluation"))

    parent = fit(0, A_IDX, 150)
    save_member("parent", parent)
    for e in ((1, 10) if reduced else (1, 3, 10, 30)):
        member(f"ft_{e}", fit(0, B_IDX, e, parent), "related", "finetune", e)
    for s in ((1,) if reduced else (1, 2)):
        member(f"indep_{s}", fit(100 + s, A_IDX, 150), "unrelated")
    if not reduced:
        member("weight_decay", fit(300, A_IDX, 150, alpha=1.0), "unrelated")
    cal = (500, 501) if reduced else (500, 501, 502)
    for s in cal:
        save_member(f"cal_{s}", fit(s, A_IDX, 150))
    for i, s in enumerate(cal):
        for t in cal[i + 1:]:
            pairs.append(dict(a=f"skl/cal_{s}", b=f"skl/cal_{t}", relation="unrelated", ladder=None,
                              level=None, split="calibration"))
    if torch_mlp_parent is not None and not reduced:
        # weights carried from PyTorch into scikit-learn, then trained further there
        lin = [m for m in torch_mlp_parent if isinstance(m, nn.Linear)]
        carried = fit(0, A_IDX, 1, hidden=(128, 64))
        carried.coefs_ = [m.weight.detach().numpy().T.copy() for m in lin]
        carried.intercepts_ = [m.bias.detach().numpy().copy() for m in lin]
        carried = fit(0, B_IDX, 5, carried, hidden=(128, 64))
        save_member("carried_from_torch", carried)
        pairs.append(dict(a="mlp/parent", b="skl/carried_from_torch", relation="related",
                          ladder=None, level=None, split="evaluation"))
    return pairs


def main():
    ap = cli.parser(__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--reduced", action="store_true",
                    help="the small zoo CI runs (about a minute with its accuracy check)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    pairs = []
    families = ("mlp", "cnn", "enc")
    parents = {}
    for fam in families:
        t = time.perf_counter()
        fam_pairs, parents[fam] = build_torch_family(fam, args.out / fam, args.reduced)
        pairs += fam_pairs
        print(f"{fam}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    pairs += build_sklearn_family(args.out / "skl", args.reduced, parents["mlp"])
    results.write_json(args.out / "zoo.json", {"pairs": pairs, "reduced": args.reduced})
    n_models = len(list(args.out.glob("*/*.onnx")))
    print(f"zoo: {n_models} models, {len(pairs)} pairs in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
