"""The suite's one replication test double, in two forms that run the same protocol code.

- `SyncPeer`: an agent's sync side for real: a LiveCatalog on its own
  SQLite file (and, if asked, an IntentionStore beside it, replicated),
  served by the real PeerRpcServer on a loopback port over mutual TLS
  (its agent certificate from the test mesh of tests/harness/identity.py,
  or the `credentials` given, trusting the `mesh` given),
  with a Member for it and a Replicator over it. Records written into its
  catalog are signed as their owners would sign them (`owner_signer`), so
  relays carry valid signatures unless a test says otherwise
  (`signed=False`). `SyncPeers` makes them
  under one mesh and closes them; `SyncPeers.tls_for(node)` is the TLS of
  any other agent of that mesh (a test speaking as it).
- `MemoryPeer`: the same conversations without sockets: a CatalogState
  that answers through `sync_answer.answer` and applies effects with the
  `absorb` rules, for protocol tests that run hundreds of exchanges.
- `talk`: send raw requests to an agent RPC port the way a peer does (for
  hostile or old peers whose messages no conversation object would build),
  over TLS as the agent `tls` names; `open_tls` is its connection.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from gossamer.agent.replicated.intention_entries import MAP_NAME
from gossamer.agent.replicated.intention_store import IntentionStore
from gossamer.agent.sync.peer_link import Replicas
from gossamer.agent.sync.relay_check import nobody_alive
from gossamer.agent.sync.replicator import Replicator
from gossamer.agent.sync.server import PeerRpcServer
from gossamer.agent.sync.tls import AgentTls
from gossamer.catalog import absorb
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.merge import CatalogState
from gossamer.catalog.model import NodeRecord, Service
from gossamer.catalog.store import CatalogStore
from gossamer.catalog.sync_answer import Served, answer
from gossamer.catalog.sync_exchange import Conversation
from gossamer.catalog.sync_protocol import Effects, FrameDecoder, Message, encode
from gossamer.gossip.members import Member
from gossamer.proxy.ca.record_signature import sign_record
from tests.harness.identity import Credentials, Mesh, agent_tls

DC = "dc1"


def node_record(
    node: str, version: int, *services: str, dc: str = DC, address: str = "127.0.0.1"
) -> NodeRecord:
    """A node's own record (origin = the node) with one port-80 service per name."""
    return NodeRecord(
        node=node, node_id=f"id-{node}", datacenter=dc, address=address,
        version=version, origin=node,
        services=tuple(Service(id=s, name=s, port=80) for s in services),
    )  # fmt: skip


def owner_signer(mesh: Mesh) -> Callable[[NodeRecord], NodeRecord]:
    """Signs each record as its owner (`origin`), an agent of `mesh`, would."""
    owners: dict[str, Credentials] = {}

    def sign(record: NodeRecord) -> NodeRecord:
        owner = owners.get(record.origin) or owners.setdefault(
            record.origin, mesh.enrol(record.origin)
        )
        assert isinstance(owner.key, ec.EllipticCurvePrivateKey)
        chain = [c.public_bytes(Encoding.DER) for c in (owner.certificate, owner.intermediate)]
        return sign_record(record, owner.key, chain)

    return sign


# -- over real sockets ------------------------------------------------------------------


