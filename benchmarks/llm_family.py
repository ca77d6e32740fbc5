"""Language models as they are derived and disguised: does ``determine`` tell a small Llama-style
decoder's derivations from independently trained decoders, and how does MATCH do on the same pairs?

    python benchmarks/llm_family.py /tmp/llm --json benchmarks/results/llm_family_cpu.json
    python benchmarks/llm_family.py --from benchmarks/results/llm_family_cpu.json --markdown
    python benchmarks/llm_family.py /tmp/llm_quick --quick --seeds 11 12 13

The parent (:mod:`harness.llama`: 4 pre-norm blocks, width 128, 4 query heads sharing 2
key/value heads, rotary positions, SwiGLU of 344 units, RMSNorm gains, an untied head, 256 byte
tokens, context 64) is trained with Adam on the Python standard library's own ``.py`` files
(:func:`harness.llama.stdlib_bytes`; each role reads its own slice of that text, and the last
slice is held out: the loss reported, the data file of ``determine``, MATCH's tokens). Every
model is exported with one input ``input_ids`` ``(batch, tokens)`` int64 and one output
``logits`` ``(batch, 256)``, the next token's logits at the last position, and checked against
torch.

Derivations of the parent (:mod:`llm_derivations`): fine-tunes (light: 20 steps at 1e-4; heavy:
300 at 1e-3; two medium ones, ``ft_a`` and ``ft_b``, 100 at 5e-4, each on its own text); LoRA
of rank 4, 16 and 64 on q, v, gate, up and down, trained 100 steps and merged; task arithmetic
(``ft_a`` + ``ft_b``, weights 1), TIES (their task vectors trimmed to the top 20% by magnitude,
signs elected, the agreeing values averaged) and DARE (``ft_a``'s task vector, 90% dropped, the
rest times 10), by ``benchmarks/merges.py``'s recipes; 50% magnitude pruning of every Linear; a
block dropped; a block duplicated (depth upscaling) and a vocabulary grown to 320 rows, each
trained 50 steps after; the attention heads permuted, the feed-forward units permuted, the
heavy fine-tune with its units permuted; float16 weights; onnxruntime's 4-bit quantizer (blocks
of 32; compared with the parent and with the float16 copy); the residual stream rotated by a
random orthogonal matrix after folding the norms' gains (SliceGPT, QuaRot), of the parent and
of the light fine-tune. Sibling pairs: rotated against FFN-permuted, rotated light fine-tune
against the permuted heavy fine-tune. The function-preserving ones are checked: their ONNX
logits equal their source's within 1e-4.

Independent models: 19 decoders of five shapes (widths 96, 128 and 160; 3 or 4 blocks; 256, 344
or 432 feed-forward units) trained from their own seeds, with the parent's
recipe, on the parent's text (the same data, another initialisation and batch order: the null
of "trained independently"). Every pair among them and the parent is compared; a pair
``determine`` cannot compare at all (no layer of the same kind and shape: other widths) is
counted apart.

Each pair runs ``determine`` (seed 0, alpha 0.01; its error, if it fails, is recorded and the
run goes on) and MATCH (:mod:`llm_match`) on the torch twins of the files (the same weights;
for the 4-bit file its dequantized weights, for the float16 file the weights rounded to float16).
``--seeds``: the training seeds (the parent's is the first; the independent models of each shape
take them in turn, offset by shape; 8 needed, 1-8 reported, 101-106 used to develop the script
with an earlier set of shapes); ``--quick``: tiny sizes, 2 derivations, 3 independent models.
The tables are printed with or without ``--markdown``.
"""

from __future__ import annotations

import copy
import itertools
import logging
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import harness

harness.checkout_first()
from harness import cli  # noqa: E402
from harness.machine import machine  # noqa: E402

#: The verdicts' level, and the second level the independent pairs are counted at.
ALPHA = 0.01
LEVELS = (0.05, 0.01)
#: Logits within this of their source's count as the same function.
ATOL = 1e-4


