#!/usr/bin/env bash
# One command: set everything up, then run the checks and the whole test
# suite (unit, real-agent integration, multi-host in network namespaces).
# Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh test
scripts/lint.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
