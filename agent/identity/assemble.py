"""Putting this agent's identity together: files, cluster secret, authority, leaves.

One place that wires the identity's parts, used by the composition root
(agent/lifecycle/parts.py) and by the in-process tests alike, so a test
drives the same object the agent runs. The leaf TTL is read at each use:
the test-only `test_leaf_cert_ttl` if set, else the replicated LeafCertTTL.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from gossamer.agent.identity.authority import Authority
from gossamer.agent.identity.cluster_secret import ClusterSecrets
from gossamer.agent.identity.files import IdentityFiles
from gossamer.agent.identity.leaves import LeafBook
from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.agent.replicated.ca_store import CaStore
from gossamer.gossip.rpc import KeyResponse


@dataclass(frozen=True)
class IdentitySettings:
    """What of the agent's config the identity reads."""

    node: str
    node_id: str
    datacenter: str
    join_token: str | None = None
    encrypt: str | None = None
    configured_root: Mapping[str, str] | None = None
    test_leaf_cert_ttl: timedelta | None = None


def open_identity(
    data_dir: Path,
    ca: CaStore,
    settings: IdentitySettings,
    *,
    notify: Callable[[set[str]], int],
    registered: Callable[[str], bool],
    list_keys: Callable[[], Awaitable[KeyResponse]],
    wall_ms: Callable[[], int],
    rng: random.Random,
) -> MeshIdentity:
    """The identity of this agent, its material loaded from `<data_dir>/identity/`."""
    files = IdentityFiles(data_dir)
    secrets = ClusterSecrets(
        join_token=settings.join_token, encrypt=settings.encrypt, list_keys=list_keys
    )

    def leaf_ttl() -> timedelta:
        return settings.test_leaf_cert_ttl or ca.state.settings.leaf_cert_ttl

    authority = Authority(
        files, ca, secrets, node=settings.node, node_id=settings.node_id,
        datacenter=settings.datacenter, wall_ms=wall_ms, leaf_ttl=leaf_ttl, rng=rng,
        configured_root=settings.configured_root,
    )  # fmt: skip
    leaves = LeafBook(files, notify, authority.renewal_moment)
    return MeshIdentity(
        ca, authority, leaves, secrets, datacenter=settings.datacenter, registered=registered,
        leaf_ttl=leaf_ttl, unbounded_leaf_ttl=settings.test_leaf_cert_ttl is not None,
    )  # fmt: skip
