"""The idle limit of TCP (L4) connections: closed after `idle_s` with no byte either way.

Envoy's tcp_proxy closes a connection idle for an hour (its `idle_timeout`);
without a limit, one whose peer vanished without a FIN or a reset (a host
gone, a NAT that forgot it), or a reader stalled for good, held its app
connection, its stream and ~350 KiB of the proxy for as long as the
process lived. The limit is the proxy's `idle_timeout_ms` (Proxy.Config,
3600000), which bounds an HTTP client's wait between requests too.

Rules kept here, so the data path pays nothing: nothing is stamped per
read; one timer per listener wakes every `idle_s / 2` and compares each
byte relay's count with the last wake's, so a connection is closed between
1x and 1.5x the limit after its last byte. Relays with calls of their own
(HTTP/2: h2_relay.py, h2_followed.py) keep their own idle rules and are
not swept. The timer stops once the listener no longer serves and has no
relay left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from gossamer.proxy.relay import Relay


class IdleSweep:
    def __init__(
        self,
        idle_s: Callable[[], float],
        relays: Callable[[], Iterable[Relay]],
        serving: Callable[[], bool],
        on_idle: Callable[[Relay], None],
    ) -> None:
        """`idle_s` is read at each wake (a registration change applies at the next one);
        `on_idle` cuts a relay found idle."""
        self._idle_s = idle_s
        self._relays = relays
        self._serving = serving
        self._on_idle = on_idle
        self._seen: dict[Relay, tuple[int, float]] = {}  # relay -> (bytes, since when)
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._handle is None:
            self._arm()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._seen = {}

    def _arm(self) -> None:
        idle_s = self._idle_s()
        wake = idle_s / 2 if idle_s > 0 else 60.0  # off: look again whether it was turned on
        self._handle = asyncio.get_running_loop().call_later(wake, self._wake)

    def _wake(self) -> None:
        self._handle = None
        idle_s, now = self._idle_s(), time.monotonic()
        seen: dict[Relay, tuple[int, float]] = {}
        relays = [r for r in self._relays() if type(r) is Relay]  # (byte relays only)
        for relay in relays:
            sent, back = relay.bytes_each_way()
            moved = sent + back
            last = self._seen.get(relay)
            since = last[1] if last is not None and last[0] == moved else now
            if idle_s > 0 and now - since >= idle_s:
                self._on_idle(relay)
            else:
                seen[relay] = (moved, since)
        self._seen = seen
        if self._serving() or seen:
            self._arm()
