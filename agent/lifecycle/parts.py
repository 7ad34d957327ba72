"""The agent's parts, opened in start order into one object whose fields are never None.

Start order puts every failure that a person must fix first, before the
agent reports ready: the data dir in use (DataDirError), a port taken
(ListenError: every socket is bound before serf starts), an unreadable
store (StoreError), serf unable to run or bind (SerfFatalError). Joining,
the last fault of that kind, is the root's first step after opening.

If a step fails (or the opening is cancelled by a signal), what opened
before it is closed again, newest first, and the error propagates.

Three steps, one module each: this node's durable state (`node_state.py`),
serf and what follows it (`gossip_parts.py`), then here the frontends: HTTP
and HTTPS, agent RPC and DNS answer on the sockets bound in the first step.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial

from aiohttp import web

from gossamer.agent.dns.frontend import DnsFrontend
from gossamer.agent.http.acl_access import AclAccess
from gossamer.agent.http.agent_figures import FIGURE_SOURCES_KEY, part_sources
from gossamer.agent.http.app import FIRST_SYNC_KEY, make_app
from gossamer.agent.http.intention_access import (
    IntentionsAccess,
    default_allow,
    wake_on_new_default,
)
from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.agent.identity.renewal_loop import RenewalLoop
from gossamer.agent.lifecycle.acl_wiring import dns_reader, enable_acls
from gossamer.agent.lifecycle.datadir import DataDir
from gossamer.agent.lifecycle.facade import AgentFacade
from gossamer.agent.lifecycle.gossip_parts import GossipParts, open_gossip
from gossamer.agent.lifecycle.https_listener import serve_api
from gossamer.agent.lifecycle.identity_wiring import peer_identities, sign_own_records
from gossamer.agent.lifecycle.joins import Joins
from gossamer.agent.lifecycle.listeners import BACKLOG
from gossamer.agent.lifecycle.node_state import NodeState, open_node_state
from gossamer.agent.lifecycle.reload import Reloader
from gossamer.agent.lifecycle.root_hooks import RootHooks, wall_ms
from gossamer.agent.lifecycle.status import AgentStatus
from gossamer.agent.local.external_nodes import ExternalNodes
from gossamer.agent.local.node import LocalNode
from gossamer.agent.replicated.acl_store import AclStore
from gossamer.agent.replicated.ca_store import CaStore
from gossamer.agent.replicated.config_entry_store import ConfigEntryStore
from gossamer.agent.replicated.intention_store import IntentionStore
from gossamer.agent.sync.replicator import Replicator
from gossamer.agent.sync.server import PeerRpcServer
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.store import CatalogStore
from gossamer.gossip.member_watch import MemberWatch
from gossamer.gossip.process import SerfProcess

__all__ = ["Parts", "RootHooks", "open_parts"]

HTTP_SHUTDOWN_TIMEOUT = 3.0  # seconds in-flight requests get when the agent stops


@dataclass(frozen=True)
class Parts:
    """A running agent, in start order. The root starts their loops, joins, stops them."""

    data_dir: DataDir
    node_id: str
    store: CatalogStore
    catalog: LiveCatalog
    local: LocalNode
    intentions: IntentionStore
    ca: CaStore
    acl: AclStore
    config_entries: ConfigEntryStore
    serf: SerfProcess
    joins: Joins
    replicator: Replicator
    members: MemberWatch
    identity: MeshIdentity
    identity_loop: RenewalLoop
    reloader: Reloader
    http: web.AppRunner
    peer_rpc: PeerRpcServer
    dns: DnsFrontend


async def open_parts(status: AgentStatus, hooks: RootHooks) -> Parts:
    """Open everything in start order; on failure close what opened, newest first."""
    async with AsyncExitStack() as undo:
        state = await open_node_state(status.config, undo)
        gossip = await open_gossip(state, status, hooks, undo)
        parts = await _open_frontends(state, gossip, status, hooks, undo)
        undo.pop_all()
    return parts


async def _open_frontends(
    s: NodeState, g: GossipParts, status: AgentStatus, hooks: RootHooks, undo: AsyncExitStack
) -> Parts:
    """HTTP, agent RPC and DNS start answering on the sockets bound at the start."""
    c = status.config
    reloader = Reloader(status, hooks.load_config, s.registrations, g.joins,
                        partial(wake_on_new_default, s.catalog.touch))  # fmt: skip
    facade = AgentFacade(
        status, node_id=s.node_id, data_dir=str(s.data_dir.path), serf=g.serf, local=s.local,
        catalog=s.catalog, identity=g.identity, rpc_refusals=g.replicator.tls.refusals.counts,
        peer_identities=partial(peer_identities, g.identity, g.members, g.replicator.tls),
        reload=reloader.reload, request_shutdown=hooks.request_shutdown,
        record_pushes=g.replicator.records.counts, member_table=lambda: g.members.table,
    )  # fmt: skip
    external = ExternalNodes(
        s.catalog, owner=c.node, wall_ms=wall_ms, is_member=partial(_is_cluster_member, g.members)
    )
    sign_own_records(g.identity, s.catalog, s.local, external)
    intentions = IntentionsAccess(s.intentions, lambda: default_allow(status.config))
    app = make_app(facade, s.catalog, external, intentions, g.identity, s.config_entries)
    app[FIRST_SYNC_KEY] = g.replicator.first_sync
    acl = enable_acls(app, s.acl, status, str(s.data_dir.path), g.members, g.serf)
    http = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT,
    )  # fmt: skip
    await http.setup()
    undo.push_async_callback(http.cleanup)
    await serve_api(http, c, s.listeners.api, (g.identity, s.node_id, s.data_dir.path))
    peer_rpc = PeerRpcServer(
        s.catalog, self_origin=c.node, replicas=s.replicas(), tls=g.replicator.tls
    )
    peer_rpc.heard = g.replicator.records.heard
    await peer_rpc.start(s.listeners.rpc)
    undo.push_async_callback(peer_rpc.wait_closed)
    undo.callback(peer_rpc.close)
    dns = await _open_dns(s, g, status, acl)
    http.app[FIGURE_SOURCES_KEY].extend(part_sources(g.replicator, dns.responder))
    return Parts(
        data_dir=s.data_dir, node_id=s.node_id, store=s.store, catalog=s.catalog,
        local=s.local, intentions=s.intentions, ca=s.ca, acl=s.acl,
        config_entries=s.config_entries, serf=g.serf, joins=g.joins,
        replicator=g.replicator, members=g.members, identity=g.identity,
        identity_loop=g.identity_loop, reloader=reloader, http=http, peer_rpc=peer_rpc, dns=dns,
    )  # fmt: skip


async def _open_dns(
    s: NodeState, g: GossipParts, status: AgentStatus, acl: AclAccess | None
) -> DnsFrontend:
    """DNS answers what the ACL default token may read, rebuilt when tokens change."""
    c = status.config
    dns = DnsFrontend(
        c, s.catalog, node=c.node, coordinate=g.serf.client.get_coordinate,
        may_read=partial(dns_reader, s.acl, status, acl),
    )  # fmt: skip
    s.acl.on_change(dns.acl_changed)
    if acl is not None:  # the default token set through the API changes what DNS shows
        acl.token_listeners.append(dns.acl_changed)
    await dns.start(s.listeners.dns_udp, s.listeners.dns_tcp, BACKLOG)
    return dns


def _is_cluster_member(members: MemberWatch, name: str) -> bool:
    """A gossip member owns its record: the catalog API may not write it."""
    member = members.table.get(name)
    return member is not None and member.status != "left"