@dataclass(frozen=True)
class Plan:
    """What one run builds: the parent's shape, the independent models' shapes with how many of
    each, each role's (steps, learning rate), the batch, the derivations (None: all), and the
    held-out rows (the data file's rows; the loss is measured on twice as many)."""

    parent: object
    sizes: tuple
    recipes: dict
    batch: int = 16
    derivations: tuple | None = None
    rows: int = 64


def full_plan() -> Plan:
    """The reported configuration (module docstring): 19 independent models of five shapes,
    15 of them (with the parent) of width 128 and 344 feed-forward units: the 105 pairs among
    those ``determine`` can decide (another width, or another feed-forward width, leaves it
    nothing to test)."""
    from harness.llama import Config
    p = Config()
    sizes = ((p, 8), (p.replace(layers=3), 6), (p.replace(ff=256), 2),
             (Config(hidden=96, layers=3, heads=4, kv_heads=2, ff=256), 2),
             (Config(hidden=160, layers=4, heads=4, kv_heads=2, ff=432), 1))
    recipes = {"parent": (300, 3e-3), "light": (20, 1e-4), "heavy": (300, 1e-3),
               "ft_a": (100, 5e-4), "ft_b": (100, 5e-4), "lora": (100, 2e-3),
               "brief": (50, 5e-4)}
    return Plan(p, sizes, recipes)


def quick_plan() -> Plan:
    """The smoke configuration: width 32, 2 blocks, context 16; 2 derivations; 3 independent
    models (two of the parent's shape, one a block shorter)."""
    from harness.llama import Config
    p = Config(hidden=32, layers=2, heads=2, kv_heads=1, ff=64, context=16)
    recipes = {"parent": (60, 3e-3), "light": (10, 1e-4)}
    return Plan(p, ((p, 2), (p.replace(layers=1), 1)), recipes,
                derivations=("light_ft", "ffn_permuted"), rows=32)


class Corpus:
    """The text cut into consecutive slices, one per role (``plan.recipes``' steps times the
    batch, in windows of ``context + 1`` bytes) and the held-out slice last."""

    def __init__(self, plan: Plan):
        from harness.llama import stdlib_bytes, windows
        self.text = stdlib_bytes()
        self.length = plan.parent.context + 1
        self.slices, start = {}, 0
        for role, (steps, _) in plan.recipes.items():
            self.slices[role] = windows(self.text, start, steps * plan.batch, self.length)
            start += steps * plan.batch * self.length
        self.slices["eval"] = windows(self.text, start, 2 * plan.rows, self.length)
        self.used = start + 2 * plan.rows * self.length


@dataclass
class Built:
    """One model of the run: its torch twin (the weights MATCH reads), its ONNX file, shape,
    held-out loss, the export's largest logit difference from the twin, and a note."""

    name: str
    model: object
    path: Path
    shape: str
    loss: float
    export_diff: float
    note: str = ""


