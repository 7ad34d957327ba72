#!/usr/bin/env bash
# One command: set everything up, then run the checks and the whole test
# suite (unit, real-agent integration, multi-host in network namespaces).
# Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh test
scripts/lint.sh
# Two processes (pytest-xdist), each running whole files: the suite mostly waits (gossip,
# timeouts, convergence), so two overlap their waits on two cores (28 min -> 12). Each takes
# its own ports and namespace networks (tests/harness/workers.py). `-n 0`: one process.
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile "$@"
