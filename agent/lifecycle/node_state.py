"""This node's durable state, opened first: the data dir, every listening socket, the
store, the live catalog, this node's own record and the replicated maps.

These come before serf because a person must fix their failures first (the
data dir in use, a port taken, an unreadable store) and because this node's
record version is one of serf's tags.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from gossamer.agent.acl.tokens import MAP_NAME as ACL_MAP
from gossamer.agent.config import AgentConfig
from gossamer.agent.lifecycle.datadir import DataDir
from gossamer.agent.lifecycle.listeners import Listeners, bind_listeners
from gossamer.agent.lifecycle.reload import apply_config_registrations
from gossamer.agent.lifecycle.root_hooks import wall_ms
from gossamer.agent.lifecycle.version_tag import StartupVersion
from gossamer.agent.local.config_registrations import ConfigRegistrations
from gossamer.agent.local.node import LocalNode
from gossamer.agent.local.own_record import NodeIdentity
from gossamer.agent.replicated.acl_store import AclStore
from gossamer.agent.replicated.ca_store import CaStore
from gossamer.agent.replicated.config_entry_store import MAP_NAME as CONFIG_MAP
from gossamer.agent.replicated.config_entry_store import ConfigEntryStore
from gossamer.agent.replicated.intention_entries import MAP_NAME as INTENTIONS_MAP
from gossamer.agent.replicated.intention_store import IntentionStore
from gossamer.agent.sync.peer_link import Replicas
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import Service
from gossamer.catalog.store import FILE_NAME as STORE_FILE
from gossamer.catalog.store import CatalogStore
from gossamer.proxy.ca.ca_entries import MAP_NAME as CA_MAP

log = logging.getLogger("gossamer.agent")


@dataclass(frozen=True)
class NodeState:
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


async def open_node_state(c: AgentConfig, undo: AsyncExitStack) -> NodeState:
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
    return NodeState(
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
