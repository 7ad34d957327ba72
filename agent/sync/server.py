"""Agent RPC server: answers peers' digest, pull and push requests over mutual TLS 1.3.

What each request gets is `catalog.sync_answer.respond` (pure): the reply
frame and the effects to apply here. This module moves frames and applies
effects; it decides nothing about the protocol.

A peer is trusted with nothing: each accepted TCP connection is upgraded to
TLS at once (tls.py says who verifies what); plaintext, garbage, a slow
handshake or a certificate that does not verify ends it there. A peer that
presented no certificate may ask "ca-bundle" (enrolment) and nothing else:
any other request gets an error reply and the connection is closed. A
verified agent may push only records it owns (`absorb.split_owned`). A
connection is checked again before the next request when the identity's
generation changes (new bundle, revocation) or a certificate of the peer's
chain expires, since clients keep connections open (pool.py). Every
refusal is counted per reason and logged once per peer address per minute
(`AgentTls.refuse`). Bad framing closes the connection, a bad request gets
an error reply, an idle connection is dropped, the number of connections is
capped, and whatever one connection does, the server keeps serving others.

Why the upgrade is safe: a new connection's transport stops reading in
`connection_made` (`_TlsFirst`), before any byte arrives, and reads again
only once `start_tls` has put TLS in front, so no byte of the ClientHello
is consumed as plaintext. (Relying on the handler reaching `start_tls`
before the first read is not enough: under uvloop, with a busy loop, the
ClientHello could land in the plaintext reader and the handshake hung until
its timeout.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import ssl
from typing import cast

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
from gossamer.catalog import absorb
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.sync_answer import Served, error, respond
from gossamer.catalog.sync_protocol import FrameDecoder, Message, ProtocolError, encode
from gossamer.proxy.ca.verify import CLIENT_AUTH

CA_BUNDLE = "ca-bundle"  # the one request answered to a peer without a certificate
NO_CERTIFICATE_ERROR = "agent RPC needs a verified agent certificate; without one only 'ca-bundle'"

log = logging.getLogger("gossamer.replication")


class NotAllowed(Exception):
    """A peer without a certificate asked for more than "ca-bundle"; the connection ends."""


class _TlsFirst(asyncio.StreamReaderProtocol):
    """A stream protocol that reads nothing until TLS takes the transport over."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but read alike.
        cast(asyncio.ReadTransport, transport).pause_reading()  # start_tls resumes it
        super().connection_made(transport)


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
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.refused = 0  # connections turned away at the cap

    @property
    def connections(self) -> int:
        return len(self._writers)

    @property
    def refusals(self) -> dict[str, int]:
        """Refusals so far, per reason (refusals.py), for /v1/agent/self and metrics."""
        return self._tls.refusals.counts()

    async def start(self, sock: socket.socket) -> None:
        """Serve on a listening socket the agent bound earlier."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TlsFirst(asyncio.StreamReader(), self._handle), sock=sock
        )

    def close(self) -> None:
        """Stop accepting and drop every open connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()

    async def wait_closed(self) -> None:
        """After `close()`: until every connection handler has finished."""
        while self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._handle_one(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _handle_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_addr = writer.get_extra_info("peername")
        if len(self._writers) >= self._max_connections:
            self.refused += 1
            log.debug("agent RPC: refusing %s, %d connections open", peer, len(self._writers))
            await _close(writer)
            return
        self._writers.add(writer)
        try:
            await self._serve(reader, writer, await self._secure(writer, peer_addr))
        except _Refused:
            pass
        except NotAllowed as exc:
            self._tls.refuse(refusals.NO_CERTIFICATE, peer_addr, str(exc))
        except PeerRefused as exc:  # re-checked on a kept connection, and no longer valid
            self._tls.refuse(exc.reason, peer_addr, str(exc))
        except ProtocolError as exc:
            log.debug("agent RPC: closing connection from %s: %s", peer, exc)
        except (ConnectionError, TimeoutError) as exc:
            log.debug("agent RPC: connection from %s ended: %r", peer, exc)
        except Exception:  # one bad peer (or a bug) must never stop the server
            log.warning("agent RPC: error serving %s", peer, exc_info=True)
        finally:
            self._writers.discard(writer)
            await _close(writer)

    async def _secure(self, writer: asyncio.StreamWriter, address: object) -> PeerAgent | None:
        """TLS, then who the peer is: a verified agent or None (no certificate); else _Refused.

        Called before the handler's first await (see the module docstring).
        """
        context = self._tls.server_context()
        if context is None:
            self._tls.refuse(refusals.NOT_ENROLLED, address, "this agent has no certificate yet")
            writer.transport.abort()
            raise _Refused from None
        try:
            async with asyncio.timeout(min(HANDSHAKE_TIMEOUT, self._idle_timeout)):
                await writer.start_tls(context)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self._tls.refuse(handshake_reason(exc), address, f"TLS handshake failed: {exc}")
            writer.transport.abort()
            raise _Refused from None
        try:
            return self._tls.check(writer.get_extra_info("ssl_object"), CLIENT_AUTH)
        except PeerRefused as exc:
            if exc.reason == refusals.NO_CERTIFICATE:
                return None  # may still ask for the CA bundle
            self._tls.refuse(exc.reason, address, str(exc))
            raise _Refused from None

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: PeerAgent | None
    ) -> None:
        decoder = FrameDecoder()
        address = writer.get_extra_info("peername")
        checked = self._tls.identity.generation
        while True:
            async with asyncio.timeout(self._idle_timeout):
                data = await reader.read(READ_CHUNK)
            if not data:
                return
            if peer is not None and not self._still_valid(peer, checked):
                checked = self._tls.identity.generation
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
        """Whether a check made under identity generation `checked` still holds: the bundle,
        the revocations and this agent's own chain are unchanged, and no certificate of
        the peer's chain has expired since (a kept connection must not outlive either)."""
        expires = min(c.not_valid_after_utc for c in peer.chain)
        return self._tls.identity.generation == checked and self._tls.now() <= expires

    def _answer(self, message: Message, peer: PeerAgent | None, address: object) -> bytes:
        """The reply to one request from `peer` (None: no certificate, "ca-bundle" only)."""
        if message["t"] == CA_BUNDLE:
            return encode(self._tls.identity.ca_bundle_answer())
        if peer is None:
            return encode(error(NO_CERTIFICATE_ERROR))
        return self._reply(message, peer, address)

    def _reply(self, message: Message, peer: PeerAgent, address: object) -> bytes:
        """The reply frame to one request, after applying what the request brought."""
        catalog = self._catalog
        served = Served(catalog.state, catalog.datacenter, snapshots(self._replicas))
        frame, effects = respond(message, served)
        if effects.records:
            owned, foreign = absorb.split_owned(effects.records, peer.node)
            if foreign:
                self._tls.refuse(
                    refusals.FOREIGN_RECORD,
                    address,
                    f"agent {peer.node!r} pushed records it does not own: "
                    + ", ".join(sorted(r.node for r in foreign))[:200],
                )
                effects = dataclasses.replace(effects, records=tuple(owned))
        changed = apply_effects(
            catalog,
            self._replicas,
            effects,
            self_origin=self._self_origin,
            tls=self._tls,
            peer=address,
        )
        if changed:
            log.debug("agent RPC: a push brought %s", ", ".join(changed))
        return frame
