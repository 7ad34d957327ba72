"""Agent RPC client: drives the pure conversations of `catalog.sync_exchange` over mutual TLS.

An anti-entropy round, a hand-over of fresh LWW entries, a push of changed
records and a pull are each one conversation object; this module only connects, moves its frames and
applies the effects of each step before sending the next request. Every
connection is TLS 1.3 with this agent's certificate, and the server must
prove an agent identity of our mesh (`AgentTls.check`, server auth) before
a frame is sent; when the caller names the member it dials (`peer_name`,
as the Replicator always does), the certificate must name that very node,
so an enrolled agent answering on another member's address (a taken-over
IP, a spoofed Serf address) is refused as `wrong-agent`. Every step runs
under one deadline; any failure (refused, timed out, not verified, bad
reply) is a PeerError, and what was applied before it stays. A connection
that ended its conversation cleanly is kept for the next one with the same
peer (pool.py), so most rounds skip the handshake.

`fetch_ca_bundle` is the enrolment call: TLS without a client certificate
and without verifying the server (this agent has no bundle yet to verify
it with); the answer is sealed and public, and the caller verifies what it
unseals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from gossamer.agent.sync import refusals
from gossamer.agent.sync.peer_check import PeerRefused
from gossamer.agent.sync.peer_link import (
    Address,
    PeerError,
    Replicas,
    _close,
    apply_effects,
    snapshots,
)
from gossamer.agent.sync.pool import Connection
from gossamer.agent.sync.tls import AgentTls, enrolment_context
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.lww_sync import Entries
from gossamer.catalog.model import NodeRecord
from gossamer.catalog.sync_exchange import (
    Conversation,
    DigestExchange,
    ExchangeError,
    HandOver,
    PullExchange,
    RecordPush,
)
from gossamer.catalog.sync_protocol import Message, ProtocolError, encode
from gossamer.gossip.addresses import format_host_port
from gossamer.proxy.ca.verify import SERVER_AUTH

log = logging.getLogger("gossamer.replication")


async def _dial(addr: Address, tls: AgentTls | None) -> Connection:
    """A new TLS connection; with `tls`, the server verified as an agent of our mesh."""
    epoch = tls.identity.trust_epoch if tls is not None else 0
    context = enrolment_context() if tls is None else tls.client_context()
    if context is None:
        raise PeerError(f"{format_host_port(*addr)}: this agent has no certificate yet")
    reader, writer = await asyncio.open_connection(addr[0], addr[1], ssl=context)
    node = ""
    if tls is not None:
        try:
            node = tls.check(writer.get_extra_info("ssl_object"), SERVER_AUTH).node
        except PeerRefused:
            writer.transport.abort()
            raise
    return Connection(reader, writer, epoch, time.monotonic(), peer_node=node)


def _require_node(conn: Connection, addr: Address, peer_name: str | None, tls: AgentTls) -> None:
    """PeerRefused unless the verified peer is the member dialled (when one is named)."""
    if peer_name is not None and conn.peer_node != peer_name:
        message = f"dialled member {peer_name!r}, but agent {conn.peer_node!r} answered"
        tls.refuse(refusals.WRONG_AGENT, addr, message)
        raise PeerRefused(refusals.WRONG_AGENT, message)


@contextlib.asynccontextmanager
async def _connect(
    addr: Address, tls: AgentTls | None, timeout: float, peer_name: str | None = None
) -> AsyncIterator[Connection]:
    """A verified connection to `addr` (to member `peer_name` when named), pooled or new
    (`tls` None: the enrolment one, never pooled); every step under one deadline; errors
    become PeerError."""
    conn: Connection | None = None
    done = False
    try:
        async with asyncio.timeout(timeout):
            if tls is not None:
                conn = tls.pool.take(addr, tls.identity.trust_epoch, time.monotonic())
            if conn is None:
                conn = await _dial(addr, tls)
            if tls is not None:
                _require_node(conn, addr, peer_name, tls)
            yield conn
        done = True
    except TimeoutError:
        raise PeerError(f"{format_host_port(*addr)}: timed out after {timeout}s") from None
    except PeerRefused as exc:
        raise PeerError(
            f"{format_host_port(*addr)}: not a verified agent ({exc.reason}): {exc}"
        ) from exc
    except (OSError, ProtocolError, ExchangeError) as exc:
        raise PeerError(f"{format_host_port(*addr)}: {exc}") from exc
    finally:
        if conn is not None:
            if done and tls is not None:
                tls.pool.give_back(addr, conn, time.monotonic())
            else:
                await _close(conn.writer)


async def _converse(
    addr: Address,
    conversation: Conversation,
    catalog: LiveCatalog,
    *,
    self_origin: str,
    tls: AgentTls,
    timeout: float,
    replicas: Replicas,
    peer_name: str | None,
) -> int:
    """Run one conversation to its end; returns how many things changed here."""
    changed = 0
    async with _connect(addr, tls, timeout, peer_name) as conn:
        request: Message | None = conversation.first_request()
        while request is not None:
            step = conversation.receive(await conn.request(request))
            applied = apply_effects(
                catalog,
                replicas,
                step.effects,
                self_origin=self_origin,
                tls=tls,
                peer=addr,
                peer_node=conn.peer_node,
            )
            changed += len(applied)
            request = step.request
    return changed


async def exchange(
    addr: Address,
    catalog: LiveCatalog,
    *,
    self_origin: str,
    tls: AgentTls,
    timeout: float = 5.0,
    replicas: Replicas | None = None,
    peer_name: str | None = None,
) -> int:
    """One anti-entropy round with the peer at `addr`; returns how many things changed here.

    See `DigestExchange` for the round. Raises PeerError when it could not
    complete (what was applied before that stays applied).
    """
    reps: Replicas = replicas or {}
    conversation = DigestExchange(catalog.state, catalog.datacenter, snapshots(reps))
    return await _converse(
        addr,
        conversation,
        catalog,
        self_origin=self_origin,
        tls=tls,
        timeout=timeout,
        replicas=reps,
        peer_name=peer_name,
    )


async def hand_over(
    addr: Address,
    datacenter: str,
    name: str,
    entries: Entries,
    *,
    tls: AgentTls,
    timeout: float = 5.0,
    peer_name: str | None = None,
) -> None:
    """Push fresh entries of LWW map `name` to one peer, without waiting for a round."""
    conversation = HandOver(datacenter, name, entries)
    async with _connect(addr, tls, timeout, peer_name) as conn:
        conversation.receive(await conn.request(conversation.first_request()))


async def push_records(
    addr: Address,
    datacenter: str,
    records: list[NodeRecord],
    *,
    tls: AgentTls,
    timeout: float = 5.0,
    peer_name: str | None = None,
    tombstones: list[tuple[str, int]] | None = None,
    told: list[str] | None = None,
) -> int:
    """Push changed records (and removals, with a `told` hint) to one peer without waiting
    for a round (record_push.py); returns the size of the frame sent."""
    conversation = RecordPush(datacenter, records, tombstones, told)
    request = conversation.first_request()
    async with _connect(addr, tls, timeout, peer_name) as conn:
        conversation.receive(await conn.request(request))
    return len(encode(request))


async def pull(
    addr: Address,
    catalog: LiveCatalog,
    nodes: list[str],
    *,
    self_origin: str,
    tls: AgentTls,
    timeout: float = 5.0,
    peer_name: str | None = None,
) -> int:
    """Fetch the records of `nodes` from the peer at `addr`; returns how many changed here."""
    conversation = PullExchange(catalog.datacenter, nodes)
    return await _converse(
        addr,
        conversation,
        catalog,
        self_origin=self_origin,
        tls=tls,
        timeout=timeout,
        replicas={},
        peer_name=peer_name,
    )


async def fetch_ca_bundle(addr: Address, *, timeout: float = 5.0) -> Message:
    """Ask the peer at `addr` for its CA map entries (enrolment); PeerError if it cannot answer.

    The server is not verified and no certificate is shown: the reply is
    whatever `RpcIdentity.ca_bundle_answer` gives there (sealed, public),
    and the caller checks what it unseals before trusting any of it.
    """
    async with _connect(addr, None, timeout) as conn:
        reply = await conn.request({"t": "ca-bundle"})
    if reply.get("t") == "error":
        raise PeerError(f"{format_host_port(*addr)}: {str(reply.get('msg'))[:200]}")
    return reply
