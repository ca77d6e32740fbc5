"""The house rules that keep the package easy to change, read from its source: no import cycle,
no function-level import of the package's own modules outside the command line (whose lazy
imports keep ``--help`` fast), no function with more than 60 lines of code (its docstring, which
documents its parameters, not counted), no constructor called with more than six positional
arguments."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "onnx_lineage"
SOURCES = sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "kernels").rglob("*.py")) + [
    ROOT / "typer_app.py"]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in SOURCES}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _functions(tree: ast.Module):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _imported(node: ast.AST, here: str) -> list[str]:
    """The package's modules an import statement loads (a name imported from a package counts
    as its submodule when it is one)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    if not isinstance(node, ast.ImportFrom) or node.module is None:
        return []
    base = node.module
    if node.level:  # relative: from the package holding ``here``
        package = here.rsplit(".", node.level)[0] if "." in here else here
        base = f"{package}.{base}"
    out = [base] if base in MODULES else []
    return out + [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]


def _module_level_imports() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        graph[name] = set()
        for node in _tree(path).body:
            nodes = [node] + (list(ast.walk(node)) if isinstance(node, (ast.If, ast.Try)) else [])
            for n in nodes:
                for m in _imported(n, name):  # importing a module imports its packages first
                    parts = m.split(".")
                    graph[name].update(".".join(parts[:k]) for k in range(2, len(parts) + 1)
                                       if ".".join(parts[:k]) in MODULES)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of module-level imports, or None (a package importing its own submodules, and a
    submodule importing its package, are not cycles)."""
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> list[str] | None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if n == m or n.startswith(m + ".") or m.startswith(n + "."):
                continue
            if state.get(n) == 1:
                return trail[trail.index(n):] + [n]
            if n not in state:
                found = visit(n, trail + [n])
                if found:
                    return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m, [m])
            if found:
                return found
    return None


def test_no_import_cycle():
    assert _cycle(_module_level_imports()) is None
    assert _cycle({"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}}) == ["p.a", "p.b", "p.c", "p.a"]


def test_the_package_imports_itself_inside_functions_only_from_the_command_line():
    found = []
    for name, path in MODULES.items():
        if name.startswith("onnx_lineage.cli") or name == "typer_app":
            continue
        for fn in _functions(_tree(path)):
            for node in ast.walk(fn):
                found += [f"{path.name}:{node.lineno} {m}" for m in _imported(node, name)
                          if m.startswith("onnx_lineage")]
    assert not found


def _code_lines(fn: ast.AST) -> int:
    lines = fn.end_lineno - fn.lineno + 1
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
            isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def test_no_function_has_more_than_sixty_lines_of_code():
    long = [f"{p.relative_to(ROOT)}:{fn.lineno} {fn.name} ({_code_lines(fn)})"
            for p in SOURCES for fn in _functions(_tree(p)) if _code_lines(fn) > 60]
    assert not long


def test_no_constructor_takes_more_than_six_positional_arguments():
    calls = []
    for p in SOURCES:
        for node in ast.walk(_tree(p)):
            if isinstance(node, ast.Call) and len(node.args) > 6:
                name = ast.unparse(node.func).rsplit(".", 1)[-1]
                if name[:1].isupper():
                    calls.append(f"{p.relative_to(ROOT)}:{node.lineno} {name}")
    assert not calls


def test_the_rules_can_fail(tmp_path):
    """The readers see what they look for: a long function, a wide constructor call."""
    src = "def f():\n    '''doc'''\n" + "    x = 1\n" * 61 + "    return C(1, 2, 3, 4, 5, 6, 7)\n"
    tree = ast.parse(src)
    (fn,) = _functions(tree)
    assert _code_lines(fn) == 63  # the def line, 61 lines, the return
    (call,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert len(call.args) == 7
    assert _imported(ast.parse("from onnx_lineage.evidence import verdict").body[0],
                     "onnx_lineage.cli.x") == ["onnx_lineage.evidence",
                                               "onnx_lineage.evidence.verdict"]