class Family:
    """The models of one run, built on demand (:data:`BUILD`), exported and checked.

    ``seeds``: the run's training seeds (the parent's first; each derivation's seed comes from
    it, :meth:`seed`). ``out``: the folder of the ONNX files."""

    def __init__(self, plan: Plan, seeds: list[int], out: Path):
        self.plan, self.seeds, self.out = plan, list(seeds), out
        self.corpus = Corpus(plan)
        self.ids = self.corpus.slices["eval"][:plan.rows, :-1]
        self.built: dict[str, Built] = {}
        self.acts: dict[str, tuple] = {}
        self.seconds: dict[str, float] = {}
        self.builders = {**BUILD, **independents(plan, seeds)}
        out.mkdir(parents=True, exist_ok=True)

    def seed(self, k: int) -> int:
        """The seed of the parent's ``k``-th derivation."""
        return self.seeds[0] * 100 + k

    def rng(self, k: int) -> np.random.Generator:
        return np.random.default_rng(self.seed(k))

    def fit(self, model, role: str, seed: int):
        """``model`` trained in place on ``role``'s slice with ``role``'s recipe (Adam, one pass,
        ``steps`` batches) from ``seed``; returned in eval mode."""
        import torch
        from harness import training
        from harness.llama import next_token_loss
        rows = torch.from_numpy(self.corpus.slices[role])
        _, lr = self.plan.recipes[role]
        return training.train(model, np.arange(len(rows)),
                              lambda m, idx: next_token_loss(m, rows[idx]), epochs=1, lr=lr,
                              seed=seed, batch=self.plan.batch)

    def model(self, name: str):
        """The torch twin of model ``name`` (built first if need be)."""
        return self.get(name).model

    def copy(self, name: str):
        return copy.deepcopy(self.model(name))

    def get(self, name: str) -> Built:
        """Model ``name``, built, exported and checked the first time it is asked for."""
        if name not in self.built:
            t0 = time.perf_counter()
            made = self.builders[name](self)
            twin, path, note = made if isinstance(made, tuple) else (made, None, "")
            self.built[name] = self.add(name, twin, path, note)
            self.seconds[name] = time.perf_counter() - t0
            print(f"built {name} ({self.seconds[name]:.1f} s, held-out loss "
                  f"{self.built[name].loss:.3f})", file=sys.stderr)
        return self.built[name]

    def add(self, name: str, twin, path: Path | None = None, note: str = "") -> Built:
        """``twin`` exported (unless ``path``, an ONNX file made from another, is given), its
        held-out loss, and the file's largest logit difference from it."""
        import torch
        from harness.export import batch_axes, export_onnx
        if path is None:
            example = torch.from_numpy(self.ids[:1])
            path = export_onnx(twin.eval(), (example,), self.out / f"{name}.onnx",
                               ("input_ids",), dynamic_axes=batch_axes(("input_ids",),
                                                                       tokens=True))
        with torch.no_grad():
            ref = twin(torch.from_numpy(self.ids)).numpy()
        diff = float(np.abs(self.logits(path) - ref).max())
        return Built(name, twin, path, twin.cfg.label(), self.loss(twin), diff, note)

    def logits(self, path: Path) -> np.ndarray:
        """The ONNX file's logits on the held-out rows, ``(rows, vocab)`` float32."""
        import onnxruntime as ort
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"input_ids": self.ids})[0]

    def loss(self, model) -> float:
        """``model``'s mean next-token cross-entropy on the held-out windows (nats)."""
        import torch
        from harness.llama import next_token_loss
        with torch.no_grad():
            return float(next_token_loss(model.eval(),
                                         torch.from_numpy(self.corpus.slices["eval"])))

    def activations(self, name: str) -> tuple[list, float]:
        """MATCH's activations of model ``name`` on the held-out rows, and their seconds."""
        from llm_match import ffn_activations
        if name not in self.acts:
            t0 = time.perf_counter()
            acts = ffn_activations(self.model(name), self.ids)
            self.acts[name] = (acts, time.perf_counter() - t0)
        return self.acts[name]


def _parent(f: Family):
    import torch
    from harness.llama import Llama
    torch.manual_seed(f.seeds[0])
    return f.fit(Llama(f.plan.parent), "parent", f.seeds[0])


def _fine_tune(role: str, k: int):
    """A builder: the parent fine-tuned on ``role``'s slice (seed ``k`` of the family)."""
    return lambda f: f.fit(f.copy("parent"), role, f.seed(k))


def _lora(rank: int):
    """A builder: LoRA of rank ``rank`` trained on the ``lora`` slice and merged."""
    import llm_derivations as D
    return lambda f: D.lora(f.model("parent"), rank, lambda m: f.fit(m, "lora", f.seed(50 + rank)),
                            f.seed(100 + rank))


