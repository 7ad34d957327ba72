"""Keep the dependency direction of DESIGN.md: gossip -> catalog -> agent/proxy.

Rules (each top-level folder is the package gossamer.<folder>):
- gossip imports nothing else of gossamer;
- catalog may import gossip only;
- intentions is pure: it imports nothing else of gossamer;
- proxy may import gossip, catalog and intentions, never agent;
- nothing but agent itself imports agent (it is the composition root).
Every `import` and `from ... import` is read with ast, including ones inside
functions, so a lazy import cannot sneak past. Exit 1 listing violations.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED: dict[str, set[str]] = {
    "gossip": set(),
    "catalog": {"gossip"},
    "intentions": set(),
    "proxy": {"gossip", "catalog", "intentions"},
    "agent": {"gossip", "catalog", "intentions", "proxy"},
}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, gossamer subpackage) for each gossamer import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "gossamer":
                names = [f"gossamer.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "gossamer" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def violations() -> list[str]:
    problems = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, target in imported_packages(path):
                if target != package and target not in allowed:
                    rel = path.relative_to(ROOT)
                    problems.append(
                        f"{rel}:{line}: gossamer.{package} must not import gossamer.{target}"
                    )
    return problems


if __name__ == "__main__":
    found = violations()
    for problem in found:
        print(problem, file=sys.stderr)
    sys.exit(1 if found else 0)
