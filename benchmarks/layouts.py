"""Real layouts: the cases of issue "Real models as they ship", with models trained here.

    python benchmarks/layouts.py /tmp/layouts --json benchmarks/results/layouts.json
    python benchmarks/layouts.py --from benchmarks/results/layouts.json --markdown

Every model is trained on scikit-learn's digits (CPU, seconds each); every pair gets ``match`` and
``determine`` (default alpha 0.01) through the public API, and the script records the verdict,
the p-value, what the correspondence did (transforms, limits, pruned layers, the smallest matched
cosine) and the time. Cases:

* ``stateful``: a voice-activity-style detector (the input read in frames, a GRU whose initial
  state is an input ``[1, batch, 16]``, a scalar ``sr``), three releases (trained, fine-tuned,
  fine-tuned again) and an independent one; fed from a file in the models' own layout.
* ``res_cnn``: a residual CNN (stem, two residual blocks on one 16-channel stream), a copy with the
  stream and block channels permuted (the same function), that copy fine-tuned 3 epochs, and an
  independent one.
* ``mobile_se``: a MobileNet-style CNN with inverted residual blocks, depthwise convolutions and
  squeeze-excite gates, fine-tuned, and an independent one.
* ``grouped``: a ResNeXt-style CNN (a bottleneck block whose 3x3 convolution has 4 groups), a copy
  with the groups reordered as blocks (the channels that feed them and the groups' own channels
  with them; the same function), that copy fine-tuned, and an independent one.
* ``pruned``: an MLP 64-128-128-128-10 and its width-pruned child (the 32 weakest units of every
  hidden layer removed, then fine-tuned), compared both ways, and an independent MLP pruned the
  same way.
* ``depth``: a 6-block residual token encoder and a 3-block cousin made from its blocks 1, 3
  and 5 with its embedding tables, then fine-tuned, and an independent 3-block encoder.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import harness

harness.checkout_first()
from families import ResCNN, dataset, export_torch, mlp, train  # noqa: E402
from harness import cli, results  # noqa: E402
from harness.export import export_onnx  # noqa: E402
from harness.machine import machine  # noqa: E402

from onnx_lineage.analyses.determination import determine  # noqa: E402
from onnx_lineage.data import Dataset  # noqa: E402
from onnx_lineage.matching import match  # noqa: E402

FINE_TUNE = {"epochs": 3, "lr": 1e-3}


# -- models ------------------------------------------------------------------------------------

class Detector(nn.Module):
    """64 samples read as 8 frames of 8, a frame layer, a GRU from the given state, a head."""

    def __init__(self):
        super().__init__()
        self.frame = nn.Linear(8, 24)
        self.gru = nn.GRU(24, 32, batch_first=True)
        self.head = nn.Linear(32, 10)

    def forward(self, input, state=None, sr=None):
        frames = input.reshape(input.shape[0], -1, 8)
        if sr is not None:
            frames = frames * (sr.float() / 16000.0)
        if state is None:
            state = torch.zeros(1, input.shape[0], 32)
        h, _ = self.gru(torch.relu(self.frame(frames)), state)
        return self.head(h[:, -1])


class StatefulExport(nn.Module):
    """The detector as such models ship: ``(input, state, sr) -> (logits, stateN)``."""

    def __init__(self, det):
        super().__init__()
        self.det = det

    def forward(self, input, state, sr):
        frames = input.reshape(input.shape[0], -1, 8) * (sr.float() / 16000.0)
        h, state_n = self.det.gru(torch.relu(self.det.frame(frames)), state)
        return self.det.head(h[:, -1]), state_n


class SE(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.a, self.b = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.b(torch.relu(self.a(x.mean((2, 3), keepdim=True)))))


class Inverted(nn.Module):
    def __init__(self, c, t=4):
        super().__init__()
        h = c * t
        self.body = nn.Sequential(nn.Conv2d(c, h, 1), nn.BatchNorm2d(h), nn.ReLU6(),
                                  nn.Conv2d(h, h, 3, padding=1, groups=h), nn.BatchNorm2d(h),
                                  nn.ReLU6(), SE(h), nn.Conv2d(h, c, 1), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.body(x)


class MobileSE(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.stem = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, c, 3, padding=1),
                                  nn.BatchNorm2d(c), nn.ReLU6())
        self.blocks = nn.Sequential(Inverted(c), SE(c), Inverted(c))
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class NeXt(nn.Module):
    """Stem 1->16, one bottleneck block (1x1 16->32, 3x3 with 4 groups, 1x1 32->16, each with
    BatchNorm) on a residual stream, pooling, head."""

    def __init__(self, c=16, h=32, groups=4):
        super().__init__()
        self.stem = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, c, 3, padding=1),
                                  nn.BatchNorm2d(c), nn.ReLU())
        self.up, self.bn1 = nn.Conv2d(c, h, 1), nn.BatchNorm2d(h)
        self.grouped, self.bn2 = nn.Conv2d(h, h, 3, padding=1, groups=groups), nn.BatchNorm2d(h)
        self.down, self.bn3 = nn.Conv2d(h, c, 1), nn.BatchNorm2d(c)
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        s = self.stem(x)
        y = torch.relu(self.bn2(self.grouped(torch.relu(self.bn1(self.up(s))))))
        return self.head(torch.relu(s + self.bn3(self.down(y))).mean((2, 3)))


class Block(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.norm, self.up, self.down = nn.LayerNorm(d), nn.Linear(d, f), nn.Linear(f, d)

    def forward(self, h):
        return h + self.down(torch.relu(self.up(self.norm(h))))


class DeepEncoder(nn.Module):
    """Token and position embeddings, ``blocks`` pre-LN feed-forward residual blocks, a final
    LayerNorm, the mean over positions and a head."""

    def __init__(self, blocks=6, d=32, f=64):
        super().__init__()
        self.tok, self.pos = nn.Embedding(17, d), nn.Embedding(64, d)
        self.blocks = nn.ModuleList(Block(d, f) for _ in range(blocks))
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 10)

    def forward(self, input_ids, attention_mask):
        h = self.tok(input_ids) + self.pos(torch.arange(input_ids.shape[1]).unsqueeze(0))
        for b in self.blocks:
            h = b(h)
        m = attention_mask.unsqueeze(-1).float()
        return self.head((self.norm(h) * m).sum(1) / m.sum(1))


# -- derived models ------------------------------------------------------------------------------

def fine_tuned(model, data, seed):
    return train(copy.deepcopy(model), data, data.second, FINE_TUNE["epochs"], FINE_TUNE["lr"],
                 seed)


def permuted_res_cnn(model: ResCNN, seed: int) -> ResCNN:
    """The stream's channels and each block's inner channels permuted: the same function."""
    model = copy.deepcopy(model)
    rng = np.random.default_rng(seed)
    c = model.head.in_features
    s = torch.from_numpy(rng.permutation(c))
    conv, bn = model.stem[1], model.stem[2]
    with torch.no_grad():
        _rows(conv, s)
        _bn(bn, s)
        for blk in model.blocks:
            h = torch.from_numpy(rng.permutation(blk.c1.out_channels))
            blk.c1.weight.copy_(blk.c1.weight[h][:, s])
            blk.c1.bias.copy_(blk.c1.bias[h])
            _bn(blk.b1, h)
            blk.c2.weight.copy_(blk.c2.weight[s][:, h])
            blk.c2.bias.copy_(blk.c2.bias[s])
            _bn(blk.b2, s)
        model.head.weight.copy_(model.head.weight[:, s])
    return model


def groups_reordered(model: NeXt, seed: int) -> NeXt:
    """The grouped convolution's groups in another order, each group's input channels (the
    1x1 conv before it) moving with it and shuffled within it, its own channels shuffled within
    their group: the same function."""
    model = copy.deepcopy(model)
    rng = np.random.default_rng(seed)
    g = model.grouped
    n, size = g.groups, g.out_channels // g.groups
    src = rng.permutation(n)
    local = [rng.permutation(size) for _ in range(n)]
    inputs = torch.from_numpy(np.concatenate([src[h] * size + local[h] for h in range(n)]))
    outputs = torch.from_numpy(np.concatenate([src[h] * size + rng.permutation(size)
                                               for h in range(n)]))
    with torch.no_grad():
        _rows(model.up, inputs)
        _bn(model.bn1, inputs)
        w = g.weight.clone()
        for h in range(n):  # new group h: old group src[h]'s filters reading its inputs' new order
            rows = outputs[h * size:(h + 1) * size]
            g.weight[h * size:(h + 1) * size] = w[rows][:, torch.from_numpy(local[h])]
        g.bias.copy_(g.bias[outputs])
        _bn(model.bn2, outputs)
        model.down.weight.copy_(model.down.weight[:, outputs])
    return model


def _rows(conv, p):
    conv.weight.copy_(conv.weight[p])
    conv.bias.copy_(conv.bias[p])


def _bn(bn, p):
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        t.copy_(t[p])


def width_pruned(model, drop: int):
    """The ``drop`` weakest units (incoming-weight norm) of every hidden layer removed."""
    lin = [m for m in model if isinstance(m, nn.Linear)]
    keeps = [torch.sort(torch.argsort(a.weight.norm(dim=1))[drop:]).values for a in lin[:-1]]
    sizes = [lin[0].in_features] + [len(k) for k in keeps] + [lin[-1].out_features]
    child = mlp(*sizes)
    new = [m for m in child if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for k, (src, dst) in enumerate(zip(lin, new)):
            w, b = src.weight, src.bias
            if k < len(keeps):
                w, b = w[keeps[k]], b[keeps[k]]
            if k:
                w = w[:, keeps[k - 1]]
            dst.weight.copy_(w)
            dst.bias.copy_(b)
    return child


def cousin(teacher: DeepEncoder, take=(1, 3, 5)) -> DeepEncoder:
    out = DeepEncoder(blocks=len(take))
    with torch.no_grad():
        out.tok.load_state_dict(teacher.tok.state_dict())
        out.pos.load_state_dict(teacher.pos.state_dict())
        for dst, k in zip(out.blocks, take):
            dst.load_state_dict(teacher.blocks[k].state_dict())
        out.norm.load_state_dict(teacher.norm.state_dict())
        out.head.load_state_dict(teacher.head.state_dict())
    return out


def trained(build, data, seed, epochs=15, lr=3e-3):
    torch.manual_seed(seed)
    return train(build(), data, data.first, epochs, lr, seed)


# -- the cases -------------------------------------------------------------------------------

def export_stateful(det, path: Path) -> Path:
    wrapped = StatefulExport(det).eval()
    return export_onnx(wrapped, (torch.randn(2, 64), torch.zeros(1, 2, 32), torch.tensor(16000)),
                       path, ["input", "state", "sr"], ["logits", "stateN"],
                       {"input": {0: "batch"}, "state": {1: "batch"},
                        "logits": {0: "batch"}, "stateN": {1: "batch"}})


def build(out: Path) -> dict:
    """Train and export every model; returns case -> (data, [(label, path A, path B, expected)])."""
    out.mkdir(parents=True, exist_ok=True)
    digits, tokens = dataset("digits"), dataset("digit_tokens")
    cases = {}

    r1 = trained(Detector, digits, 0, epochs=20)
    r2 = fine_tuned(r1, digits, 1)
    r3 = fine_tuned(r2, digits, 2)
    other = trained(Detector, digits, 5, epochs=20)
    paths = {k: export_stateful(m, out / f"vad_{k}.onnx")
             for k, m in (("r1", r1), ("r2", r2), ("r3", r3), ("other", other))}
    n = len(digits.x)
    vad = Dataset({"input": digits.x, "state": np.zeros((1, n, 32), np.float32),
                   "sr": np.array(16000)}, digits.y, "digits as 64-sample frames")
    cases["stateful"] = (vad, [("release 1 -> release 2", paths["r1"], paths["r2"], True),
                               ("release 1 -> release 3", paths["r1"], paths["r3"], True),
                               ("release 1 -> independent", paths["r1"], paths["other"], False)])

    def export(model, name, data=digits):
        return export_torch(model.eval(), data, out / f"{name}.onnx")

    def copies(build, name, same, labels, seed):
        """A trained model against a copy with the same function, that copy fine-tuned, and an
        independent model (``labels``: the first two pairs' names)."""
        model = trained(build, digits, 0)
        copy, base = same(model), export(model, name)
        return (_plain(digits), [
            (f"trained -> {labels[0]}", base, export(copy, f"{name}_perm"), True),
            (f"trained -> {labels[1]}", base,
             export(fine_tuned(copy, digits, seed), f"{name}_perm_ft"), True),
            ("trained -> independent", base, export(trained(build, digits, 1), f"{name}_other"),
             False)])

    cases["res_cnn"] = copies(ResCNN, "res", lambda m: permuted_res_cnn(m, 7),
                              ("stream-permuted copy", "permuted, then fine-tuned"), 3)

    mob = trained(MobileSE, digits, 0)
    base = export(mob, "mob")
    cases["mobile_se"] = (_plain(digits), [
        ("trained -> fine-tuned", base, export(fine_tuned(mob, digits, 4), "mob_ft"), True),
        ("trained -> independent", base, export(trained(MobileSE, digits, 1), "mob_other"),
         False)])

    cases["grouped"] = copies(NeXt, "next", lambda m: groups_reordered(m, 8),
                              ("groups reordered", "reordered, then fine-tuned"), 9)

    def wide():
        return mlp(64, 128, 128, 128, 10)

    parent = trained(wide, digits, 0, epochs=20)
    child = fine_tuned(width_pruned(parent, 32), digits, 5)
    stranger = fine_tuned(width_pruned(trained(wide, digits, 1, epochs=20), 32), digits, 6)
    pp, pc, ps = export(parent, "mlp"), export(child, "mlp_pruned"), export(stranger, "mlp_other")
    cases["pruned"] = (_plain(digits), [("parent -> width-pruned child", pp, pc, True),
                                        ("width-pruned child -> parent", pc, pp, True),
                                        ("parent -> independent, pruned", pp, ps, False)])

    teacher = trained(DeepEncoder, tokens, 0, epochs=12)
    related = fine_tuned(cousin(teacher), tokens, 7)
    torch.manual_seed(2)
    independent = trained(lambda: DeepEncoder(blocks=3), tokens, 2, epochs=12)
    pt = export(teacher, "enc6", tokens)
    cases["depth"] = (_tokens(tokens), [
        ("6 blocks -> 3-block cousin (blocks 1, 3, 5)", pt, export(related, "enc3", tokens), True),
        ("6 blocks -> independent 3 blocks", pt, export(independent, "enc3_other", tokens), False)])
    return cases


def _plain(data) -> Dataset:
    return Dataset({"x": data.x}, data.y, "digits")


def _tokens(data) -> Dataset:
    return Dataset({"input_ids": data.x, "attention_mask": np.ones_like(data.x)}, data.y,
                   "digit tokens")


def run(cases: dict) -> list[dict]:
    rows = []
    for case, (data, pairs) in cases.items():
        for label, a, b, expected in pairs:
            t0 = time.perf_counter()
            rng = np.random.default_rng(0)
            m = match(a, b, rng=rng)
            t_match = time.perf_counter() - t0
            r = determine(a, b, data, seed=0, match_result=m, rng=rng)
            rows.append({"case": case, "pair": label, "expected_related": expected,
                         "verdict": r.verdict, "p_value": r.p_value,
                         "right": (r.verdict == "related") == expected,
                         "shared_layers": r.shared_layers, "pairs": len(m.pairs),
                         "min_cosine": min((p["cosine"] for p in m.pairs), default=None),
                         "transforms": m.transforms, "limits": m.limits, "pruned": m.pruned,
                         "match_seconds": t_match, "seconds": time.perf_counter() - t0})
            print(f"{case:10s} {label:45s} {r.verdict:12s} p={r.p_value:.2g} "
                  f"limits={len(m.limits)}", file=sys.stderr)
    return rows


def markdown(rows: list[dict]) -> str:
    header = ("| case | pair | verdict | p-value | matched layers | smallest cosine | limits | "
              "match / determine (s) |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mark = "" if r["right"] else " (wrong)"
        cos = "-" if r["min_cosine"] is None else f"{r['min_cosine']:.3f}"
        lines.append(f"| {r['case']} | {r['pair']} | {r['verdict']}{mark} | {r['p_value']:.2g} | "
                     f"{r['pairs']} | {cos} | {len(r['limits'])} | "
                     f"{r['match_seconds']:.2f} / {r['seconds']:.2f} |")
    right = sum(r["right"] for r in rows)
    lines.append(f"\n{right} of {len(rows)} verdicts right (related exactly where expected).")
    return "\n".join(lines)


def main():
    ap = cli.parser(__doc__)
    ap.add_argument("out", type=Path, nargs="?", help="where the models are built")
    cli.add_from(ap, help="rows of an earlier run")
    cli.add_json(ap)
    cli.add_markdown(ap)
    args = ap.parse_args()
    if args.source:
        rows = results.read_json(args.source)["rows"]
    else:
        if args.out is None:
            ap.error("give a folder for the models, or --from")
        t0 = time.perf_counter()
        rows = run(build(args.out))
        seconds = time.perf_counter() - t0
        print(f"{len(rows)} pairs in {seconds:.0f} s", file=sys.stderr)
        if args.json:
            results.write_json(args.json, {"machine": machine(), "seconds": seconds,
                                           "rows": rows})
    if args.markdown:
        print(markdown(rows))
    sys.exit(0 if all(r["right"] for r in rows) else 1)


if __name__ == "__main__":
    main()
