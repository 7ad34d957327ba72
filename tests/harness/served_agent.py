"""The agent's HTTP app in-process with real catalog, stores and identity.

The agent around it is a stand-in (`FakeAgent`): its serf (`RefusingSerf`)
refuses or cannot do every change, so the error paths of the membership and
keyring routes are reachable without a cluster. The `served` fixture of
tests/conftest.py wraps `serving_fake_agent`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from gossamer.agent.config import ConfigError, ConfigProblem
from gossamer.agent.http.app import make_app
from gossamer.agent.http.intention_access import IntentionsAccess
from gossamer.agent.local.external_nodes import ExternalNodes
from gossamer.agent.local.node import LocalNode
from gossamer.agent.local.own_record import NodeIdentity
from gossamer.agent.replicated.config_entry_store import ConfigEntryStore
from gossamer.agent.replicated.intention_store import IntentionStore
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import NodeRecord
from gossamer.catalog.store import CatalogStore
from gossamer.gossip.errors import SerfConnectionError, SerfRpcError
from gossamer.gossip.rpc_records import KeyResponse
from tests.identity_support import make_identity

UUID = "40e4a748-2192-161a-0510-9bf59fe950b5"  # node n2's ID


class RefusingSerf:
    """A serf that knows node n2 only and refuses or cannot do every change."""

    async def members_filtered(self, name: str = "") -> list[object]:
        return [object()] if name == "n2" else []

    async def members(self) -> list[object]:
        raise KeyError("members")  # a bug: must not become an API answer

    async def join(self, addresses: list[str]) -> int:
        raise SerfRpcError(f"Failed to join {addresses[0]}: dial tcp: i/o timeout")

    async def force_leave(self, node: str, prune: bool = False) -> None:
        raise SerfRpcError("node not found")

    async def list_keys(self) -> KeyResponse:
        raise SerfConnectionError("connection refused")

    async def install_key(self, key: str) -> None:
        messages = {"n2": "key is not valid", "n3": "no keyring"}
        raise SerfRpcError(
            "2/3 nodes reported failure",
            KeyResponse(messages, {}, num_nodes=3, num_err=2, num_resp=3),
        )

    use_key = remove_key = install_key


@dataclass
class FakeAgent:
    local_node: LocalNode
    serf: Any = field(default_factory=RefusingSerf)
    node_name: str = "n1"
    rpc_address: str = "127.0.0.1:8300"

    async def self_info(self) -> dict[str, Any]:
        return {"Config": {"Datacenter": "dc1", "NodeName": self.node_name}}

    def remembered_members(self) -> list[Any]:
        return []

    async def reload(self) -> list[str]:
        raise ConfigError([ConfigProblem("/etc/gossamer/a.yaml", "log_level", "must be info")])

    def request_shutdown(self, *, leave: bool) -> None:
        raise AssertionError("not asked")


@dataclass
class Served:
    client: TestClient  # type: ignore[type-arg]
    local: LocalNode
    intention_db: CatalogStore

    async def call(self, method: str, path: str, body: str | None = None) -> tuple[int, str]:
        async with self.client.request(method, path, data=body) as r:
            return r.status, await r.text()


@asynccontextmanager
async def serving_fake_agent(tmp_path: Path) -> AsyncIterator[Served]:
    """The real app over a real catalog and stores, behind an agent whose serf refuses changes."""
    store = CatalogStore.open(tmp_path / "catalog.db")
    catalog = LiveCatalog("dc1", store, wall_ms=lambda: 1_000)
    catalog.apply([
        NodeRecord("n2", UUID, "dc1", "198.18.0.2", 5, "n2"),  # another agent, with a node ID
        NodeRecord("ext2", "", "dc1", "198.18.0.3", 7, "n2"),  # an external node n2 owns
    ])  # fmt: skip
    identity = NodeIdentity(node="n1", node_id="id-1", datacenter="dc1", address="127.0.0.1")
    local = LocalNode(identity, store, catalog, wall_ms=lambda: 1_000, on_version=lambda v: None)
    local.restore()
    external = ExternalNodes(
        catalog, owner="n1", wall_ms=lambda: 1_000, is_member={"n2"}.__contains__
    )
    intention_db = CatalogStore.open(tmp_path / "intentions.db")
    intentions = IntentionStore(
        intention_db, node="n1", wall_ms=lambda: 1_000, notify=catalog.touch
    )
    local.register_service({"Name": "api", "Port": 80})
    local.register_service({"Name": "web~1", "Port": 81})
    identity = make_identity(
        tmp_path,
        intention_db,
        catalog,
        wall_ms=lambda: 1_000,
        registered={"api", "web~1"}.__contains__,
    )  # never bootstrapped: no CA root, so a leaf is not ready
    access = IntentionsAccess(intentions, lambda: False)
    entries = ConfigEntryStore(intention_db, node="n1", wall_ms=lambda: 1_000, notify=catalog.touch)
    app = make_app(FakeAgent(local), catalog, external, access, identity, config_entries=entries)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Served(client, local, intention_db)
    finally:
        await client.close()
        await local.stop()
        intention_db.close()
        store.close()
