"""The package's layers run one way, and its files stay small.

Every ``.py`` file of the package is parsed (not imported) and every import in it counts: at the top,
inside functions, and under ``TYPE_CHECKING`` (a deferred import is still a dependency). Each module
belongs to a layer; an import may go down or sideways, never up, and the report and the widgets never
import each other.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "widgets" / "faultlens"

#: The layer of each part of the package (its first name below ``faultlens``), low to high.
LAYERS: dict[str, float] = {
    "_version": 0,
    "_checks": 0,
    "store": 0,
    "data": 1,
    "models": 2,
    "analysis": 3,
    "render": 3.5,  # colour encoding, map images, HTML fragments: shared by the report and the ui
    "report": 4,
    "ui": 4,
    "cli": 5,
    "_demo": 5,
    "_api": 5,
    "__init__": 5,
}
#: Parts of one layer that must not import each other.
APART = {frozenset({"report", "ui"})}

#: Edges known to run back, to be removed: (importing module, imported module). It only shrinks.
KNOWN_BACK_EDGES: set[tuple[str, str]] = set()

MAX_LINES = 600
#: Files known to be longer, to be split: it only shrinks.
KNOWN_LONG: set[str] = set()


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["faultlens", *parts])


def imports(path: Path, root: Path = PACKAGE) -> set[str]:
    """The faultlens modules ``path`` imports, wherever in the file the import stands."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "faultlens")
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "faultlens":
                continue
            # `from faultlens.x import y` imports the module faultlens.x.y where y is one
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if _is_module(sub, root) else target)
    found.discard(name)
    return found


def _is_module(name: str, root: Path) -> bool:
    rel = Path(*name.split(".")[1:])
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def part(module: str) -> str:
    """The part of the package ``module`` belongs to: its first name below ``faultlens``."""
    names = module.split(".")
    return names[1] if len(names) > 1 else "__init__"


def runs_back(src: str, dst: str) -> bool:
    a, b = part(src), part(dst)
    return LAYERS[b] > LAYERS[a] or frozenset({a, b}) in APART


def edges(root: Path = PACKAGE) -> set[tuple[str, str]]:
    return {
        (module_name(path, root), dst)
        for path in sorted(root.rglob("*.py"))
        for dst in imports(path, root)
    }


def back_edges(root: Path = PACKAGE) -> set[tuple[str, str]]:
    return {(src, dst) for src, dst in edges(root) if runs_back(src, dst)}


def test_every_module_has_a_layer() -> None:
    unknown = sorted({part(m) for edge in edges() for m in edge} - set(LAYERS))
    files = {part(module_name(p)) for p in PACKAGE.rglob("*.py")}
    unknown += sorted(files - set(LAYERS))
    assert not unknown, f"give {unknown} a layer in LAYERS"


def test_imports_run_one_way() -> None:
    found = back_edges()
    new = sorted(found - KNOWN_BACK_EDGES)
    assert not new, "imports that run back up the layers (or between report and ui): " + ", ".join(
        f"{a} -> {b}" for a, b in new
    )
    gone = sorted(KNOWN_BACK_EDGES - found)
    assert not gone, f"remove {gone} from KNOWN_BACK_EDGES: they are gone"


def test_the_walk_sees_deferred_and_type_checking_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "faultlens"
    (pkg / "analysis").mkdir(parents=True)
    (pkg / "ui").mkdir()
    for f in (
        "__init__.py",
        "analysis/__init__.py",
        "ui/__init__.py",
        "ui/explorer.py",
        "report.py",
    ):
        (pkg / f).write_text("")
    (pkg / "analysis" / "result.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from faultlens.ui.explorer import Explorer\n"
        "def report():\n    from .. import report\n"
    )
    (pkg / "ui" / "explorer.py").write_text("from faultlens.analysis import result\n")
    assert back_edges(pkg) == {
        ("faultlens.analysis.result", "faultlens.ui.explorer"),
        ("faultlens.analysis.result", "faultlens.report"),
    }
    assert ("faultlens.ui.explorer", "faultlens.analysis.result") in edges(pkg)
    (pkg / "report.py").write_text("import faultlens.ui.explorer\n")
    assert ("faultlens.report", "faultlens.ui.explorer") in back_edges(pkg)


def test_no_file_is_too_long() -> None:
    lines = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    long = {f: n for f, n in lines.items() if n > MAX_LINES and f not in KNOWN_LONG}
    assert not long, f"split these files (over {MAX_LINES} lines): {long}"
    short = sorted(f for f in KNOWN_LONG if lines.get(f, 0) <= MAX_LINES)
    assert not short, f"remove {short} from KNOWN_LONG: they are short enough now"


def test_the_top_level_imports_its_parts_only_when_asked() -> None:
    code = (
        "import sys, faultlens\n"
        "assert callable(faultlens.explore) and 'explore' in dir(faultlens)\n"
        "print(sorted(m for m in sys.modules if m.startswith('faultlens.')))\n"
        "faultlens.write_report\n"
        "print('faultlens.report' in sys.modules, 'faultlens.ui.explorer' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.splitlines()
    assert out == ["['faultlens._version']", "True False"]
