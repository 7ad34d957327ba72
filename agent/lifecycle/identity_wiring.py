"""How the composition root wires this agent's mesh identity to the parts around it.

The identity (agent/identity/) reads the CA map, the local registrations,
serf's keyring and the member table; agent RPC reads the identity. These
adapters keep that wiring out of parts.py, which only orders the parts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from pathlib import Path

from gossamer.agent.config import AgentConfig
from gossamer.agent.identity.assemble import IdentitySettings, open_identity
from gossamer.agent.identity.enrolment import Enrolment
from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.agent.identity.renewal_loop import RenewalLoop
from gossamer.agent.local.node import LocalNode
from gossamer.agent.replicated.ca_store import CaStore
from gossamer.agent.sync.peer_link import Address
from gossamer.agent.sync.tls import AgentTls
from gossamer.catalog.live import LiveCatalog
from gossamer.gossip.member_watch import MemberWatch
from gossamer.gossip.process import SerfProcess
from gossamer.gossip.tags import rpc_port


def open_mesh_identity(
    c: AgentConfig,
    *,
    node_id: str,
    data_dir: Path,
    ca: CaStore,
    catalog: LiveCatalog,
    local: LocalNode,
    serf: SerfProcess,
    wall_ms: Callable[[], int],
) -> MeshIdentity:
    """This agent's identity material, authority and leaves (its loop starts with the others)."""
    settings = IdentitySettings(
        node=c.node, node_id=node_id, datacenter=c.datacenter, join_token=c.join_token,
        encrypt=c.encrypt, configured_root=c.connect.ca_config,
        test_leaf_cert_ttl=c.test_leaf_cert_ttl,
    )  # fmt: skip
    return open_identity(
        data_dir, ca, settings, notify=catalog.touch,
        registered=partial(registered_here, local), list_keys=lambda: serf.client.list_keys(),
        wall_ms=wall_ms, rng=random.Random(),
    )  # fmt: skip


def renewal_loop(
    c: AgentConfig,
    identity: MeshIdentity,
    members: MemberWatch,
    tls: AgentTls,
    wall_ms: Callable[[], int],
) -> RenewalLoop:
    """The identity's loop, pulling peers' bundles from the member table's agents."""
    enrolment = Enrolment(
        identity.ca, identity.secrets, partial(rpc_peers, members, c.node), random.Random(),
        wall_ms,
    )  # fmt: skip
    return RenewalLoop(
        identity, enrolment=enrolment, has_join_targets=bool(c.join or c.retry_join),
        refusals=lambda: tls.refusals.total,
    )  # fmt: skip


def rpc_peers(members: MemberWatch, own: str) -> list[Address]:
    """The agent-RPC addresses of the other alive members (for enrolment pulls)."""
    out = []
    for m in members.table.values():
        port = rpc_port(m)
        if m.name != own and m.status == "alive" and port is not None:
            out.append((m.addr, port))
    return out


def registered_here(local: LocalNode, service: str) -> bool:
    """Whether a service of that name (or id) is registered on this agent."""
    return any(s.name == service or s.id == service for s in local.services().values())
