"""Big models: each command's wall time and peak memory on a BERT-base-sized pair, and on a
1.1B-parameter decoder pair.

    python benchmarks/big_models.py /tmp/big --json benchmarks/results/big_models_cpu.json
    python benchmarks/big_models.py /tmp/big --decoder --json benchmarks/results/big_decoder_cpu.json

Builds three BERT-base-sized encoders with PyTorch (vocabulary 30,522, width 768, 12 blocks of
attention and a 3,072-unit feed-forward layer, 110M parameters, about 435 MB each in ONNX): A,
B = A plus 1% weight noise (related) and C from another seed (independent), and a data file of
64 rows of 32 tokens. Then runs the CLI as a user would (``match`` and ``determine`` for A-B and
A-C, each in its own process) and records the wall time and the peak resident memory of that
process (``wait4``), with its ratio to the two files' size, and the peak of its anonymous part
(sampled from ``/proc``): RSS counts the pages of the memory-mapped model files a run has read,
which are clean and given back by the kernel under pressure; the anonymous memory is what the run
itself holds. The issue "Big models in bounded memory" sets the goals: ``match`` <= 4 s,
``determine`` <= 30 s, peak memory <= 1.5x the files. Each ``determine`` also gives its number of
forward passes (the rows it ran over the data's rows) and its time over as many passes of A's own
onnxruntime session on the same rows (``forward_pass_a``, timed here after the runs).

With ``--decoder``: three Llama-like decoders of TinyLlama's shape (``decoder.py``: 1.1B
parameters, float16 weights in an external data file, 2.2 GB each; B = A plus 1% weight noise,
C from another seed) and 16 rows of 16 tokens; the goals there: ``match`` (with the data-free
tests) <= 3 minutes at <= 8 GB, and ``determine`` with its sweep completes (time and memory
reported). Files already in the folder are reused.

With ``--seven-b``: the issue "Seven billion parameters"'s pair, of Llama-2-7B's shape
(``decoder.LLAMA_7B``: width 4096, 32 blocks, 11,008 SwiGLU units, 32,000 tokens; 13.5 GB of
float16 each): A, B = A plus 1% noise, C from another seed, and A's linear layers written as
4-bit MatMulNBits blocks of 32 (4.5 GB), each file a tensor at a time (``decoder.build``), after
checking the disk; then ``inspect``, ``match`` (A-B, A-C, A against its 4-bit export) and
``determine`` on 8 rows of 32 tokens and ``tree`` over the four files, each in its own process,
with what each did or said, and what each estimated it would hold before it started
(``estimate_mb``; every command of the other runs records it too). ``--steps tree`` runs only
the tree.

    python benchmarks/big_models.py /tmp/big7 --seven-b --json benchmarks/results/big_7b_cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import harness

harness.checkout_first()
from harness import ROOT, cli, results  # noqa: E402
from harness.export import export_token_model  # noqa: E402
from harness.machine import machine  # noqa: E402
from harness.memory import run_child  # noqa: E402


def build(out: Path) -> dict[str, Path]:
    import torch

    from cost import bert
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"bert_base_{k}.onnx" for k in "abc"}
    if all(path.exists() for path in paths.values()) and (out / "tokens.npz").exists():
        return {**paths, "data": out / "tokens.npz"}
    a = bert(d=768, layers=12, ff=3072, seed=0)
    paths = {"a": export_token_model(a, paths["a"])}
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.01 * p.std() * torch.randn_like(p))
    paths["b"] = export_token_model(a, out / "bert_base_b.onnx")
    paths["c"] = export_token_model(bert(d=768, layers=12, ff=3072, seed=1),
                                    out / "bert_base_c.onnx")
    data = out / "tokens.npz"
    ids = np.random.default_rng(0).integers(0, 30522, size=(64, 32))
    np.savez(data, input_ids=ids, attention_mask=np.ones_like(ids))
    paths["data"] = data
    return paths


def build_decoder(out: Path) -> dict[str, Path]:
    from decoder import build as write

    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, kw in (("a", {"seed": 0}), ("b", {"seed": 0, "noise": 0.01}), ("c", {"seed": 7})):
        paths[name] = out / f"decoder_{name}.onnx"
        if not paths[name].exists():
            write(paths[name], **kw)
    paths["data"] = out / "decoder_tokens.npz"
    np.savez(paths["data"], input_ids=np.random.default_rng(0).integers(0, 32000, (16, 16)))
    return paths


#: The 7B files: name, build arguments (``decoder.build``'s: seed, noise, bits).
SEVEN_B = (("a", 0, 0.0, None), ("b", 0, 0.01, None), ("c", 7, 0.0, None), ("a4", 0, 0.0, 4))


def build_7b(out: Path) -> dict[str, Path]:
    """The 7B pair (``decoder.LLAMA_7B``): A, B = A plus 1% noise, C from another seed, all in
    float16, and A's linear layers as 4-bit MatMulNBits blocks (``a4``), each written a tensor at
    a time; the disk they need is checked first (files already there are reused), and 8 rows of
    32 tokens."""
    import shutil
    from decoder import LLAMA_7B, build as write, file_bytes
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"llama7b_{name}.onnx" for name, *_ in SEVEN_B}
    needed = sum(file_bytes(LLAMA_7B, bits) for name, _, _, bits in SEVEN_B
                 if not paths[name].exists())
    free = shutil.disk_usage(out).free
    if needed > free - 2 * 1024**3:
        raise SystemExit(f"the 7B files need {needed / 1e9:.1f} GB in {out}, {free / 1e9:.1f} GB "
                         "is free there (2 GB kept for the runs): free some, or give another "
                         "folder")
    for name, seed, noise, bits in SEVEN_B:
        if not paths[name].exists():
            write(paths[name], LLAMA_7B, seed=seed, noise=noise, bits=bits)
    paths["data"] = out / "llama7b_tokens.npz"
    np.savez(paths["data"], input_ids=np.random.default_rng(0).integers(0, LLAMA_7B.vocab, (8, 32)))
    return paths


def timed(args: list[str], env: dict | None = None) -> dict:
    """Run the CLI in its own process (``env``: variables set for it): wall time, its peak RSS
    (MB, from ``wait4``) and peak anonymous RSS (sampled, :class:`harness.memory.AnonPeak`), exit
    code, and what its JSON says."""
    run = run_child([sys.executable, "-m", "typer_app", *args], cwd=ROOT, env=env or {},
                    anon=True)
    result = json.loads(run.stdout) if run.exit_code == 0 and run.stdout.strip() else {}
    return {"args": args, "rc": run.exit_code, "seconds": run.seconds,
            "peak_rss_mb": run.peak_rss_mb, "peak_anon_mb": run.peak_anon_mb,
            "estimate_mb": _mb(estimate(args)),
            "stderr": run.stderr.decode()[-300:],
            "timings": result.get("timings"), "verdict": result.get("verdict"),
            "p_value": result.get("p_value"), "queries": result.get("queries"),
            "tests": {t["name"]: t["p_value"] for t in result.get("tests") or []}}


def _mb(nbytes: float | None) -> float | None:
    return None if nbytes is None else nbytes / 1e6


def estimate(args: list[str]) -> float | None:
    """What the command in ``args`` estimates it will hold before it starts
    (:mod:`onnx_lineage.model.footprint`), in bytes, from the graphs and the data's rows (None
    for ``tree``, which estimates each pair's and each model's part as it comes to it)."""
    from onnx_lineage.data import load_data
    from onnx_lineage.model import footprint
    from onnx_lineage.model.loading import load_model
    command, paths = args[0], [a for a in args[1:] if a.endswith(".onnx")]
    a, b = (load_model(p).proto for p in (paths + paths)[:2])
    if command == "inspect":
        return footprint.inspect_footprint(a).total
    if command == "match":
        return footprint.match_footprint(a, b).total
    if command == "tree":  # not estimated as a whole: each pair's and model's parts are
        return None
    rows = int(args[args.index("--rows") + 1]) if "--rows" in args else 1000
    if "--data" in args:
        rows = min(rows, len(load_data(args[args.index("--data") + 1])))
    return footprint.determine_footprint(a, b, rows).total


def forward_pass(model: Path, data: Path) -> dict:
    """One forward pass of A's own onnxruntime session (the tool's runner, CPU) on all the
    data's rows, best of three after a first: the least each of ``determine``'s passes can cost
    (its interpolated model takes the weights as inputs, which onnxruntime cannot pre-pack, and
    blends them before each pass)."""
    from onnx_lineage.data import feeds_for, load_data
    from onnx_lineage.model.loading import load_model
    from onnx_lineage.model.runner import Runner
    rows = load_data(data)
    runner = Runner(load_model(model).proto, device="cpu")
    feeds, _ = feeds_for(runner.inputs, rows)
    runner.predict(feeds)
    return {"rows": len(rows), "seconds": min(_seconds(lambda: runner.predict(feeds))
                                              for _ in range(3))}


def matmul_rate() -> dict:
    """The float32 matrix product of one BERT-base feed-forward similarity (3,072 x 1,537 units
    by features, against the same), best of three, as numpy runs it here: the floor under
    ``match`` (it computes 12 of them, once: the classes' matching, which the alignment takes)."""
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(3072, 1537)).astype(np.float32) for _ in range(2))
    best = min(_seconds(lambda: a @ b.T) for _ in range(3))
    return {"shape": [3072, 1537, 3072], "seconds": best,
            "gflops": 2 * 3072 * 1537 * 3072 / best / 1e9}


