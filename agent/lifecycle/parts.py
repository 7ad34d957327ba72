"""The agent's parts, opened in start order into one object whose fields are never None.

Start order puts every failure that a person must fix first, before the
agent reports ready: the data dir in use (DataDirError), a port taken
(ListenError: every socket is bound before serf starts), an unreadable
store (StoreError), serf unable to run or bind (SerfFatalError). Joining,
the last fault of that kind, is the root's first step after opening.

If a step fails (or the opening is cancelled by a signal), what opened
before it is closed again, newest first, and the error propagates.

Callbacks that point at a part made later are wired where both exist:
serf's restart hook reaches `joins`, and the member table is read through
`members`, each bound before serf can call back (its supervisor only runs
once `open_parts` awaits again); the intention store announces through
the replicator once it exists, and so does the CA store; this node's record versions go to serf's
tags once serf runs.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from aiohttp import web

from gossamer.agent.acl.tokens import MAP_NAME as ACL_MAP
from gossamer.agent.config import AgentConfig
from gossamer.agent.dns.frontend import DnsFrontend
from gossamer.agent.http.agent_figures import FIGURE_SOURCES_KEY, part_sources
from gossamer.agent.http.app import make_app
from gossamer.agent.http.front_site import FrontSite
from gossamer.agent.http.intention_access import IntentionsAccess, default_allow
from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.agent.identity.renewal_loop import RenewalLoop
from gossamer.agent.identity.rpc_identity import MeshRpcIdentity
from gossamer.agent.lifecycle.acl_wiring import dns_reader, enable_acls
from gossamer.agent.lifecycle.datadir import DataDir
from gossamer.agent.lifecycle.facade import AgentFacade
from gossamer.agent.lifecycle.https_listener import serve_https
from gossamer.agent.lifecycle.identity_wiring import (
    open_mesh_identity,
    peer_identities,
    renewal_loop,
    serf_alive,
    sign_own_records,
)
from gossamer.agent.lifecycle.joins import Joins
from gossamer.agent.lifecycle.listeners import Listeners, bind_listeners
from gossamer.agent.lifecycle.reload import Reloader, apply_config_registrations
from gossamer.agent.lifecycle.status import AgentStatus
from gossamer.agent.lifecycle.tasks import TaskSet
from gossamer.agent.lifecycle.version import VERSION
from gossamer.agent.lifecycle.version_tag import RecordVersionTag, StartupVersion
from gossamer.agent.local.config_registrations import ConfigRegistrations
from gossamer.agent.local.external_nodes import ExternalNodes
from gossamer.agent.local.node import LocalNode
from gossamer.agent.local.own_record import NodeIdentity
from gossamer.agent.replicated.acl_store import AclStore
from gossamer.agent.replicated.ca_store import CaStore
from gossamer.agent.replicated.config_entry_store import MAP_NAME as CONFIG_MAP
from gossamer.agent.replicated.config_entry_store import ConfigEntryStore
from gossamer.agent.replicated.intention_entries import MAP_NAME as INTENTIONS_MAP
from gossamer.agent.replicated.intention_store import IntentionStore
from gossamer.agent.sync.peer_link import Replicas
from gossamer.agent.sync.replicator import Replicator
from gossamer.agent.sync.server import PeerRpcServer
from gossamer.agent.sync.tls import AgentTls
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import Service
from gossamer.catalog.store import FILE_NAME as STORE_FILE
from gossamer.catalog.store import CatalogStore
from gossamer.gossip.member_watch import MemberWatch
from gossamer.gossip.process import SerfProcess
from gossamer.gossip.serf_launch import SerfSettings
from gossamer.gossip.tags import TAG_RECORD_VERSION, own_tags
from gossamer.proxy.ca.ca_entries import MAP_NAME as CA_MAP

log = logging.getLogger("gossamer.agent")

HTTP_SHUTDOWN_TIMEOUT = 3.0  # seconds in-flight requests get when the agent stops


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class RootHooks:
    """What the parts may ask of the root, which exists before any of them."""

    tasks: TaskSet
    load_config: Callable[[], AgentConfig]  # for reload
    fail: Callable[[str], None]  # a fault after start-up that ends the agent
    request_shutdown: Callable[[bool], None]  # leave?
    leave_on_stop: Callable[[], bool]  # serf leaves if the opening is cancelled by a signal


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


@dataclass(frozen=True)
class _State:
    """This node's durable state, opened before serf (its record version is a serf tag)."""

    data_dir: DataDir
    node_id: str
    listeners: Listeners
    store: CatalogStore
    catalog: LiveCatalog
    local: LocalNode
    registrations: ConfigRegistrations
    intentions: IntentionStore
    ca: CaStore
    acl: AclStore
    config_entries: ConfigEntryStore
    version: StartupVersion

    def replicas(self) -> Replicas:
        """The replicated LWW maps, by name, for the replicator and the RPC server."""
        return {
            INTENTIONS_MAP: self.intentions, CA_MAP: self.ca, ACL_MAP: self.acl,
            CONFIG_MAP: self.config_entries,
        }  # fmt: skip


