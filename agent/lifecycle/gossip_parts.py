"""serf and what follows it: joins, the member table, replication, the mesh identity.

Callbacks that point at a part made later are bound before serf can call
back: serf's restart hook reaches `joins`, and the member table is read
through `members` (serf's supervisor only runs once the opening awaits
again). The replicated maps announce through the replicator once it exists;
this node's record versions go to serf's tags once serf runs.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial

from gossamer.agent.acl.tokens import MAP_NAME as ACL_MAP
from gossamer.agent.config import AgentConfig
from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.agent.identity.renewal_loop import RenewalLoop
from gossamer.agent.identity.rpc_identity import MeshRpcIdentity
from gossamer.agent.lifecycle.datadir import DataDir
from gossamer.agent.lifecycle.identity_wiring import open_mesh_identity, renewal_loop, serf_alive
from gossamer.agent.lifecycle.joins import Joins
from gossamer.agent.lifecycle.known_peers import FILE as KNOWN_PEERS
from gossamer.agent.lifecycle.known_peers import KnownPeers
from gossamer.agent.lifecycle.node_state import NodeState
from gossamer.agent.lifecycle.root_hooks import RootHooks, wall_ms
from gossamer.agent.lifecycle.status import AgentStatus
from gossamer.agent.lifecycle.version import VERSION
from gossamer.agent.lifecycle.version_tag import RecordVersionTag
from gossamer.agent.replicated.config_entry_store import MAP_NAME as CONFIG_MAP
from gossamer.agent.replicated.intention_entries import MAP_NAME as INTENTIONS_MAP
from gossamer.agent.sync.first_sync import FirstSync
from gossamer.agent.sync.replicator import Replicator
from gossamer.agent.sync.tls import AgentTls
from gossamer.gossip.member_watch import MemberWatch
from gossamer.gossip.members import Member
from gossamer.gossip.process import SerfProcess
from gossamer.gossip.serf_launch import SerfSettings
from gossamer.gossip.tags import TAG_RECORD_VERSION, own_tags
from gossamer.proxy.ca.ca_entries import MAP_NAME as CA_MAP


@dataclass(frozen=True)
class GossipParts:
    """serf and what follows it: joins, the member table, replication."""

    serf: SerfProcess
    joins: Joins
    replicator: Replicator
    members: MemberWatch
    identity: MeshIdentity
    identity_loop: RenewalLoop


async def open_gossip(
    s: NodeState, status: AgentStatus, hooks: RootHooks, undo: AsyncExitStack
) -> GossipParts:
    c = status.config
    serf = SerfProcess(
        serf_settings(c, s.data_dir, s.node_id, s.version.latest),
        on_fatal=lambda exc: hooks.fail(str(exc)),
        on_restart=lambda: joins.after_serf_restart(),  # bound below, before serf starts
    )
    known = KnownPeers(s.data_dir.serf_dir / KNOWN_PEERS)
    joins = Joins(serf, status, hooks.tasks, lambda: members.table.values(), known)
    await serf.start()
    undo.push_async_callback(lambda: serf.stop(leave=hooks.leave_on_stop()))
    tag = RecordVersionTag(serf.client, hooks.tasks.spawn, latest=s.version.latest)
    s.local.on_version = tag.changed
    identity = open_mesh_identity(
        c, node_id=s.node_id, data_dir=s.data_dir.path, ca=s.ca, catalog=s.catalog,
        local=s.local, serf=serf, wall_ms=wall_ms,
    )  # fmt: skip
    tls = AgentTls(MeshRpcIdentity(identity), alive=lambda name: serf_alive(members, name))
    # peers to catch up with: configured, or known from an earlier life (first_sync.py)
    others = any(record.origin != c.node for record in s.catalog.records())
    replicator = Replicator(
        s.catalog, self_origin=c.node, peers=lambda: list(members.table.values()),
        rng=random.Random(), replicas=s.replicas(), tls=tls,
        first_sync=FirstSync(expected=bool(c.join or c.retry_join) or others),
    )  # fmt: skip
    s.intentions.announce = partial(replicator.spread, INTENTIONS_MAP)
    s.ca.announce = partial(replicator.spread, CA_MAP)
    s.acl.announce = partial(replicator.spread, ACL_MAP)
    s.config_entries.announce = partial(replicator.spread, CONFIG_MAP)
    if os.environ.get("GOSSAMER_RECORD_PUSH") != "off":  # off: the tag and rounds alone (benches)
        replicator.records.listen(s.catalog)
    undo.callback(replicator.stop)

    # No await since serf.start(): `members` is bound before serf could call back.
    def resynced(found: Iterable[Member]) -> None:
        found = list(found)
        replicator.reconcile(found)
        joins.remember(found)  # for a start after a crash (known_peers.py)

    members = MemberWatch(serf.client, on_event=replicator.on_member_event, on_resync=resynced)
    await members.resync()
    identity_loop = renewal_loop(c, identity, members, tls, wall_ms)
    return GossipParts(serf, joins, replicator, members, identity, identity_loop)


def serf_settings(c: AgentConfig, data_dir: DataDir, node_id: str, version: int) -> SerfSettings:
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
