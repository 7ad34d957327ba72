"""The agent's DNS: keeps the prepared zone in step with the catalog and serves it.

A catalog change schedules a rebuild of the zone (at most one per
REBUILD_INTERVAL, or per four build times when the catalog is so large that
a build takes longer, so DNS never takes more than a fifth of the CPU to
keep up with churn; a burst of changes costs one rebuild) and drops the
prepared answers; queries in between see the previous zone, never a
half-built one. With `dns.nearest_first`, the RTT estimates to every node
are refreshed from Serf's coordinates every COORDINATE_INTERVAL seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gossamer.agent.dns.prepared import Responder
from gossamer.agent.dns.records import Context
from gossamer.agent.dns.recursor import Recursor
from gossamer.agent.dns.server import DnsServer
from gossamer.agent.dns.settings import DnsSettings, settings_from_config
from gossamer.agent.dns.zone import Zone, build_zone
from gossamer.catalog.live import LiveCatalog
from gossamer.gossip.addresses import parse_host_port
from gossamer.gossip.coordinates import rtt
from gossamer.gossip.rpc_records import Coordinate

log = logging.getLogger("gossamer.dns")

REBUILD_INTERVAL = 0.05
COORDINATE_INTERVAL = 10.0
CoordinateLookup = Callable[[str], Awaitable[Coordinate | None]]


class DnsFrontend:
    def __init__(
        self,
        config: Any,
        catalog: LiveCatalog,
        *,
        node: str,
        coordinate: CoordinateLookup | None = None,
        may_read: Callable[[], Callable[[str, str], bool] | None] | None = None,
    ) -> None:
        """`may_read` gives, at each zone build, what the default token may read (None: all)."""
        self.settings: DnsSettings = settings_from_config(config)
        self._may_read = may_read
        self._catalog = catalog
        self._node = node
        self._coordinate = coordinate
        self._distance: dict[str, float] = {}
        self._built_at = 0.0
        self._build_cost = 0.0
        self._pending: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        zone = self._zone()
        self.responder = Responder(Context(zone=zone, settings=self.settings, serial=_serial()))
        self._server = DnsServer(self.responder, _recursor(config))

    async def start(self, udp_sock: socket.socket, tcp_sock: socket.socket,
                    backlog: int = 100) -> None:  # fmt: skip
        self._catalog.on_change(self._changed)
        await self._server.start(udp_sock, tcp_sock, backlog)
        if self.settings.nearest_first and self._coordinate is not None:
            self._task = asyncio.create_task(self._track_coordinates(), name="dns-coordinates")

    def close(self) -> None:
        self._server.close()
        if self._pending is not None:
            self._pending.cancel()
        if self._task is not None:
            self._task.cancel()

    def _zone(self) -> Zone:
        return build_zone(
            self._catalog.state,
            self.settings.datacenter,
            only_passing=self.settings.only_passing,
            distance=self._distance,
            may_read=self._may_read() if self._may_read is not None else None,
        )

    def acl_changed(self) -> None:
        """Tokens or policies changed: the default token may now read more or less."""
        self._changed()

    def _changed(self) -> None:
        if self._pending is not None:
            return
        spacing = max(REBUILD_INTERVAL, 4 * self._build_cost)
        delay = max(0.0, self._built_at + spacing - time.monotonic())
        self._pending = asyncio.get_running_loop().call_later(delay, self._rebuild)

    def _rebuild(self) -> None:
        self._pending = None
        started = time.monotonic()
        try:
            self.responder.update(self._zone(), _serial())
        except Exception:  # keep serving the previous zone rather than nothing
            log.exception("rebuilding the DNS zone failed")
        self._built_at = time.monotonic()
        self._build_cost = self._built_at - started

    async def _track_coordinates(self) -> None:
        assert self._coordinate is not None
        while True:
            with contextlib.suppress(Exception):
                await self._refresh_distances(self._coordinate)
            await asyncio.sleep(COORDINATE_INTERVAL)

    async def _refresh_distances(self, lookup: CoordinateLookup) -> None:
        own = await lookup(self._node)
        if own is None:
            return
        distance: dict[str, float] = {}
        for node in [r.node for r in self._catalog.records()]:
            theirs = own if node == self._node else await lookup(node)
            distance[node] = math.inf if theirs is None else rtt(own, theirs)
        if distance != self._distance:
            self._distance = distance
            self._changed()


def _serial() -> int:
    return int(time.time())


def _recursor(config: Any) -> Recursor | None:
    dns = getattr(config, "dns", None)
    if dns is None or not dns.recursors:
        return None
    servers = [parse_host_port(entry, 53) for entry in dns.recursors]
    return Recursor(
        servers,
        randomize=dns.recursor_strategy == "random",
        timeout=dns.recursor_timeout.total_seconds(),
    )
