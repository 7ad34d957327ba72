"""An in-process MeshIdentity over a real CatalogStore and data dir, for unit and HTTP tests."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path

from gossamer.agent.identity.authority import Authority
from gossamer.agent.identity.cluster_secret import ClusterSecrets
from gossamer.agent.identity.files import IdentityFiles
from gossamer.agent.identity.leaves import LeafBook
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
    files = IdentityFiles(data_dir)
    secrets = ClusterSecrets(join_token=join_token, encrypt=encrypt, list_keys=list_keys)

    def ttl() -> timedelta:
        return leaf_ttl or ca.state.settings.leaf_cert_ttl

    authority = Authority(
        files, ca, secrets, node=node, node_id=node_id, datacenter="dc1",
        wall_ms=wall_ms, leaf_ttl=ttl, rng=random.Random(7), configured_root=configured_root,
    )  # fmt: skip
    leaves = LeafBook(files, catalog.touch, authority.renewal_moment)
    return MeshIdentity(
        ca, authority, leaves, secrets, datacenter="dc1", registered=registered,
        first_sync_done=lambda: True, has_join_targets=False, leaf_ttl=ttl,
        unbounded_leaf_ttl=leaf_ttl is not None,
    )  # fmt: skip
