"""One exposed path's listener (`Proxy.Expose.Paths[i]`): plain HTTP, one path let through. Shell.

As Consul's Envoy listener for an exposed path: no TLS and no intentions
(it is there for callers outside the mesh: a kubelet's probe, Prometheus,
the agent's own checks), a route that matches the path exactly (the query
string aside, as Envoy's `path` matcher has it) to the app's host
(`LocalServiceAddress`, 127.0.0.1 when unset, as Consul's exposed clusters
have it: an app on ::1 only is reached there) at `LocalPathPort`, and for
any other path Envoy's answer when no route matches: `404`.

`http`: each connection is an `HttpSession` (http1.py) whose host is this
listener, so a request is parsed and checked exactly as on the inbound
port (llhttp; a malformed one gets `400` and its connection closes, the
listener serves on), decided here by its path, and goes to the app on one
connection per client connection. `http2`: the connection must be h2c
(prior knowledge, as a gRPC health check speaks it); each stream passes the
h2c gate (h2_gate.py) that the inbound port uses, which decides it by its
`:path` here and answers another path `404` (gRPC: UNIMPLEMENTED).
A path the agent made for a check (`Expose.Checks`) takes connections from
this host only (expose_config.from_this_host), as Consul's does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from gossamer.gossip.host_port import host_port
from gossamer.intentions.model import Decision, HttpRequest
from gossamer.proxy import tally
from gossamer.proxy.config import ExposePath, ProxyConfig
from gossamer.proxy.expose_config import from_this_host
from gossamer.proxy.http1 import HttpSession
from gossamer.proxy.http_codec import Exchange, Outcome
from gossamer.proxy.http_limits import Limits
from gossamer.proxy.inbound_any import listen_host
from gossamer.proxy.listen import serve
from gossamer.proxy.side import PlainSide, Side

if TYPE_CHECKING:
    from gossamer.proxy.relay import Relay

log = logging.getLogger("gossamer.proxy")
EXPOSED: Final = Decision(True, "an exposed path")
NOT_EXPOSED: Final = Decision(False, "not an exposed path")


def exposed(path: str, target: str) -> bool:
    """Is the request target `target` the exposed `path`? Exact, its query string aside."""
    return target.split("?", 1)[0] == path


class ExposeListener:
    """The listener of one exposed path, and the `HttpHost` of its HTTP sessions."""

    pooled = False  # one app connection per client connection
    draining = False
    refusal = (404, b"")  # Envoy's answer when no route matches (`Not Found`)

    def __init__(self, path: ExposePath, address: str, config: ProxyConfig, counts: tally.Tally,
                 on_close: Callable[[], None]) -> None:  # fmt: skip
        self.path, self.address = path, address
        self.app_host = config.local_address  # LocalServiceAddress: where the app listens
        self.headers_timeout_s = config.headers_timeout_s
        self.max_header_bytes = config.max_header_bytes
        self.limits = Limits(config.request_timeout_s, config.request_idle_s, config.client_idle_s)
        self.connect_s = config.timeouts.local_connect_s
        self.tally = counts
        self.on_close = on_close
        self.sessions: set[HttpSession] = set()
        self.relays: set[Relay] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def where(self) -> str:
        return host_port(self.address, self.path.listener_port)

    async def start(self) -> None:
        """Listen (CannotListen, an OSError, when the port cannot be had)."""
        factory = lambda: PlainSide(on_connect=self._accepted)  # noqa: E731
        # (0.0.0.0 on an IPv6-only host: both families, as the inbound listener: inbound_any.py)
        self._server = await serve(factory, listen_host(self.address), self.path.listener_port)
        log.info("proxy: exposing %s on %s (to %s, %s)", self.path.path, self.where,
                 host_port(self.app_host, self.path.local_port), self.path.protocol)  # fmt: skip

    def _accepted(self, side: PlainSide) -> None:
        source = _peer(side)
        self.tally.add("expose.connections")
        if self.path.from_check and not _from_this_host(side):
            self.tally.add("expose.refused_source")  # (Envoy: no filter chain matches)
            side.close(abort=True)
            return
        if self.path.protocol == "http2":
            task = asyncio.create_task(self._serve_h2(side, source))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        session = HttpSession(self, side, source)
        self.sessions.add(session)
        session.start()

    # the HttpHost of the sessions (http_host.py)
    def decide_request(self, source: str, request: Callable[[], HttpRequest]) -> Decision:
        if exposed(self.path.path, request().path):
            return EXPOSED
        self.tally.add("expose.not_found")
        return NOT_EXPOSED

    def http_outcome(self, outcome: Outcome) -> None:
        self.tally.add("expose.requests")

    def http_closed(self, session: HttpSession) -> None:
        self.sessions.discard(session)
        self.on_close()

    def http_event(self, name: str) -> None:
        self.tally.add(f"expose.{name}")

    def take_idle(self, ex: Exchange) -> Side | None:
        return None

    async def open_backend(self, ex: Exchange) -> Side:
        """The app's port for this path (OSError, TimeoutError: the request gets `503`)."""
        return await self._app()

    async def _app(self) -> Side:
        loop = asyncio.get_running_loop()
        connecting = loop.create_connection(PlainSide, self.app_host, self.path.local_port)
        try:
            _, app = await asyncio.wait_for(connecting, self.connect_s)
        except (OSError, TimeoutError) as exc:
            log.warning("proxy: exposed path %s: %s unreachable: %s", self.path.path,
                        host_port(self.app_host, self.path.local_port), exc)  # fmt: skip
            raise
        return app

    def release_backend(self, side: Side, *, failed: bool = False, timed: bool = True,
                        status: int = 0) -> object:  # fmt: skip
        side.close()
        return None

    def may_retry(self) -> bool:
        return False

    def elsewhere(self, ex: Exchange) -> bool:
        return False

    # h2c
    async def _serve_h2(self, client: PlainSide, source: str) -> None:
        from gossamer.proxy.expose_h2 import relay_h2

        try:
            app = await self._app()
        except (OSError, TimeoutError):
            client.close()
            return
        except asyncio.CancelledError:  # the listener's end (terminate_all)
            client.close(abort=True)
            raise
        relay = relay_h2(self, client, app, source)
        if not relay.halves.closed:
            self.relays.add(relay)

    def relay_closed(self, relay: Relay) -> None:
        self.relays.discard(relay)
        self.on_close()

    # the listener's life
    def stop_listening(self) -> None:
        """No new connections; the open ones end after their answer under way."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.draining = True
        for session in list(self.sessions):
            session.wind_down()

    def open_count(self) -> int:
        return len(self.sessions) + len(self.relays) + len(self._tasks)

    def terminate_all(self) -> None:
        for session in list(self.sessions):
            session.close(abort=True)
        for relay in list(self.relays):
            relay.terminate()
        for task in list(self._tasks):
            task.cancel()


def _from_this_host(side: PlainSide) -> bool:
    transport = side.transport
    if transport is None:
        return False
    peer, local = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
    if not (isinstance(peer, tuple) and isinstance(local, tuple)):
        return False
    return from_this_host(str(peer[0]), str(local[0]))


def _peer(side: PlainSide) -> str:
    transport = side.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    return host_port(str(peer[0]), peer[1]) if isinstance(peer, tuple) else "?"
