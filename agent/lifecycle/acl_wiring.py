"""ACLs switched on for a starting agent: the initial management token and enforcement.

Kept apart from parts.py so the start order stays readable: with
`acl.enabled: false` nothing here runs and the HTTP app is unchanged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from gossamer.agent.acl.agent_tokens import persisted
from gossamer.agent.acl.down_policy import cut_off
from gossamer.agent.acl.resolve import AclNotFound
from gossamer.agent.acl.rules import Access
from gossamer.agent.acl.tokens import initial_management
from gossamer.agent.config import AgentConfig
from gossamer.agent.http.acl_access import AclAccess
from gossamer.agent.http.acl_enforce import install_acl
from gossamer.agent.identity.files import atomic_write
from gossamer.agent.lifecycle.bootstrap_query import ask
from gossamer.agent.lifecycle.status import AgentStatus
from gossamer.agent.replicated.acl_store import AclStore
from gossamer.gossip.member_watch import MemberWatch
from gossamer.gossip.process import SerfProcess

log = logging.getLogger("gossamer.acl")

TOKENS_FILE = "acl-tokens.json"  # Consul's name for the persisted agent tokens


def enable_acls(
    app: web.Application, store: AclStore, status: AgentStatus, data_dir: str,
    members: MemberWatch, serf: SerfProcess,
) -> AclAccess | None:  # fmt: skip
    """Install enforcement if `acl.enabled`; write the initial management token if missing."""
    c: AgentConfig = status.config
    if not c.acl.enabled:
        return None
    secret = c.acl.tokens.initial_management
    if secret and store.state.token_for(secret) is None:
        store.put_token(initial_management(secret, datetime.now(UTC).isoformat()))

    def isolated() -> bool:
        return cut_off(c.node, ((m.name, m.status) for m in members.table.values()))

    access = AclAccess(
        store, lambda: status.config.acl, datacenter=c.datacenter, node=c.node,
        data_dir=data_dir, cut_off=isolated,
    )  # fmt: skip
    access.bootstrap_guard = lambda reset_index: ask(serf.client, store, reset_index)
    if c.acl.enable_token_persistence:
        path = Path(data_dir) / TOKENS_FILE
        access.api_tokens = _load_tokens(path)
        access.persist = lambda tokens: atomic_write(path, json.dumps(tokens).encode())
    install_acl(app, access)
    return access


def _load_tokens(path: Path) -> dict[str, str]:
    """The tokens PUT /v1/agent/token/<type> kept; a file that cannot be read is logged."""
    try:
        return persisted(json.loads(path.read_text("utf-8")))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s (tokens set through the API are lost): %s", path, exc)
        return {}


def dns_reader(
    store: AclStore, status: AgentStatus, access: AclAccess | None
) -> Callable[[str, str], bool] | None:
    """What DNS may show: what the `default` token (or the anonymous one) may read, as
    Consul's DNS; None (everything) with ACLs off. Asked at each zone build."""
    c: AgentConfig = status.config
    if not c.acl.enabled or access is None:
        return None
    try:
        identity = store.identify(
            access.token("default"), now=datetime.now(UTC), datacenter=c.datacenter,
            default_allow=c.acl.default_policy == "allow",
        )  # fmt: skip
    except AclNotFound:
        return lambda kind, name: False
    return lambda kind, name: identity.authorizer.allows(kind, name, Access.READ).allowed
