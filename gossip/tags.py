"""The serf tags an agent publishes about itself, and reading them back: one home for their names.

Consul's own tag names where they exist (`role`, `dc`, `id`, `port`, `vsn`,
`build`), so a peer that reads tags like Consul does is not surprised; `cv`
is gossamer's own. Readers never raise on a peer's malformed tag: a member
that publishes garbage reads as "unknown" (None or 0).
"""

from __future__ import annotations

from gossamer.gossip.addresses import format_host_port
from gossamer.gossip.members import Member

ROLE = "gossamer"
TAG_ROLE = "role"
TAG_DATACENTER = "dc"
TAG_NODE_ID = "id"
TAG_RPC_PORT = "port"  # the agent RPC port, as Consul servers advertise theirs
TAG_PROTOCOL = "vsn"
TAG_BUILD = "build"
TAG_RECORD_VERSION = "cv"  # version of the node's catalog record: newer -> peers pull it


def own_tags(*, datacenter: str, node_id: str, rpc_port: int, version: str) -> dict[str, str]:
    return {
        TAG_ROLE: ROLE,
        TAG_DATACENTER: datacenter,
        TAG_NODE_ID: node_id,
        TAG_RPC_PORT: str(rpc_port),
        TAG_PROTOCOL: "1",
        TAG_BUILD: version,
    }


def datacenter(member: Member) -> str:
    return member.tags.get(TAG_DATACENTER, "")


def record_version(member: Member) -> int:
    """The `cv` tag as a number; 0 when absent or malformed."""
    text = member.tags.get(TAG_RECORD_VERSION, "")
    return int(text) if text.isdigit() else 0


def rpc_port(member: Member) -> int | None:
    text = member.tags.get(TAG_RPC_PORT, "")
    return int(text) if text.isdigit() else None


def rpc_address(member: Member) -> str | None:
    port = rpc_port(member)
    return None if port is None else format_host_port(member.addr, port)