def _seconds(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main():
    ap = cli.parser(__doc__)
    ap.add_argument("out", type=Path)
    cli.add_json(ap)
    ap.add_argument("--decoder", action="store_true", help="the 1.1B decoder pair")
    ap.add_argument("--seven-b", action="store_true", help="the 7B pair and A's 4-bit export")
    ap.add_argument("--seven-b-build", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--steps", nargs="+", metavar="COMMAND",
                    help="only the steps of these commands (inspect, match, determine; tree "
                         "with --seven-b)")
    ap.add_argument("--copies", type=int, help="with --seven-b: determine's --copies (the basin "
                    "test's most copies, each a forward pass of about a minute there)")
    ap.add_argument("--order", nargs="+", metavar="OTHER", default=["b", "c"],
                    help="with --seven-b: the models determine compares A with, in this order")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.seven_b_build:
        build_7b(args.out)
        return None
    if args.seven_b:
        return seven_b(args)
    p = build_decoder(args.out) if args.decoder else build(args.out)
    built = time.perf_counter() - t0
    rows = "16" if args.decoder else "64"
    files_mb = sum(f.stat().st_size for k in "ab" for f in p[k].parent.glob(p[k].name + "*")) / 1e6
    # what one onnxruntime session of A holds beyond the mapped file (inspect runs one)
    steps = [("inspect A", ["inspect", str(p["a"]), "--json"], None)]
    steps += [(f"match A-{other.upper()}", ["match", str(p["a"]), str(p[other]), "--json",
                                            "--quiet"], None) for other in ("b", "c")]
    # the same with numpy's huge-page advice off (it asks the kernel to back every array over
    # 4 MB with huge pages; where the kernel compacts memory for them on the spot, touching a new
    # array can stall: numpy issue 31590)
    steps.append(("match A-C, NUMPY_MADVISE_HUGEPAGE=0", ["match", str(p["a"]), str(p["c"]),
                                                          "--json", "--quiet"],
                  {"NUMPY_MADVISE_HUGEPAGE": "0"}))
    steps += [(f"determine A-{other.upper()} ({rows} rows)",
               ["determine", str(p["a"]), str(p[other]), "--data", str(p["data"]), "--rows", rows,
                "--json", "--quiet"], None) for other in ("b", "c")]
    runs = []
    for step, command, env in steps:
        if not args.steps or command[0] in args.steps:
            runs.append({"step": step, **timed(command, env)})
            print(json.dumps(runs[-1])[:300], file=sys.stderr)
    forward = forward_pass(p["a"], p["data"])
    for r in runs:
        r["rss_over_files"] = r["peak_rss_mb"] / files_mb
        r["anon_over_files"] = None if r["peak_anon_mb"] is None else r["peak_anon_mb"] / files_mb
        if r.get("queries"):  # determine: its forward passes, and what they cost A's own session
            r["passes"] = r["queries"] / forward["rows"]
            r["seconds_over_own_passes"] = r["seconds"] / (r["passes"] * forward["seconds"])
    out = {"machine": machine(),
           "build_seconds": built, "files_mb_a_plus_b": files_mb, "runs": runs,
           "matmul": matmul_rate(), "forward_pass_a": forward}
    print(results.dumps(out))
    if args.json:
        results.write_json(args.json, out)


def seven_b(args) -> None:
    """``--seven-b``: build the 7B files in a child process (its time and peak RSS; files
    already there are kept), then each command of the issue's goals as a user runs it, in its
    own process: what it did, or said. The build runs apart so that this process stays small:
    a child's ``ru_maxrss`` starts from its parent's high-water mark (Linux carries it across
    the fork and exec), which would otherwise be every command's reported peak."""
    run = run_child([sys.executable, __file__, str(args.out), "--seven-b-build"], cwd=ROOT)
    if run.exit_code:
        raise SystemExit(run.stderr.decode().strip().splitlines()[-1])
    p = build_7b(args.out)  # every file there now: the paths
    built = {"seconds": run.seconds, "peak_rss_mb": run.peak_rss_mb,
             "files_gb": {k: sum(f.stat().st_size for f in v.parent.glob(v.name + "*")) / 1e9
                          for k, v in p.items() if k != "data"}}
    print(json.dumps(built), file=sys.stderr)
    steps = [("inspect A", ["inspect", str(p["a"]), "--json"])]
    steps += [(f"match A-{o.upper()}", ["match", str(p["a"]), str(p[o]), "--json", "--quiet"])
              for o in ("b", "c", "a4")]
    copies = ["--copies", str(args.copies)] if args.copies is not None else []
    steps += [(f"determine A-{o.upper()} (8 rows of 32 tokens)",
               ["determine", str(p["a"]), str(p[o]), "--data", str(p["data"]), *copies, "--json",
                "--quiet"]) for o in args.order]
    steps += [("tree over A, B, C and A's 4-bit export",
               ["tree", *(str(p[k]) for k in ("a", "b", "c", "a4")), "--data", str(p["data"]),
                "--json", "--quiet"])]
    if args.steps:
        steps = [(step, command) for step, command in steps if command[0] in args.steps]
    from onnx_lineage.data import load_data
    rows = len(load_data(p["data"]))
    runs = []
    for step, command in steps:
        runs.append({"step": step, **timed(command)})
        if runs[-1].get("queries"):  # determine: its forward passes over the data's rows
            runs[-1]["passes"] = runs[-1]["queries"] / rows
        print(json.dumps(runs[-1])[:400], file=sys.stderr)
    out = {"machine": machine(), "build": built, "runs": runs}
    print(results.dumps(out))
    if args.json:
        results.write_json(args.json, out)


if __name__ == "__main__":
    main()