class SyncPeer:
    """A LiveCatalog (and optionally replicated intentions) served on a real loopback port."""

    def __init__(
        self,
        name: str,
        root: Path,
        *,
        mesh: Mesh,
        credentials: Credentials | None = None,
        intentions: bool = False,
        wall_ms: int = 1_000,
        idle_timeout: float = 30.0,
        max_connections: int = 256,
        signed: bool = True,
        alive: Callable[[str], bool] = nobody_alive,
    ) -> None:
        self.name = name
        db = CatalogStore.open(root / f"{name}.db")
        self.catalog = LiveCatalog(DC, db, wall_ms=lambda: wall_ms)
        if signed:
            self.catalog.sign_own = owner_signer(mesh)
        self.replicas: Replicas = {}
        if intentions:
            self.store = IntentionStore(
                db, node=name, wall_ms=lambda: wall_ms, notify=self.catalog.touch
            )
            self.replicas = {MAP_NAME: self.store}
        self.tls = agent_tls(mesh, credentials or mesh.enrol(name), alive=alive)
        self.server = PeerRpcServer(
            self.catalog,
            self_origin=name,
            idle_timeout=idle_timeout,
            max_connections=max_connections,
            replicas=self.replicas,
            tls=self.tls,
        )
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]

    @property
    def addr(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def start(self) -> SyncPeer:
        await self.server.start(self.sock)
        return self

    def member(self, status: str = "alive", **tags: str) -> Member:
        """How serf would show this peer: its datacenter and RPC port in the tags."""
        all_tags = {"dc": DC, "port": str(self.port), **tags}
        return Member(name=self.name, addr="127.0.0.1", port=7946, tags=all_tags, status=status)

    def replicator(
        self,
        peers: Callable[[], list[Member]],
        *,
        interval: float = 2.0,
        timeout: float = 2.0,
        seed: int | str = 7,
        push: bool = False,
    ) -> Replicator:
        """`push`: the catalog's changes are pushed to peers at once (as in an agent)."""
        replicator = Replicator(
            self.catalog, self_origin=self.name, peers=peers, rng=random.Random(seed),
            interval=interval, timeout=timeout, replicas=self.replicas, tls=self.tls,
        )  # fmt: skip
        if push:
            replicator.records.listen(self.catalog)
            self.server.heard = replicator.records.heard
        return replicator

    def has(self, node: str, version: int) -> bool:
        held = self.catalog.record(node)
        return held is not None and held.version == version

    def pairs(self) -> dict[tuple[str, str], str | None]:
        """The intentions held here, as {(source, destination): action}."""
        return {i.pair: i.action for i in self.store.current}


class SyncPeers:
    """Makes SyncPeers under one directory; closes every server and socket on exit."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._made: list[SyncPeer] = []
        self.mesh = Mesh()

    def __call__(self, name: str, **options: object) -> SyncPeer:
        options.setdefault("mesh", self.mesh)
        peer = SyncPeer(name, self._root, **options)  # type: ignore[arg-type]
        self._made.append(peer)
        return peer

    def tls_for(self, node: str) -> AgentTls:
        """The TLS of agent `node` of this mesh, for a test that speaks as it."""
        return agent_tls(self.mesh, self.mesh.enrol(node))

    async def __aenter__(self) -> SyncPeers:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for peer in self._made:
            peer.tls.pool.close_all()
            peer.server.close()
            peer.sock.close()
        for peer in self._made:
            await asyncio.wait_for(peer.server.wait_closed(), 5)


async def open_tls(
    addr: tuple[str, int], tls: AgentTls
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TLS connection to an agent RPC port, presenting the certificate of `tls`."""
    return await asyncio.open_connection(*addr, ssl=tls.client_context())


async def talk(addr: tuple[str, int], *messages: Message, tls: AgentTls) -> list[Message]:
    """Send requests on one connection (as the agent of `tls`); the replies, in order."""
    reader, writer = await open_tls(addr, tls)
    decoder, replies = FrameDecoder(), list[Message]()
    try:
        for sent, message in enumerate(messages, 1):
            writer.write(encode(message))
            while len(replies) < sent:
                data = await asyncio.wait_for(reader.read(65536), 5)
                assert data, "server closed the connection"
                replies += decoder.feed(data)
    finally:
        writer.close()
    return replies


# -- in memory --------------------------------------------------------------------------


class MemoryPeer:
    """A catalog that asks and answers through the pure protocol; keeps a transcript."""

    def __init__(self, name: str, state: CatalogState | None = None) -> None:
        self.name = name
        self.state = state if state is not None else CatalogState()
        self.transcript: list[tuple[Message, Message]] = []  # (request, reply) it answered

    def serve(self, request: Message) -> Message:
        """Answer one request as an agent RPC server would, applying what it brought."""
        result = answer(request, Served(self.state, DC))
        self.transcript.append((request, result.reply))
        self.apply(result.effects)
        return result.reply

    def run(self, conversation: Conversation, server: MemoryPeer) -> list[str]:
        """Drive a conversation against `server` to its end; the nodes that changed here."""
        changed: list[str] = []
        request: Message | None = conversation.first_request()
        while request is not None:
            step = conversation.receive(server.serve(request))
            changed += self.apply(step.effects)
            request = step.request
        return changed

    def apply(self, effects: Effects) -> list[str]:
        self.state, changed = absorb.absorb(self.state, effects.records, self_origin=self.name)
        self.state, buried = absorb.bury(
            self.state, DC, effects.tombstones, self_origin=self.name, at_ms=1
        )
        return [node for _, node in changed] + buried
