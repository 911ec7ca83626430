"""Fail if a committed notebook has outputs or execution counts, lacks a `parameters` cell, or holds logic.

Usage: python tools/check_notebooks.py DIR [DIR ...]
Conventions checked (docs/architecture.md, "Notebooks"): first cell markdown (purpose, inputs, outputs);
exactly one code cell tagged `parameters` holding assignments only; no outputs or execution counts;
no `def`/`class` (logic belongs in the package).
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path


def check(path: Path) -> list[str]:
    problems = []
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        return [f"{path}: not valid JSON ({e})"]
    cells = nb.get("cells", [])
    if not cells or cells[0].get("cell_type") != "markdown":
        problems.append(f"{path}: the first cell must be markdown (purpose, inputs, outputs)")
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(params) != 1:
        problems.append(f"{path}: expected exactly one cell tagged 'parameters', found {len(params)}")
    for i, c in enumerate(cells, 1):
        if c.get("cell_type") != "code":
            continue
        if c.get("outputs"):
            problems.append(f"{path}: cell {i} has outputs; clear them (nbstripout)")
        if c.get("execution_count") is not None:
            problems.append(f"{path}: cell {i} has an execution count; clear it (nbstripout)")
        src = "".join(c.get("source", []))
        try:
            tree = ast.parse(src)
        except SyntaxError as e:
            problems.append(f"{path}: cell {i}: syntax error: {e}")
            continue
        if any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for n in ast.walk(tree)):
            problems.append(f"{path}: cell {i} defines a function or class; move it into the package")
        if c in params and not all(isinstance(n, ast.Assign | ast.AnnAssign) for n in tree.body):
            problems.append(f"{path}: cell {i} (parameters) must hold assignments of literals only")
    return problems


def main(argv: list[str]) -> int:
    paths = [p for d in argv for p in sorted(Path(d).rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts]
    problems = [p for path in paths for p in check(path)]
    for p in problems:
        print(p)
    print(f"{len(paths)} notebook(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["notebooks", "dashboards"]))
