"""Whether two result files of one benchmark hold the same figures, apart from time and paths.

    python benchmarks/same_results.py benchmarks/results/accuracy_full_378183a.json NEW.json

A rerun of a benchmark after a change that should not move its figures (a refactor, a speed-up)
is compared with the committed run: every field but wall times (keys naming seconds or time),
the machine description and the folder prefixes of model paths (``/tmp/cal_f/...``). Prints
``same`` or the first differences (their paths in the document) and exits 1 on any.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from harness import cli, results

#: Keys whose values are the run's own circumstances, not its figures.
_CIRCUMSTANCES = re.compile(r"second|time|machine")
#: A scratch folder in a model path: ``/tmp/anything/``.
_SCRATCH = re.compile(r"^/tmp/[^/]+/")


def figures(value):
    """``value`` without its circumstances (see the module docstring)."""
    if isinstance(value, dict):
        return {k: figures(v) for k, v in value.items() if not _CIRCUMSTANCES.search(str(k))}
    if isinstance(value, list):
        return [figures(v) for v in value]
    if isinstance(value, str):
        return _SCRATCH.sub("", value)
    return value


def differences(a, b, path: str = "") -> list[str]:
    """Where ``a`` and ``b`` differ, as document paths with both values."""
    if type(a) is not type(b):
        return [f"{path or '/'}: {a!r} | {b!r}"]
    if isinstance(a, dict):
        out = [f"{path}/{k}: only in one" for k in sorted(set(a) ^ set(b), key=str)]
        for k in a:
            if k in b:
                out += differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items | {len(b)}"]
        return [d for k, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{k}]")]
    return [] if a == b else [f"{path}: {a!r} | {b!r}"]


def main() -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args()
    found = differences(figures(results.read_json(args.before)),
                        figures(results.read_json(args.after)))
    print("same" if not found else "\n".join(found[:20] + ([f"... {len(found)} in all"]
                                                            if len(found) > 20 else [])))
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