async def open_parts(status: AgentStatus, hooks: RootHooks) -> Parts:
    """Open everything in start order; on failure close what opened, newest first."""
    async with AsyncExitStack() as undo:
        state = await _open_state(status.config, undo)
        gossip = await _open_gossip(state, status, hooks, undo)
        parts = await _open_frontends(state, gossip, status, hooks, undo)
        undo.pop_all()
    return parts


async def _open_state(c: AgentConfig, undo: AsyncExitStack) -> _State:
    data_dir = _open_data_dir(c)
    undo.callback(data_dir.close)
    node_id = data_dir.node_id()
    log.info("node %s (id %s), data dir %s", c.node, node_id, data_dir.path)
    listeners = bind_listeners(c)
    undo.callback(listeners.close)
    store = CatalogStore.open(data_dir.path / STORE_FILE)
    undo.callback(store.close)
    catalog = LiveCatalog(c.datacenter, store, wall_ms=wall_ms)
    version = StartupVersion()
    local = _open_local_node(c, node_id, store, catalog, version)
    undo.push_async_callback(local.stop)
    registrations = ConfigRegistrations(local, before=local.restore())
    apply_config_registrations(registrations, c)
    intentions = IntentionStore(store, node=c.node, wall_ms=wall_ms, notify=catalog.touch)
    ca = CaStore(store, node=c.node, wall_ms=wall_ms, notify=catalog.touch, clock=intentions.clock)
    acl = AclStore(
        store, node=c.node, wall_ms=wall_ms, notify=catalog.touch, clock=intentions.clock
    )
    entries = ConfigEntryStore(
        store, node=c.node, wall_ms=wall_ms, notify=catalog.touch, clock=intentions.clock
    )
    return _State(
        data_dir, node_id, listeners, store, catalog, local, registrations, intentions, ca,
        acl, entries, version,
    )  # fmt: skip


def _open_data_dir(c: AgentConfig) -> DataDir:
    if c.data_dir is not None:
        data_dir = DataDir(Path(c.data_dir))
    else:  # dev mode: a scratch dir, removed when the agent stops
        data_dir = DataDir(Path(tempfile.mkdtemp(prefix="gossamer-dev-")), scratch=True)
    try:
        data_dir.open()
    except BaseException:
        data_dir.close()
        raise
    return data_dir


def _open_local_node(
    c: AgentConfig, node_id: str, store: CatalogStore, catalog: LiveCatalog, v: StartupVersion
) -> LocalNode:
    """This node's own record, opened; `restore` brings back what was registered."""
    agent_service = Service(id="consul", name="consul", port=c.rpc_port)
    identity = NodeIdentity(
        node=c.node, node_id=node_id, datacenter=c.datacenter,
        address=c.advertise, meta=dict(c.node_meta), builtin_services=(agent_service,),
    )  # fmt: skip
    return LocalNode(
        identity, store, catalog, wall_ms=wall_ms, on_version=v.remember,
        allow_script_checks=c.enable_script_checks,
        allow_local_script_checks=c.enable_local_script_checks,
    )  # fmt: skip


@dataclass(frozen=True)
class _Gossip:
    """serf and what follows it: joins, the member table, replication."""

    serf: SerfProcess
    joins: Joins
    replicator: Replicator
    members: MemberWatch
    identity: MeshIdentity
    identity_loop: RenewalLoop


