"""How the composition root wires this agent's mesh identity to the parts around it.

The identity (agent/identity/) reads the CA map, the local registrations,
serf's keyring and the member table; agent RPC reads the identity. These
adapters keep that wiring out of parts.py, which only orders the parts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from gossamer.agent.config import AgentConfig
from gossamer.agent.identity.assemble import IdentitySettings, open_identity
from gossamer.agent.identity.enrolment import Enrolment
from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.agent.identity.record_signer import RecordSigner
from gossamer.agent.identity.renewal_loop import RenewalLoop
from gossamer.agent.local.external_nodes import ExternalNodes
from gossamer.agent.local.node import LocalNode
from gossamer.agent.replicated.ca_store import CaStore
from gossamer.agent.sync.peer_link import Address
from gossamer.agent.sync.tls import AgentTls
from gossamer.catalog.live import LiveCatalog
from gossamer.gossip.member_watch import MemberWatch
from gossamer.gossip.process import SerfProcess
from gossamer.gossip.tags import TAG_NODE_ID, rpc_port
from gossamer.proxy.ca.agent_standing import agent_standing


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


def sign_own_records(
    identity: MeshIdentity, catalog: LiveCatalog, local: LocalNode, external: ExternalNodes
) -> RecordSigner:
    """Sign this agent's own records from now on, and again whenever its certificate changes
    (the node's record and its external nodes go out at a new version, newly signed)."""
    signer = RecordSigner(identity)
    catalog.sign_own = signer.sign

    def resign() -> None:
        if signer.stale():
            local.publish(force=True)
            external.republish()

    def soon() -> None:  # not at once: the change may be reported from inside a sync step
        asyncio.get_running_loop().call_soon(resign)

    identity.on_change(soon)
    resign()
    return signer


def serf_alive(members: MemberWatch, name: str) -> bool:
    """Whether Serf shows member `name` alive here (the relay rules, agent/sync/relay_check.py)."""
    member = members.table.get(name)
    return member is not None and member.status == "alive"


def peer_identities(identity: MeshIdentity, members: MemberWatch, tls: AgentTls) -> dict[str, Any]:
    """`Gossamer.Identity.Peers` of /v1/agent/self: each member's RPC identity as the CA map
    shows it (proxy/ca/agent_standing.py), and when this agent last verified it over RPC."""
    now_ms = identity.authority.now_ms()
    out: dict[str, Any] = {}
    for m in sorted(members.table.values(), key=lambda m: m.name):
        standing = agent_standing(identity.ca.state, m.tags.get(TAG_NODE_ID, ""), now_ms)
        seen = tls.last_verified.get(m.name)
        out[m.name] = {
            "State": standing.state,
            "Detail": standing.detail,
            "NotAfter": standing.not_after.isoformat() if standing.not_after else "",
            "LastVerified": _iso(seen) if seen is not None else "",
        }
    return out


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


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
