"""Which share of the machine's shared names this test process may take, when pytest-xdist
runs the suite in several processes at once (scripts/test.sh).

Ports and the namespaces' /24 networks are picked by each process, then
handed to an agent or bridge later: two processes could pick the same one
in that gap. Each process takes only the ones whose number is its own
modulo the count of processes, so they never meet. Alone, a process owns
every number.
"""

from __future__ import annotations

import os


def share() -> tuple[int, int]:
    """(this process's index, the count of processes), (0, 1) without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not name.startswith("gw") or count < 2:
        return 0, 1
    return int(name[2:]) % count, count


def owns(number: int) -> bool:
    """Whether `number` (a port, a network's octet) is this process's to take."""
    index, count = share()
    return number % count == index


def owns_port(port: int) -> bool:
    """Whether `port` is this process's to take. Not by `port` itself: Linux's bind to port 0
    hands out ports of one parity (it keeps the other for connect), so halves by parity
    would give one process none (a first run: "no free port")."""
    return owns(port >> 1)
