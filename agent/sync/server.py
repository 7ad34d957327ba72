"""Agent RPC server: answers peers' digest, pull and push requests over mutual TLS 1.3.

What each request gets is `catalog.sync_answer.respond` (pure): the reply
frame and the effects to apply here. This module moves frames and applies
effects; it decides nothing about the protocol.

A peer is trusted with nothing: each accepted TCP connection is upgraded to
TLS at once (tls.py says who verifies what); plaintext, garbage, a slow
handshake or a certificate that does not verify ends it there. A peer that
presented no certificate may ask "ca-bundle" (enrolment) and nothing else:
any other request gets an error reply and the connection is closed. A
verified agent may push records it owns, and other owners' records only
with their owner's signature (`absorb.split_pushed`), which `apply_effects`
checks as it does for pulled ones (relay_check.py). A
connection is checked again before the next request when the identity's
trust epoch changes (a root left the bundle, a revocation) or a certificate
of the peer's chain expires, since clients keep connections open (pool.py). Every
refusal is counted per reason and logged once per peer address per minute
(`AgentTls.refuse`). Bad framing closes the connection, a bad request gets
an error reply, an idle connection is dropped, the number of connections is
capped, and whatever one connection does, the server keeps serving others.

Why TLS comes first: connections are accepted as raw sockets and handed to
`loop.connect_accepted_socket` with the current server context, so the TLS
protocol owns the socket before a byte is read, and a failed handshake is
raised here (counted, logged) instead of only reaching the loop's exception
handler. Upgrading a plaintext stream with `start_tls` was racy under
uvloop: the ClientHello could land in the plaintext reader and the
handshake hung until its timeout (seen on one connection in two; pausing
reading in `connection_made` did not hold, uvloop starts reading after it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import ssl
from collections.abc import Callable, Sequence

from gossamer.agent.sync import refusals
from gossamer.agent.sync.peer_check import PeerAgent, PeerRefused
from gossamer.agent.sync.peer_link import (
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    READ_CHUNK,
    Replicas,
    _close,
    apply_effects,
    snapshots,
)
from gossamer.agent.sync.tls import HANDSHAKE_TIMEOUT, AgentTls, handshake_reason
from gossamer.catalog import absorb, record_news
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import NodeRecord
from gossamer.catalog.sync_answer import Served, error, respond
from gossamer.catalog.sync_protocol import FrameDecoder, Message, ProtocolError, encode
from gossamer.proxy.ca.verify import CLIENT_AUTH

CA_BUNDLE = "ca-bundle"  # the one request answered to a peer without a certificate
CLOSE_GRACE_S = 2.0  # at shutdown, how long open connections get to finish (wait_closed)
NO_CERTIFICATE_ERROR = "agent RPC needs a verified agent certificate; without one only 'ca-bundle'"

log = logging.getLogger("gossamer.replication")


class NotAllowed(Exception):
    """A peer without a certificate asked for more than "ca-bundle"; the connection ends."""


class _Refused(Exception):
    """The connection was refused (and counted) before any request: just end it."""


class PeerRpcServer:
    """Answers verified agents' digest, pull and push requests from `catalog` (and `replicas`)."""

    def __init__(
        self,
        catalog: LiveCatalog,
        *,
        self_origin: str,
        tls: AgentTls,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        replicas: Replicas | None = None,
    ) -> None:
        self._catalog = catalog
        self._tls = tls
        self._replicas: Replicas = replicas or {}
        self._self_origin = self_origin
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._accepting: asyncio.Task[None] | None = None
        self._listener: socket.socket | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.refused = 0  # connections turned away at the cap
        self.accepted = 0  # connections accepted since start (each one a handshake)
        self.requests = 0  # requests answered since start, from verified agents
        # Hears each push's records that were news here, with its `told` hint (record_push.py).
        self.heard: Callable[[Sequence[NodeRecord], Sequence[str]], None] | None = None

    @property
    def connections(self) -> int:
        """Connections open now, in their handshake or served."""
        return len(self._handlers)

    @property
    def refusals(self) -> dict[str, int]:
        """Refusals so far, per reason (refusals.py), for /v1/agent/self and metrics."""
        return self._tls.refusals.counts()

    async def start(self, sock: socket.socket) -> None:
        """Serve on a listening socket the agent bound earlier."""
        sock.setblocking(False)
        self._listener = sock
        self._accepting = asyncio.create_task(self._accept_forever(sock), name="agent-rpc-accept")

    def close(self) -> None:
        """Stop accepting and drop every open connection."""
        if self._accepting is not None:
            self._accepting.cancel()
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for writer in list(self._writers):
            writer.close()

    async def wait_closed(self) -> None:
        """After `close()`: until every connection handler has finished, for at most
        `CLOSE_GRACE_S`; the rest are cancelled. A connection still in its handshake is not
        closed by `close()`, and a peer that never answers (a silent TCP connection, a TLS
        close the far side does not read) would otherwise hold up this agent's shutdown."""
        if not self._handlers:
            return
        _, late = await asyncio.wait(set(self._handlers), timeout=CLOSE_GRACE_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _accept_forever(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(sock)
            except OSError as exc:  # e.g. out of file descriptors: keep serving the open ones
                log.warning("agent RPC: accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self.accepted += 1
            task = asyncio.create_task(self._handle(conn, address))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _handle(self, conn: socket.socket, address: object) -> None:
        if len(self._handlers) > self._max_connections:
            self.refused += 1
            log.debug("agent RPC: refusing %s, %d connections open", address, len(self._writers))
            conn.close()
            return
        stream = await self._secure(conn, address)
        if stream is None:
            return
        reader, writer, peer = stream
        self._writers.add(writer)
        try:
            await self._serve(reader, writer, peer)
        except _Refused:
            pass
        except NotAllowed as exc:
            self._tls.refuse(refusals.NO_CERTIFICATE, address, str(exc))
        except PeerRefused as exc:  # re-checked on a kept connection, and no longer valid
            self._tls.refuse(exc.reason, address, str(exc))
        except ProtocolError as exc:
            log.debug("agent RPC: closing connection from %s: %s", address, exc)
        except (ConnectionError, TimeoutError) as exc:
            log.debug("agent RPC: connection from %s ended: %r", address, exc)
        except Exception:  # one bad peer (or a bug) must never stop the server
            log.warning("agent RPC: error serving %s", address, exc_info=True)
        finally:
            self._writers.discard(writer)
            await _close(writer)

    async def _secure(
        self, conn: socket.socket, address: object
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, PeerAgent | None] | None:
        """TLS, then who the peer is (an agent, or None: no certificate); None when refused."""
        context = self._tls.server_context()
        if context is None:
            self._tls.refuse(refusals.NOT_ENROLLED, address, "this agent has no certificate yet")
            conn.close()
            return None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        timeout = min(HANDSHAKE_TIMEOUT, self._idle_timeout)
        try:
            async with asyncio.timeout(timeout):
                transport, _ = await loop.connect_accepted_socket(
                    lambda: protocol, conn, ssl=context, ssl_handshake_timeout=timeout
                )
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self._tls.refuse(handshake_reason(exc), address, f"TLS handshake failed: {exc!r}")
            conn.close()
            return None
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        try:
            return reader, writer, self._tls.check(writer.get_extra_info("ssl_object"), CLIENT_AUTH)
        except PeerRefused as exc:
            if exc.reason == refusals.NO_CERTIFICATE:
                return reader, writer, None  # may still ask for the CA bundle
            self._tls.refuse(exc.reason, address, str(exc))
            await _close(writer)
            return None

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: PeerAgent | None
    ) -> None:
        decoder = FrameDecoder()
        address = writer.get_extra_info("peername")
        checked = self._tls.identity.trust_epoch
        while True:
            async with asyncio.timeout(self._idle_timeout):
                data = await reader.read(READ_CHUNK)
            if not data:
                return
            if peer is not None and not self._still_valid(peer, checked):
                checked = self._tls.identity.trust_epoch
                peer = self._tls.check(writer.get_extra_info("ssl_object"), CLIENT_AUTH)
            for message in decoder.feed(data):
                writer.write(self._answer(message, peer, address))
                async with asyncio.timeout(self._idle_timeout):
                    await writer.drain()
                if peer is None and message["t"] != CA_BUNDLE:
                    raise NotAllowed(
                        f"asked for {str(message['t'])[:40]!r} without an agent certificate"
                    )

    def _still_valid(self, peer: PeerAgent, checked: int) -> bool:
        """Whether a check made under trust epoch `checked` still holds: trust has not shrunk
        (no root left the bundle, no revocation) and no certificate of the peer's chain has
        expired since (a kept connection must not outlive either)."""
        expires = min(c.not_valid_after_utc for c in peer.chain)
        return self._tls.identity.trust_epoch == checked and self._tls.now() <= expires

    def _answer(self, message: Message, peer: PeerAgent | None, address: object) -> bytes:
        """The reply to one request from `peer` (None: no certificate, "ca-bundle" only)."""
        if message["t"] == CA_BUNDLE:
            return encode(self._tls.identity.ca_bundle_answer())
        if peer is None:
            return encode(error(NO_CERTIFICATE_ERROR))
        return self._reply(message, peer, address)

    def _reply(self, message: Message, peer: PeerAgent, address: object) -> bytes:
        """The reply frame to one request, after applying what the request brought."""
        self.requests += 1
        catalog = self._catalog
        served = Served(catalog.state, catalog.datacenter, snapshots(self._replicas))
        frame, effects = respond(message, served)
        if effects.records:
            kept, foreign = absorb.split_pushed(effects.records, peer.node)
            if foreign:
                self._tls.refuse(
                    refusals.FOREIGN_RECORD,
                    address,
                    f"agent {peer.node!r} pushed unsigned records it does not own: "
                    + ", ".join(sorted(r.node for r in foreign))[:200],
                )
                effects = dataclasses.replace(effects, records=tuple(kept))
            fresh = record_news.news_to(catalog.state, effects.records)
            if len(fresh) < len(effects.records):
                effects = dataclasses.replace(effects, records=tuple(fresh))
        changed = apply_effects(
            catalog,
            self._replicas,
            effects,
            self_origin=self._self_origin,
            tls=self._tls,
            peer=address,
            peer_node=peer.node,
        )
        if changed:
            log.debug("agent RPC: a push brought %s", ", ".join(changed))
            if effects.told and self.heard is not None:
                self.heard(effects.records, effects.told)
        return frame
