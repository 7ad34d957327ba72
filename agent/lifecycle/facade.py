"""What the HTTP handlers see of the running agent: the `AgentApi` protocol, implemented.

A facade over the parts, so handlers never reach into the composition root:
serf's RPC client, this node's registrations, its description for
/v1/agent/self (with `Gossamer.Identity`: enrolment, open or not, whether
its agent certificate is valid), reload, and a way to ask the agent to stop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.agent.lifecycle.describe import self_info
from gossamer.agent.lifecycle.self_sections import XDS_NONE, coord_json, stats_json
from gossamer.agent.lifecycle.status import AgentStatus
from gossamer.agent.local.node import LocalNode
from gossamer.catalog.live import LiveCatalog
from gossamer.gossip.addresses import format_host_port
from gossamer.gossip.members import Member
from gossamer.gossip.process import SerfProcess
from gossamer.gossip.rpc import SerfRpcClient

log = logging.getLogger("gossamer.members")


class AgentFacade:
    def __init__(
        self,
        status: AgentStatus,
        *,
        node_id: str,
        data_dir: str,
        serf: SerfProcess,
        local: LocalNode,
        catalog: LiveCatalog,
        identity: MeshIdentity,
        rpc_refusals: Callable[[], dict[str, int]],
        peer_identities: Callable[[], dict[str, Any]],
        reload: Callable[[], Awaitable[list[str]]],
        request_shutdown: Callable[[bool], None],
        record_pushes: Callable[[], dict[str, int]] = dict,
        member_table: Callable[[], Mapping[str, Member]] = dict,
    ) -> None:
        """`request_shutdown(leave)`: the root's; `reload`: the Reloader's;
        `record_pushes`: what pushing catalog changes has cost (record_push.py);
        `member_table`: the member watch's current table (member_watch.py)."""
        self._status = status
        self._node_id = node_id
        self._data_dir = data_dir
        self._serf = serf
        self._local = local
        self._catalog = catalog
        self._identity = identity
        self._rpc_refusals = rpc_refusals
        self._peer_identities = peer_identities
        self._reload = reload
        self._request_shutdown = request_shutdown
        self._record_pushes = record_pushes
        self._member_table = member_table
        self._table_served: Mapping[str, Member] | None = None  # the last one served, logged

    @property
    def serf(self) -> SerfRpcClient:
        return self._serf.client

    def remembered_members(self) -> list[Member]:
        """The member watch's last table, logged once per table: the watch replaces the table
        on every resync, and cannot while serf is down, so that is one line per outage."""
        table = self._member_table()
        if table and table is not self._table_served:
            self._table_served = table
            log.warning("serf is unreachable: members answered as last seen (%d)", len(table))
        return list(table.values())

    @property
    def node_name(self) -> str:
        return self._status.config.node

    @property
    def rpc_address(self) -> str:
        c = self._status.config
        return format_host_port(c.advertise, c.rpc_port)

    @property
    def local_node(self) -> LocalNode:
        return self._local

    async def self_info(self) -> dict[str, Any]:
        """Consul's body of /v1/agent/self (the handler adds `Member`), ours under `Gossamer`."""
        info = self._described()
        client, local = self._serf.client, self._local
        coord = await client.get_coordinate(self._status.config.node)
        stats = await client.stats()
        info["Coord"] = coord_json(coord)
        info["Stats"] = stats_json(stats, len(local.services()), local.checks())
        info["xDS"] = XDS_NONE
        return info

    def _described(self) -> dict[str, Any]:
        info = self_info(
            self._status.config,
            node_id=self._node_id,
            ready=self._status.ready,
            data_dir=self._data_dir,
            blocking_queries=self._catalog.watchers,
        )
        info["Gossamer"]["Identity"] = self._identity.summary() | {
            "RpcRefusals": self._rpc_refusals(),  # agent-RPC peers refused, per reason
            "Peers": self._peer_identities(),  # each member's RPC identity
        }
        info["Gossamer"]["RecordPushes"] = self._record_pushes()  # catalog changes pushed
        return info

    async def reload(self) -> list[str]:
        return await self._reload()

    def request_shutdown(self, *, leave: bool) -> None:
        self._request_shutdown(leave)