def _merge(recipe: str):
    """A builder: a mergekit recipe (``benchmarks/merges.py``) over the state dicts, task
    vectors from the parent: ``task_arithmetic`` (ft_a + ft_b, weights 1), ``ties`` (the two,
    top 20% kept) or ``dare`` (ft_a's, 90% dropped, the rest rescaled by 1 / 0.1)."""

    def build(f: Family):
        import torch
        import merges
        from llm_derivations import _clone
        base = f.model("parent").state_dict()
        states = [f.model(n).state_dict() for n in ("ft_a", "ft_b")]
        if recipe == "task_arithmetic":
            state = merges.task_arithmetic(states, [1.0, 1.0], base)
        elif recipe == "ties":
            state = merges.ties(states, [1.0, 1.0], base, keep=0.2)
        else:
            gen = torch.Generator().manual_seed(f.seed(20))
            state = merges.dare(states[:1], [1.0], base, drop=0.9, generator=gen)
        model = _clone(f.model("parent"))
        model.load_state_dict(state)
        return model
    return build


def _onnx_copy(kind: str):
    """A builder of a copy made on the parent's ONNX file: ``fp16`` (float16 weights, the twin
    rounded alike) or ``q4`` (onnxruntime's 4-bit quantizer, the twin its dequantized
    weights)."""

    def build(f: Family):
        import llm_derivations as D
        parent = f.get("parent")  # its file, not only its weights
        path = f.out / f"{kind}.onnx"
        if kind == "fp16":
            return D.half_rounded(parent.model), D.float16_weights(parent.path, path), (
                "float16 initializers cast to float32 in the graph")
        logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
        D.quantize_4bit(parent.path, path)
        twin, n = D.dequantized(parent.model, path)
        return twin, path, (f"{n} MatMulNBits (4-bit, blocks of 32); MATCH on their "
                            "dequantized weights")
    return build


