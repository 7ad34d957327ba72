#!/usr/bin/env bash
# One command: a three-host mesh running a small app, on this machine.
# Sets up the virtualenv like dev.sh, then runs scripts/demo.py (see its
# docstring). --check brings it up, drives a deny/allow and tears it down.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" dev >&2
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m scripts.demo "$@"
