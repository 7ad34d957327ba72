"""An in-process MeshIdentity over a real CatalogStore and data dir, for unit and HTTP tests.

Built by agent/identity/assemble.py, as the agent builds its own.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path

from gossamer.agent.identity.assemble import IdentitySettings, open_identity
from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.agent.replicated.ca_store import CaStore
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.store import CatalogStore
from gossamer.gossip.rpc_records import KeyResponse


async def _no_keys() -> KeyResponse:
    return KeyResponse({}, {}, num_nodes=1, num_err=0, num_resp=1)


def make_identity(
    data_dir: Path,
    store: CatalogStore,
    catalog: LiveCatalog,
    *,
    registered: Callable[[str], bool],
    wall_ms: Callable[[], int],
    node: str = "n1",
    node_id: str = "id-1",
    join_token: str | None = None,
    encrypt: str | None = None,
    leaf_ttl: timedelta | None = None,
    configured_root: Mapping[str, str] | None = None,
    list_keys: Callable[[], Awaitable[KeyResponse]] = _no_keys,
) -> MeshIdentity:
    ca = CaStore(store, node=node, wall_ms=wall_ms, notify=catalog.touch)
    settings = IdentitySettings(
        node=node, node_id=node_id, datacenter="dc1", join_token=join_token, encrypt=encrypt,
        configured_root=configured_root, test_leaf_cert_ttl=leaf_ttl,
    )  # fmt: skip
    return open_identity(
        data_dir, ca, settings, notify=catalog.touch, registered=registered,
        list_keys=list_keys, wall_ms=wall_ms, rng=random.Random(7),
    )  # fmt: skip
