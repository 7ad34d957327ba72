"""Whether this agent has caught up with its cluster since it started: the gate on what
sidecars act on.

An agent that starts with peers to hear from (it has `join` or `retry_join`
addresses, or its catalog knows other nodes from an earlier life) holds
state that may be stale (it was away) or empty (a new data dir): its
intentions, roots and instances are what its sidecars decide and route
with. A sidecar asking it in that window would cut connections the
cluster still allows (an empty intention list is a default deny). So
until its first anti-entropy exchange with a peer succeeds, the answers
under GATED wait, at most CAP_S after the start, after which they go out
as they are (a cluster whose peers are all down must not freeze its
sidecars' control plane for good). Until then the replicator also tries
its exchanges every EAGER_S instead of its usual interval.

A Consul client agent has no such window: its state lives on the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Final

CAP_S: Final = 10.0  # the longest a gated answer waits for the first exchange
EAGER_S: Final = 0.25  # between exchange attempts until the first one succeeds
GATED: Final = ("/v1/connect/", "/v1/agent/connect/", "/v1/health/connect/")


class FirstSync:
    def __init__(self, expected: bool, cap_s: float = CAP_S) -> None:
        """`expected`: whether there are peers to catch up with (else in step at once)."""
        self._done = asyncio.Event()
        self._until = time.monotonic() + cap_s
        if not expected:
            self._done.set()

    def synced(self) -> None:
        """An exchange with a peer succeeded."""
        self._done.set()

    def pending(self) -> bool:
        """Still waiting for the first exchange, within the cap."""
        return not self._done.is_set() and time.monotonic() < self._until

    async def wait(self) -> None:
        """Until the first exchange, or the cap: whichever comes first."""
        left = self._until - time.monotonic()
        if left > 0 and not self._done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), left)


def gated(path: str) -> bool:
    """Whether an answer on `path` waits for the first exchange (what sidecars act on)."""
    return path.startswith(GATED)