def _surgery(how: str):
    """A builder of the parent's surgery: ``pruned`` (50% by magnitude), ``dropped`` (the middle
    block out), ``upscaled`` (block 1 duplicated, trained on the ``brief`` slice), ``vocab``
    (320 tokens, trained on it too)."""

    def build(f: Family):
        import llm_derivations as D
        parent = f.model("parent")
        if how == "pruned":
            return D.prune(parent, 0.5)
        if how == "dropped":
            return D.drop_block(parent, parent.cfg.layers // 2)
        grown = (D.upscale(parent, 1) if how == "upscaled"
                 else D.grow_vocab(parent, 320, f.seed(30)))
        return f.fit(grown, "brief", f.seed(31 if how == "upscaled" else 32))
    return build


def _disguise(how: str, source: str, k: int):
    """A builder of a function-preserving copy of ``source``: ``heads``, ``ffn`` (permuted) or
    ``rotated`` (:func:`llm_derivations.rotate_stream`), drawn from the family's seed ``k``."""

    def build(f: Family):
        import llm_derivations as D
        make = {"heads": D.permute_heads, "ffn": D.permute_ffn, "rotated": D.rotate_stream}[how]
        return make(f.model(source), f.rng(k))
    return build


#: How each model of the family is made, in build order.
BUILD = {
    "parent": _parent,
    "light_ft": _fine_tune("light", 1), "heavy_ft": _fine_tune("heavy", 2),
    "ft_a": _fine_tune("ft_a", 3), "ft_b": _fine_tune("ft_b", 4),
    "lora_4": _lora(4), "lora_16": _lora(16), "lora_64": _lora(64),
    "task_arithmetic": _merge("task_arithmetic"), "ties": _merge("ties"), "dare": _merge("dare"),
    "pruned_50": _surgery("pruned"), "layer_dropped": _surgery("dropped"),
    "depth_upscaled": _surgery("upscaled"), "vocab_extended": _surgery("vocab"),
    "heads_permuted": _disguise("heads", "parent", 40),
    "ffn_permuted": _disguise("ffn", "parent", 41),
    "heavy_ft_ffn_permuted": _disguise("ffn", "heavy_ft", 42),
    "rotated": _disguise("rotated", "parent", 43),
    "rotated_light_ft": _disguise("rotated", "light_ft", 44),
    "fp16": _onnx_copy("fp16"), "q4": _onnx_copy("q4"),
}

#: Derived pairs (A, B) beyond "parent against each derivation": siblings.
SIBLINGS = (("fp16", "q4"), ("rotated", "ffn_permuted"),
            ("rotated_light_ft", "heavy_ft_ffn_permuted"))
#: Function-preserving copies and their source: the logits must agree within ATOL.
SAME_FUNCTION = (("heads_permuted", "parent"), ("ffn_permuted", "parent"),
                 ("heavy_ft_ffn_permuted", "heavy_ft"), ("rotated", "parent"),
                 ("rotated_light_ft", "light_ft"))


def independents(plan: Plan, seeds: list[int]) -> dict:
    """The builders of the independent models, by name (``ind_h128_L4_ff344_s1``): for the
    ``s``-th shape of ``plan.sizes`` and its ``j``-th model, training seed ``seeds[j]`` offset by
    ``1000 * (s + 1)`` (no model shares the parent's seed)."""
    if len(seeds) < max(n for _, n in plan.sizes):
        raise SystemExit(f"--seeds: {max(n for _, n in plan.sizes)} seeds needed, "
                         f"{len(seeds)} given")
    out = {}
    for s, (cfg, count) in enumerate(plan.sizes):
        for seed in seeds[:count]:
            name = f"ind_{cfg.label().replace(' ', '_')}_s{seed}"
            out[name] = _independent(cfg, seed + 1000 * (s + 1))
    return out


def _independent(cfg, seed: int):
    """A builder: a decoder of shape ``cfg`` initialised and trained (the parent's recipe and
    text) from ``seed``."""

    def build(f: Family):
        import torch
        from harness.llama import Llama
        torch.manual_seed(seed)
        return f.fit(Llama(cfg), "parent", seed)
    return build


def pairs(f: Family) -> list[tuple[str, str, str]]:
    """(kind, A, B) of every pair the run compares: ``derived`` (the parent and each
    derivation), ``sibling`` (:data:`SIBLINGS`), ``independent`` (every two of the parent and
    the independent models)."""
    wanted = f.plan.derivations or tuple(n for n in BUILD if n != "parent")
    out = [("derived", "parent", n) for n in wanted]
    out += [("sibling", a, b) for a, b in SIBLINGS if a in wanted and b in wanted]
    models = ["parent"] + [n for n in f.builders if n.startswith("ind_")]
    out += [("independent", a, b) for a, b in itertools.combinations(models, 2)]
    return out


def lineage(a: Built, b: Built, data) -> dict:
    """``determine(A, B)`` at seed 0 and :data:`ALPHA`: the verdict, combined p-value, each
    test's p-value, the seconds (and per step: ``timings``), how many layers the two share (0:
    nothing to compare), the reason, and per gated class the units the function test's two
    matchings agree on, of those compared (``function_agree``); a failure's error and traceback instead (a bug of the
    library, reported)."""
    from onnx_lineage import determine
    t0 = time.perf_counter()
    try:
        r = determine(a.path, b.path, data, seed=0, alpha=ALPHA)
    except Exception as exc:  # the library's failure is a finding: recorded, the run goes on
        return {"verdict": None, "p_value": None, "tests": {}, "shared_layers": None,
                "seconds": time.perf_counter() - t0, "reason": None,
                "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    function = r.test("function")
    return {"verdict": r.verdict, "p_value": r.p_value,
            "tests": {t.name: t.p_value for t in r.tests}, "shared_layers": len(r.match["pairs"]),
            "seconds": r.seconds, "timings": r.timings, "reason": r.reason, "error": None,
            "function_agree": [[c.agree, c.compared] for c in function.classes]
            if function is not None else None}


def compare(f: Family, kind: str, a: str, b: str, data) -> dict:
    """One pair's row: the two models, ``determine`` (:func:`lineage`) and MATCH (its seconds
    the matchings' plus both models' activations)."""
    from llm_match import match_test
    ma, mb = f.get(a), f.get(b)
    row = {"kind": kind, "a": a, "b": b, "shape_a": ma.shape, "shape_b": mb.shape,
           "lineage": lineage(ma, mb, data)}
    (acts_a, sec_a), (acts_b, sec_b) = f.activations(a), f.activations(b)
    m = match_test(acts_a, acts_b).to_dict()
    m["seconds"] += sec_a + sec_b
    row["match"] = m
    lin = row["lineage"]
    print(f"{kind} {a} - {b}: {lin['verdict'] or lin['error']} p={lin['p_value']} "
          f"({lin['seconds']:.1f} s); MATCH p={m['p_value']:.3g} ({m['seconds']:.1f} s)",
          file=sys.stderr)
    return row


def checks(f: Family) -> list[dict]:
    """Logits of the ONNX files compared on the held-out rows: each function-preserving copy
    against its source (``same``: within :data:`ATOL`), and the float16 and 4-bit copies against
    the parent and each other (``same`` None: not expected to be exact)."""
    rows = []
    cases = [(c, s, True) for c, s in SAME_FUNCTION]
    cases += [("fp16", "parent", None), ("q4", "parent", None), ("q4", "fp16", None)]
    for model, source, exact in cases:
        if model not in f.built:
            continue
        x, y = f.logits(f.get(model).path), f.logits(f.get(source).path)
        rows.append({"model": model, "against": source,
                     "max_abs_diff": float(np.abs(x - y).max()),
                     "logit_scale": float(np.abs(y).max()),
                     "same": bool(np.allclose(x, y, rtol=0, atol=ATOL)) if exact else None})
    return rows


def run(plan: Plan, seeds: list[int], out: Path) -> dict:
    """Build every model, then compare every pair (:func:`pairs`): the result document."""
    import platform
    import torch
    from onnx_lineage import load_data
    t0 = time.perf_counter()
    # one thread: on 2 shared cores, two threads took 0.4-5 s a training step (0.2 s alone)
    torch.set_num_threads(1)
    f = Family(plan, seeds, out)
    todo = pairs(f)
    needed = {n for _, a, b in todo for n in (a, b)}
    for name in f.builders:  # in build order: the trained models' times apart from the pairs'
        if name in needed:
            f.get(name)
    np.savez(out / "data.npz", input_ids=f.ids)
    data = load_data(out / "data.npz")
    t_built = time.perf_counter()
    rows = [compare(f, kind, a, b, data) for kind, a, b in todo]
    t_pairs = time.perf_counter()
    models = {n: {"shape": m.shape, "loss": m.loss, "export_diff": m.export_diff,
                  "note": m.note, "seconds": f.seconds[n], "bytes": m.path.stat().st_size}
              for n, m in f.built.items()}
    return {"machine": machine(onnxruntime=True), "seeds": list(seeds),
            "quick": plan.derivations is not None, "python": platform.python_version(),
            "text_bytes": f.corpus.used, "recipes": plan.recipes, "batch": plan.batch,
            "models": models, "checks": checks(f), "pairs": rows,
            "seconds": {"build": t_built - t0, "pairs": t_pairs - t_built,
                        "checks": time.perf_counter() - t_pairs,
                        "total": time.perf_counter() - t0}}


def _p(p) -> str:
    return "-" if p is None else ("<1e-300" if p <= 1e-300 else f"{p:.2g}")


def _models_table(doc: dict) -> list[str]:
    """Each derived model's held-out loss and export check; the independent ones by shape."""
    lines = ["| model | shape | held-out loss (nats/byte) | export: largest logit diff from "
             "torch |",
             "|---|---|---|---|"]
    ind: dict[str, list] = {}
    for name, m in doc["models"].items():
        if name.startswith("ind_"):
            ind.setdefault(m["shape"], []).append(m)
            continue
        lines.append(f"| {name} | {m['shape']} | {m['loss']:.3f} | {m['export_diff']:.1e} |")
    for shape, ms in ind.items():
        losses = [m["loss"] for m in ms]
        span = (f"{losses[0]:.3f}" if len(ms) == 1 else f"{min(losses):.3f}-{max(losses):.3f}")
        lines.append(f"| {len(ms)} independent | {shape} | {span} | "
                     f"{max(m['export_diff'] for m in ms):.1e} |")
    return lines


def _checks_table(doc: dict) -> list[str]:
    lines = ["| copy | against | largest logit diff | largest logit | same within 1e-4 |",
             "|---|---|---|---|---|"]
    for c in doc["checks"]:
        same = "-" if c["same"] is None else ("yes" if c["same"] else "**no**")
        lines.append(f"| {c['model']} | {c['against']} | {c['max_abs_diff']:.1e} | "
                     f"{c['logit_scale']:.1f} | {same} |")
    return lines


def _derived_table(doc: dict) -> list[str]:
    """One row per derived or sibling pair: onnx-lineage's verdict, p and tests; MATCH's p."""
    tests = ("unit_order", "aligned", "same_values", "function", "basin")
    lines = ["| A | B | onnx-lineage | p | " + " | ".join(tests) + " | s | MATCH p | "
             "MATCH related at 0.01 | MATCH s |", "|---" * (8 + len(tests)) + "|"]
    for r in doc["pairs"]:
        if r["kind"] == "independent":
            continue
        lin, m = r["lineage"], r["match"]
        verdict = lin["verdict"] or f"error: {lin['error'][:60]}"
        lines.append(f"| {r['a']} | {r['b']} | {verdict} | {_p(lin['p_value'])} | "
                     + " | ".join(_p(lin["tests"].get(t)) for t in tests)
                     + f" | {lin['seconds']:.1f} | {_p(m['p_value'])} | "
                     f"{'yes' if m['p_value'] <= ALPHA else '**no**'} | {m['seconds']:.1f} |")
    return lines


def _rate(ps: list) -> list[str]:
    """``k of n (95% interval)`` at each of :data:`LEVELS` for the p-values ``ps``."""
    from calibration import clopper_pearson
    out = []
    for level in LEVELS:
        k = sum(p <= level for p in ps)
        lo, hi = clopper_pearson(k, len(ps)) if ps else (0.0, 1.0)
        out.append(f"{k} of {len(ps)} ({100 * lo:.1f}-{100 * hi:.1f}%)")
    return out


def _compared(r: dict) -> bool:
    """Whether ``determine`` could compare the pair at all (a layer of the same kind and shape
    in both; a failure is not a comparison)."""
    return r["lineage"]["error"] is None and (r["lineage"]["shared_layers"] or 0) > 0


def _independent_tables(doc: dict) -> list[str]:
    """The independent pairs by shapes (verdicts; MATCH at 0.01), then each method's rate of
    pairs called related at 0.05 and 0.01 with its 95% Clopper-Pearson interval."""
    ind = [r for r in doc["pairs"] if r["kind"] == "independent"]
    groups: dict[str, list] = {}
    for r in ind:
        groups.setdefault(" vs ".join(sorted((r["shape_a"], r["shape_b"]))), []).append(r)
    lines = ["| shapes | pairs | compared by onnx-lineage | related / unrelated / undetermined "
             "/ error | MATCH related at 0.01 |", "|---|---|---|---|---|"]
    for shapes, rs in sorted(groups.items()):
        count = [sum(r["lineage"]["verdict"] == v for r in rs)
                 for v in ("related", "unrelated", "undetermined", None)]
        lines.append(f"| {shapes} | {len(rs)} | {sum(map(_compared, rs))} | "
                     f"{' / '.join(map(str, count))} | "
                     f"{sum(r['match']['p_value'] <= ALPHA for r in rs)} |")
    compared = [r for r in ind if _compared(r)]
    decided = [r for r in compared if r["lineage"]["verdict"] in ("related", "unrelated")]
    sets = (("onnx-lineage (the pairs with a layer in common)",
             [r["lineage"]["p_value"] for r in compared]),
            ("onnx-lineage (the pairs it decides: related or unrelated)",
             [r["lineage"]["p_value"] for r in decided]),
            ("onnx-lineage's function test alone (the pairs it ran on)",
             [r["lineage"]["tests"]["function"] for r in compared
              if r["lineage"]["tests"].get("function") is not None]),
            ("MATCH (every pair)", [r["match"]["p_value"] for r in ind]),
            ("MATCH (the pairs onnx-lineage compares)", [r["match"]["p_value"] for r in compared]))
    lines += ["", "| method | pairs | related at 0.05 (95% interval) | related at 0.01 "
              "(95% interval) | smallest p |", "|---|---|---|---|---|"]
    for name, ps in sets:
        lines.append(f"| {name} | {len(ps)} | " + " | ".join(_rate(ps))
                     + f" | {_p(min(ps)) if ps else '-'} |")
    return lines


def _cost_table(doc: dict) -> list[str]:
    """Where the function test ran: its seconds against the sweep's (the paper's path, one pass
    per point), median and largest over the pairs."""
    rows = [r["lineage"]["timings"] for r in doc["pairs"]
            if r["lineage"].get("timings") and r["lineage"]["tests"].get("function") is not None]
    if not rows:
        return ["(no timings recorded)"]
    f = np.array([t["function"] for t in rows])
    sweep = np.array([t["sweep"] for t in rows])
    ratio = f / np.maximum(sweep, 1e-9)
    both = f / np.maximum(sweep + np.array([t["sweep_unaligned"] for t in rows]), 1e-9)
    return ["| pairs the function test ran on | its seconds: median, largest | the sweep's: "
            "median, largest | function / sweep: median, largest, pairs over 1 | function / "
            "both sweeps determine runs: median, largest |", "|---|---|---|---|---|",
            f"| {len(rows)} | {np.median(f):.2f}, {f.max():.2f} | {np.median(sweep):.2f}, "
            f"{sweep.max():.2f} | {np.median(ratio):.2f}, {ratio.max():.2f}, "
            f"{int(np.sum(ratio > 1))} | {np.median(both):.2f}, {both.max():.2f} |"]


def summary(doc: dict) -> str:
    """The tables of RESULTS.md."""
    s = doc["seconds"]
    errors = [r for r in doc["pairs"] if r["lineage"]["error"]]
    lines = [f"Machine: {doc['machine']}; seeds {doc['seeds']}"
             + (" (--quick)" if doc["quick"] else ""),
             f"Wall time {s['total']:.0f} s: models built {s['build']:.0f} s, pairs "
             f"{s['pairs']:.0f} s; text: {doc['text_bytes']:,} bytes of Python {doc['python']}'s "
             "standard library (log 256 = 5.545 nats/byte)", ""]
    lines += _models_table(doc) + [""] + _checks_table(doc) + [""] + _derived_table(doc)
    lines += [""] + _independent_tables(doc) + [""] + _cost_table(doc)
    lines += ["", f"determine failed on {len(errors)} pair(s)"
              + "".join(f"\n- {r['a']} - {r['b']}: {r['lineage']['error']}" for r in errors)]
    return "\n".join(lines)


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("out", type=Path, nargs="?", help="the folder of the models")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7, 8],
                    help="training seeds: the parent's first, the independent models' in turn")
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes, 2 derivations, 3 independent models (a smoke run)")
    cli.add_json(ap)
    cli.add_from(ap)
    cli.add_markdown(ap)
    args = ap.parse_args()
    doc = cli.document(args, lambda out: run(quick_plan() if args.quick else full_plan(),
                                             args.seeds, out), newline=True)
    print(summary(doc))


if __name__ == "__main__":
    main()