async def _open_gossip(
    s: _State, status: AgentStatus, hooks: RootHooks, undo: AsyncExitStack
) -> _Gossip:
    c = status.config
    serf = SerfProcess(
        _serf_settings(c, s.data_dir, s.node_id, s.version.latest),
        on_fatal=lambda exc: hooks.fail(str(exc)),
        on_restart=lambda: joins.after_serf_restart(),  # bound below, before serf starts
    )
    joins = Joins(serf, status, hooks.tasks, lambda: members.table.values())
    await serf.start()
    undo.push_async_callback(lambda: serf.stop(leave=hooks.leave_on_stop()))
    tag = RecordVersionTag(serf.client, hooks.tasks.spawn, latest=s.version.latest)
    s.local.on_version = tag.changed
    identity = open_mesh_identity(
        c, node_id=s.node_id, data_dir=s.data_dir.path, ca=s.ca, catalog=s.catalog,
        local=s.local, serf=serf, wall_ms=wall_ms,
    )  # fmt: skip
    tls = AgentTls(MeshRpcIdentity(identity), alive=lambda name: serf_alive(members, name))
    replicator = Replicator(
        s.catalog, self_origin=c.node, peers=lambda: list(members.table.values()),
        rng=random.Random(), replicas=s.replicas(), tls=tls,
    )  # fmt: skip
    s.intentions.announce = partial(replicator.spread, INTENTIONS_MAP)
    s.ca.announce = partial(replicator.spread, CA_MAP)
    s.acl.announce = partial(replicator.spread, ACL_MAP)
    s.config_entries.announce = partial(replicator.spread, CONFIG_MAP)
    s.catalog.announce = replicator.records.announce
    undo.callback(replicator.stop)
    # No await since serf.start(): `members` is bound before serf could call back.
    members = MemberWatch(
        serf.client, on_event=replicator.on_member_event, on_resync=replicator.reconcile
    )
    await members.resync()
    identity_loop = renewal_loop(c, identity, members, tls, wall_ms)
    return _Gossip(serf, joins, replicator, members, identity, identity_loop)


async def _open_frontends(
    s: _State, g: _Gossip, status: AgentStatus, hooks: RootHooks, undo: AsyncExitStack
) -> Parts:
    """HTTP, agent RPC and DNS start answering on the sockets bound at the start."""
    c = status.config
    reloader = Reloader(status, hooks.load_config, s.registrations, g.joins)
    facade = AgentFacade(
        status, node_id=s.node_id, data_dir=str(s.data_dir.path), serf=g.serf, local=s.local,
        catalog=s.catalog, identity=g.identity, rpc_refusals=g.replicator.tls.refusals.counts,
        peer_identities=partial(peer_identities, g.identity, g.members, g.replicator.tls),
        reload=reloader.reload, request_shutdown=hooks.request_shutdown,
        record_pushes=g.replicator.records.counts,
    )  # fmt: skip
    external = ExternalNodes(
        s.catalog, owner=c.node, wall_ms=wall_ms, is_member=partial(_is_cluster_member, g.members)
    )
    sign_own_records(g.identity, s.catalog, s.local, external)
    intentions = IntentionsAccess(s.intentions, lambda: default_allow(status.config))
    app = make_app(facade, s.catalog, external, intentions, g.identity, s.config_entries)
    enable_acls(app, s.acl, status, str(s.data_dir.path), g.members)
    http = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT,
    )  # fmt: skip
    await http.setup()
    undo.push_async_callback(http.cleanup)
    await FrontSite(http, s.listeners.http).start()  # hot reads first, then aiohttp
    await serve_https(http, c)
    peer_rpc = PeerRpcServer(
        s.catalog, self_origin=c.node, replicas=s.replicas(), tls=g.replicator.tls
    )
    await peer_rpc.start(s.listeners.rpc)
    undo.push_async_callback(peer_rpc.wait_closed)
    undo.callback(peer_rpc.close)
    dns = DnsFrontend(
        c, s.catalog, node=c.node, coordinate=g.serf.client.get_coordinate,
        may_read=partial(dns_reader, s.acl, status),
    )  # fmt: skip
    s.acl.on_change(dns.acl_changed)
    await dns.start(s.listeners.dns_udp, s.listeners.dns_tcp)
    http.app[FIGURE_SOURCES_KEY].extend(part_sources(g.replicator, dns.responder))
    return Parts(
        data_dir=s.data_dir, node_id=s.node_id, store=s.store, catalog=s.catalog,
        local=s.local, intentions=s.intentions, ca=s.ca, acl=s.acl,
        config_entries=s.config_entries, serf=g.serf, joins=g.joins,
        replicator=g.replicator, members=g.members, identity=g.identity,
        identity_loop=g.identity_loop, reloader=reloader, http=http, peer_rpc=peer_rpc, dns=dns,
    )  # fmt: skip


def _is_cluster_member(members: MemberWatch, name: str) -> bool:
    """A gossip member owns its record: the catalog API may not write it."""
    member = members.table.get(name)
    return member is not None and member.status != "left"


def _serf_settings(c: AgentConfig, data_dir: DataDir, node_id: str, version: int) -> SerfSettings:
    """serf's arguments; `version` is the record's, so joining peers know what to pull."""
    tags = own_tags(datacenter=c.datacenter, node_id=node_id, rpc_port=c.rpc_port, version=VERSION)
    return SerfSettings(
        node=c.node,
        bind=c.bind,
        port=c.serf_port,
        advertise=c.advertise,
        state_dir=data_dir.serf_dir,
        tags=tags | {TAG_RECORD_VERSION: str(version)},
        encrypt=c.encrypt,
        log_level=c.log_level,
        rejoin=c.rejoin_after_leave,
    )
