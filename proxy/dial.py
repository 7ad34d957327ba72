"""Reaching one instance of an upstream: a verified mTLS connection, or why not. Shell.

`dial` connects (within the upstream's `connect_timeout_s`), offers the
session an earlier connection to that instance left (sessions.py), and
checks the server's certificate: it must carry the SPIFFE ID of the
service asked for (authorize.server_service). The connection is kept
alive by the kernel (`keep_alive`), so a peer that vanishes (its host cut
off or powered down) is found within `dead_after_s` even when nothing is
being sent, and the client connections it carried are cut, not left
hanging; a shared one (mux_pool.py) is also failed once what it sent has
gone unacknowledged that long (`bound_unacknowledged`). `failed` is where every
failed attempt goes, a connect here or an OPEN the far side refused
(mux_pool.py): counted by reason, fed to outlier detection (outlier.py),
logged at most once a minute per instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gossamer.gossip.host_port import host_port
from gossamer.proxy import tally
from gossamer.proxy.authorize import Refused, reason_of_handshake_error, server_service
from gossamer.proxy.tls_side import TlsSide

if TYPE_CHECKING:
    from gossamer.proxy.health_rows import Instance
    from gossamer.proxy.outbound import UpstreamListener

log = logging.getLogger("gossamer.proxy")


async def dial(listener: UpstreamListener, instance: Instance, service: str = "", *,
               tunnel: bool = False) -> TlsSide | None:  # fmt: skip
    """A verified mTLS connection to `instance`, whose certificate must name `service`
    (the upstream's own by default), offering frames (mux.py) when `tunnel`; None after
    counting why not."""
    identity = listener.identity()
    if identity is None:
        listener.refuse(tally.NO_IDENTITY, "the proxy has no certificate yet")
        return None
    loop = asyncio.get_running_loop()
    server: TlsSide | None = None
    context = identity.client_tunnel if tunnel else identity.client
    session = listener.sessions.offer(instance, context, time.monotonic())
    timeout_s = listener.connect_timeout_for(service or listener.upstream.name)
    try:
        async with asyncio.timeout(timeout_s):
            _, server = await loop.create_connection(
                lambda: TlsSide(context, server_side=False, session=session), *instance
            )
            keep_alive(server.transport, dead_after_s(timeout_s))
            await asyncio.shield(server.handshake)
        server_service(server.pipe.peer_certificates(), identity.trust, datetime.now(UTC),
                       service or listener.upstream.name, listener.chains)  # fmt: skip
    except asyncio.CancelledError:  # (the listener's end: terminate_all)
        if server is not None:
            server.close(abort=True)
        raise
    except (OSError, TimeoutError, Refused) as exc:
        if isinstance(exc, Refused):
            reason = exc.reason
        elif server is not None and isinstance(exc, (TimeoutError, ssl.SSLError)):
            reason = reason_of_handshake_error(exc)  # connected: its TLS failed
        else:
            reason = tally.CONNECT_FAILED
        if server is not None:
            server.close(abort=True)
        listener.sessions.drop(instance)
        failed(listener, instance, reason, exc)
        return None
    if listener.http is None:  # (HTTP: a good answer resets the count, not a connection)
        listener.outliers.succeeded(instance)
    if server.pipe.resumed:
        listener.tally.add("outbound.resumed")
    return server


def dead_after_s(connect_timeout_s: float) -> float:
    """How long a peer sidecar may leave this side's bytes or keepalive probes unacknowledged
    before its connection is judged dead: three connect timeouts (30 s by default), 3 s at
    least (a connect timeout is what this network is given to answer at all)."""
    return max(3.0, 3 * connect_timeout_s)


def keep_alive(transport: asyncio.BaseTransport | None, dead_after: float) -> None:
    """Let the kernel find a peer gone without a word while the connection is idle: probes
    after a third of `dead_after` of quiet, and the connection failed (ETIMEDOUT: its streams
    and clients cut) when two go unanswered, `dead_after` in all.

    Without it a connection to a host cut off stayed open for as long as nothing was sent:
    for good, with every client stream on a shared one hanging (found by the L4
    walkthrough, tests/test_proxy_walk_outbound.py)."""
    probe_s = max(1, round(dead_after / 3))
    _set(transport, (socket.SOL_SOCKET, "SO_KEEPALIVE", 1), (socket.IPPROTO_TCP, "TCP_KEEPIDLE",
         probe_s), (socket.IPPROTO_TCP, "TCP_KEEPINTVL", probe_s),
         (socket.IPPROTO_TCP, "TCP_KEEPCNT", 2))  # fmt: skip


def bound_unacknowledged(transport: asyncio.BaseTransport | None, dead_after: float) -> None:
    """Fail the connection once what was sent on it has gone unacknowledged for `dead_after`
    (TCP_USER_TIMEOUT): keepalive probes are not sent while bytes are in flight, and the
    kernel otherwise retransmits into a dead link for ~15 min. For a shared connection
    (mux.py) only: its far side reads it at all times (flow control is per stream), so a
    window shut that long is a peer gone or stuck. A connection of one client is read at
    its app's pace, and the kernel counts a shut window as unacknowledged: a slow app would
    have its connection cut (tests/test_proxy_walk_outbound_slow_peer.py)."""
    _set(transport, (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT", int(dead_after * 1000)))


def _set(transport: asyncio.BaseTransport | None, *options: tuple[int, str, int]) -> None:
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    for level, name, value in options:
        if hasattr(socket, name):  # (Linux has them all; others some)
            with contextlib.suppress(OSError):
                sock.setsockopt(level, getattr(socket, name), value)


def outlier_failed(listener: UpstreamListener, instance: Instance) -> None:
    """Outlier detection hears of a failure at `instance` (a connect, or an HTTP answer that
    says its app failed); one that sets it aside is counted and logged."""
    if listener.outliers.failed(instance, time.monotonic_ns() // 1_000_000, listener.known):
        listener.tally.add("outbound.ejected")
        log.warning("proxy: upstream %s instance %s set aside after repeated failures",
                    listener.upstream.name, host_port(*instance))  # fmt: skip


def failed(listener: UpstreamListener, instance: Instance, reason: str,
           exc: BaseException) -> None:  # fmt: skip
    """An attempt on `instance` failed for `reason`: counted, fed to outlier detection (which
    may set the instance aside), logged once a minute per instance."""
    name = listener.upstream.name
    listener.tally.add(f"outbound.attempt_failed.{reason}")
    shown = host_port(instance[0], instance[1])
    outlier_failed(listener, instance)
    if listener.tally.limiter.allow(f"attempt/{name}/{shown}", time.time_ns() // 1_000_000):
        said = str(exc) or type(exc).__name__  # (a timeout says nothing)
        log.warning("proxy: upstream %s instance %s failed (%s): %s; trying another", name,
                    shown, reason, said)  # fmt: skip
