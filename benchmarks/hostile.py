"""Hostile files: exit code, message, wall time and peak memory of the CLI on each.

    python benchmarks/hostile.py OUT_DIR [--json OUT.json]

Builds small files that are huge or deep once read naively (tests/hostile.py): a model whose If
nodes nest 30 deep (a few KB), a 4 MB ``.npz`` whose ``x.npy`` declares 3.8 GiB of deflated
zeros, a model whose ConstantOfShape declares 2.3 TiB, and a chain of 40 Tiles that doubles each
row 40 times; then runs ``onnx-lineage`` on each in a child process and reads its peak resident
memory from the kernel (``os.wait4``). The issue asks for exit code 1, one line naming the limit,
under 300 MB and under 5 s for each.
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx

import harness

harness.checkout_first()
from harness import ROOT, cli, results  # noqa: E402
from harness.memory import run_child  # noqa: E402
from tests.hostile import huge_constant, nested_if, tile_chain, zeros_npz  # noqa: E402

MODEL = ROOT / "tests" / "fixtures" / "models" / "torch_mlp_legacy.onnx"


def run(args: list[str]) -> dict:
    """One CLI run: exit code, stderr lines, wall time, peak RSS in MB."""
    run = run_child([sys.executable, "-c", "import typer_app; typer_app.main()"] + args, cwd=ROOT)
    err = run.stderr.decode(errors="replace").strip().splitlines()
    return {"command": "onnx-lineage " + " ".join(Path(a).name if "/" in a else a for a in args),
            "exit_code": run.exit_code, "stderr_lines": len(err),
            "message": err[-1] if err else "", "seconds": run.seconds,
            "peak_rss_mb": run.peak_rss_mb}


def main():
    ap = cli.parser(__doc__)
    ap.add_argument("out", type=Path)
    cli.add_json(ap)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    files = {"nested If, 30 deep": args.out / "nested_if_30.onnx",
             "ConstantOfShape of 2.3 TiB": args.out / "huge_constant.onnx",
             "40 Tiles, each doubling a row": args.out / "tile_chain.onnx"}
    onnx.save(nested_if(30), files["nested If, 30 deep"])
    onnx.save(huge_constant([100000, 100000, 64]), files["ConstantOfShape of 2.3 TiB"])
    onnx.save(tile_chain(40), files["40 Tiles, each doubling a row"])
    bomb = zeros_npz(args.out / "bomb.npz", rows=1_000_000)  # 3.8 GiB of float32 zeros
    rows = []
    for label, path in files.items():
        for command in (["inspect", str(path)], ["determine", str(path), str(path)]):
            rows.append({"file": label, "bytes": path.stat().st_size, **run(command)})
    for command in (["closeness", str(MODEL), str(MODEL), "--data", str(bomb)],
                    ["determine", str(MODEL), str(MODEL), "--data", str(bomb)]):
        rows.append({"file": "npz: 3.8 GiB of deflated zeros", "bytes": bomb.stat().st_size,
                     **run(command)})
    for r in rows:
        print(f"| {r['file']} ({r['bytes']:,} bytes) | `{r['command']}` | {r['exit_code']} | "
              f"{r['stderr_lines']} | {r['seconds']:.2f} s | {r['peak_rss_mb']:.0f} MB | "
              f"{r['message']} |")
    if args.json:
        results.write_json(args.json, {"rows": rows}, newline=True)


if __name__ == "__main__":
    main()
