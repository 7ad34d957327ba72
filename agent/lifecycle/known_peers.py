"""The peers this agent last saw alive, kept in the data dir and rejoined after a crash.

serf's snapshot is meant to bring the peers back on a restart, but serf
buffers its lines and writes one out only when a later line comes more than
500 ms after its last write. The join of a peer right after start (or any
last event of a quiet cluster) stays in that buffer, and `kill -9` or a
power cut loses it: the agent came back seeing no peer ("Failed to re-join
any previously known node") until one of them found it again through
push-pull (up to ~30 s), and never when all of them had crashed. Consul's
snapshot has the same buffer; this file is what an agent joined by
`gossamer join` (no `join`/`retry_join` in its config) needs to come back.

`<data_dir>/serf/known-peers.json` holds the gossip addresses of the other
members last seen alive, rewritten (atomically) only when that set changes
and never emptied by a member view that has no peer yet (an agent just
started). A graceful leave removes it (unless `rejoin_after_leave`), as
serf's snapshot records the leave: an agent that left stays out.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path

from gossamer.agent.identity.files import atomic_write
from gossamer.gossip.addresses import format_host_port
from gossamer.gossip.members import Member

log = logging.getLogger("gossamer.agent")

FILE = "known-peers.json"


def alive_peers(members: Iterable[Member], node: str) -> list[str]:
    """The gossip addresses of the members other than `node` that are alive, sorted."""
    return sorted(
        {
            format_host_port(m.addr, m.port)
            for m in members
            if m.name != node and m.status == "alive"
        }
    )


class KnownPeers:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._kept: list[str] | None = None

    def load(self) -> list[str]:
        """The addresses kept by an earlier run; none when there is no readable file."""
        try:
            found = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", self.path, exc)
            return []
        if not isinstance(found, list) or not all(isinstance(a, str) for a in found):
            log.warning("ignoring %s: not a list of addresses", self.path)
            return []
        self._kept = found
        return found

    def remember(self, members: Iterable[Member], node: str) -> None:
        """Keep the alive peers when they changed; a view with none keeps what was kept."""
        peers = alive_peers(members, node)
        if not peers or peers == self._kept:
            return
        try:
            atomic_write(self.path, json.dumps(peers).encode())
        except OSError as exc:  # a full disk: tried again at the next change
            log.warning("cannot keep the known peers in %s: %s", self.path, exc)
            return
        self._kept = peers

    def forget(self) -> None:
        """After a graceful leave: the next start does not rejoin them."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._kept = None
