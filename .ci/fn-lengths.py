#!/usr/bin/env python
"""The longest Python functions (and methods) of a package, in lines: the twin of
widgets/js/fn-lengths.mjs for the front end.

    python .ci/fn-lengths.py [N] [DIR]     (default: 10, widgets/faultlens)

Each row: total lines (``def`` to the last line, decorators left out), lines without the
docstring, the file relative to DIR, the line of the ``def`` and the qualified name.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def functions(root: Path) -> list[tuple[int, int, str, int, str]]:
    rows = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        stack: list[tuple[ast.AST, str]] = [(tree, "")]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    name = f"{prefix}{child.name}"
                    stack.append((child, f"{name}."))
                    if isinstance(child, ast.ClassDef):
                        continue
                    total = child.end_lineno - child.lineno + 1
                    doc = child.body[0]
                    is_doc = isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                    code = total - (doc.end_lineno - doc.lineno + 1 if is_doc else 0)
                    rows.append((total, code, str(path.relative_to(root)), child.lineno, name))
    return sorted(rows, key=lambda r: (-r[0], r[2], r[3]))


def main(argv: list[str]) -> None:
    n = int(argv.pop(0)) if argv and argv[0].isdigit() else 10
    root = Path(argv[0] if argv else Path(__file__).resolve().parents[1] / "widgets" / "faultlens")
    for total, code, file, line, name in functions(root)[:n]:
        print(f"{total:4d} {code:4d}  {file}:{line}  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
