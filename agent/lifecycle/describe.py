"""How the agent describes itself: /v1/agent/self, the status line, the ready banner."""

from __future__ import annotations

from typing import Any

from gossamer.agent.config import AgentConfig
from gossamer.agent.config.api_address import api_listeners
from gossamer.agent.config.values import PORT_OFF
from gossamer.agent.lifecycle.version import CONSUL_COMPAT_VERSION, VERSION
from gossamer.catalog.tagged import node_tagged
from gossamer.gossip.addresses import format_host_port


def self_info(
    c: AgentConfig, *, node_id: str, ready: bool, data_dir: str, blocking_queries: int = 0
) -> dict[str, Any]:
    """The body of GET /v1/agent/self (Consul's shape; `Member` is added by the handler)."""
    return {
        "Config": {
            "Datacenter": c.datacenter,
            "PrimaryDatacenter": c.datacenter,
            "NodeName": c.node,
            "NodeID": node_id,
            "Server": False,
            "Revision": "gossamer",
            "Version": CONSUL_COMPAT_VERSION,
            "BuildDate": "",
        },
        "DebugConfig": {
            "BindAddr": c.bind,
            "AdvertiseAddrLAN": c.advertise,
            "ClientAddrs": [c.client],
            "DataDir": data_dir,
            "HTTPPort": c.http_port,  # -1 when off, as Consul shows it
            "HTTPSPort": c.https.listen_port or PORT_OFF,
            "DNSPort": c.dns_port,
            "DNSDomain": c.dns.domain,  # gossamer check asks the DNS in this domain
            "SerfPortLAN": c.serf_port,
            "ServerPort": c.rpc_port,
            "RetryJoinLAN": list(c.retry_join),
            "StartJoinAddrsLAN": list(c.join),
            "LogLevel": c.log_level.upper(),
            "DevMode": c.dev,
            "IntentionDefaultPolicy": c.intentions.default_policy,  # preflight reads it
            "NodeMeta": dict(c.node_meta),
            "TaggedAddresses": node_tagged(c.advertise, {}, external=False),
        },
        "Meta": dict(c.node_meta),
        "Gossamer": {"Version": VERSION, "Ready": ready, "BlockingQueries": blocking_queries},
    }


def status_line(c: AgentConfig) -> str:
    """For systemd's STATUS= and the log."""
    api = ", ".join(f"{a.scheme.upper()} {a.url}" for a in api_listeners(c))
    gossip = format_host_port(c.bind, c.serf_port)
    return f"node {c.node} in {c.datacenter}: {api}, gossip {gossip}"


def banner(c: AgentConfig, node_id: str) -> str:
    """What `gossamer agent` prints once ready: where to reach it."""
    return "\n".join(
        [
            f"==> gossamer agent ready: node {c.node} ({c.datacenter}), id {node_id}",
            *(f"    {a.scheme.upper()} API: {a.url}" for a in api_listeners(c)),
            f"    DNS:      {format_host_port(c.client, c.dns_port)} (udp/tcp)",
            f"    gossip:   {format_host_port(c.bind, c.serf_port)} (serf)",
        ]
    )
