"""Module and function sizes of the production code, against STYLE.md's ~300 / ~40 lines.

Prints every module over MODULE_LIMIT lines and every function (or method)
over FUNCTION_LIMIT lines, longest first, then the totals. A function's
length runs from its `def` (decorators excluded) to its last line. Names
listed in `FLAT_TABLES` are known exceptions: flat tables that read better
whole; they are printed, marked, and not counted as over.

    .venv/bin/python scripts/sizes.py [ROOT]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("agent", "gossip", "catalog", "intentions", "proxy")
MODULE_LIMIT = 300
FUNCTION_LIMIT = 40
# "path:qualified name" -> why it stays whole.
FLAT_TABLES: dict[str, str] = {}


def modules(root: Path) -> list[tuple[int, str]]:
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            out.append((len(path.read_text().splitlines()), str(path.relative_to(root))))
    return out


def functions(root: Path) -> list[tuple[int, str]]:
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = str(path.relative_to(root))
            tree = ast.parse(path.read_text(), filename=rel)
            out += [(n, f"{rel}:{q}") for n, q in _walk(tree, "")]
    return out


def _walk(node: ast.AST, prefix: str) -> list[tuple[int, str]]:
    found = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{child.name}"
            end = child.end_lineno or child.lineno
            found.append((end - child.lineno + 1, name))
            found += _walk(child, name + ".")
        elif isinstance(child, ast.ClassDef):
            found += _walk(child, f"{prefix}{child.name}.")
    return found


def main(root: Path) -> int:
    mods = modules(root)
    funcs = functions(root)
    big_mods = sorted((m for m in mods if m[0] > MODULE_LIMIT), reverse=True)
    big_funcs = sorted((f for f in funcs if f[0] > FUNCTION_LIMIT), reverse=True)
    print(f"modules over {MODULE_LIMIT} lines:")
    for n, name in big_mods:
        print(f"  {n:5d}  {name}")
    print(f"functions over {FUNCTION_LIMIT} lines:")
    over = 0
    for n, name in big_funcs:
        mark = "  (flat table: " + FLAT_TABLES[name] + ")" if name in FLAT_TABLES else ""
        over += not mark
        print(f"  {n:5d}  {name}{mark}")
    total = sum(n for n, _ in mods)
    print(
        f"{len(mods)} modules, {total} lines; {len(big_mods)} modules over {MODULE_LIMIT}, "
        f"{over} functions over {FUNCTION_LIMIT} (plus {len(big_funcs) - over} flat tables); "
        f"longest module {max(mods)[0]}, longest function {max(funcs)[0]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    )
