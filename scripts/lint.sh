#!/usr/bin/env bash
# ruff, mypy --strict and the import-direction contracts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
V=.venv/bin
echo "==> ruff" >&2
$V/ruff check --quiet .
$V/ruff format --check --quiet .
# mypy reads the tree as the installed package: a symlink farm maps each
# top-level folder to gossamer.<folder>, as setuptools' package-dir does.
TC=build/typecheck
mkdir -p "$TC/gossamer"
for pkg in agent gossip catalog intentions proxy; do ln -sfn "$ROOT/$pkg" "$TC/gossamer/$pkg"; done
echo "==> mypy" >&2
(cd "$TC" && "$ROOT/$V/mypy" --config-file "$ROOT/pyproject.toml" gossamer)
echo "==> import contracts" >&2
$V/python scripts/check_imports.py
