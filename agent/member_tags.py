"""The serf tags an agent publishes about itself, and reading them back.

Consul's own tag names where they exist (`role`, `dc`, `id`, `port`, `vsn`,
`build`), so a peer that reads tags like Consul does is not surprised.
"""

from __future__ import annotations

from gossamer.gossip.addresses import format_host_port
from gossamer.gossip.members import Member

ROLE = "gossamer"
TAG_RPC_PORT = "port"  # the agent RPC port, as Consul servers advertise theirs
TAG_RECORD_VERSION = "cv"  # version of the node's catalog record: newer -> peers pull it


def own_tags(*, datacenter: str, node_id: str, rpc_port: int, version: str) -> dict[str, str]:
    return {
        "role": ROLE,
        "dc": datacenter,
        "id": node_id,
        TAG_RPC_PORT: str(rpc_port),
        "vsn": "1",
        "build": version,
    }


def rpc_port(member: Member) -> int | None:
    text = member.tags.get(TAG_RPC_PORT, "")
    return int(text) if text.isdigit() else None


def rpc_address(member: Member) -> str | None:
    port = rpc_port(member)
    return None if port is None else format_host_port(member.addr, port)
