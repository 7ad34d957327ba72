#!/usr/bin/env bash
# One command: set everything up, then run a single-node dev agent in the
# foreground (loopback only, temporary data dir). Extra flags pass through.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" dev
exec "$ROOT/.venv/bin/gossamer" agent --dev "$@"
