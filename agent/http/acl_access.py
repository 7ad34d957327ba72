"""What the ACL middleware and routes share: the store, the settings, who is asking.

Installed only when `acl.enabled` (install_acl): without it the app is
exactly what it was, and every `/v1/acl/*` call answers 401 as Consul's
does with ACLs off.

The secret comes, as in Consul, from `X-Consul-Token`, then
`Authorization: Bearer`, then `?token=`; none at all means the agent's
`acl.tokens.default` (if set) or the anonymous token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from aiohttp import web

from gossamer.agent.acl.agent_tokens import effective, with_token
from gossamer.agent.acl.authorize import denied_message
from gossamer.agent.acl.bootstrap_race import Verdict
from gossamer.agent.acl.down_policy import while_cut_off
from gossamer.agent.acl.guard import FailureGuard
from gossamer.agent.acl.resolve import AclNotFound, Identity, PermissionDenied, TooManyGuesses
from gossamer.agent.acl.rules import Access
from gossamer.agent.acl.tokens import hash_secret
from gossamer.agent.config.acl_section import AclConfig
from gossamer.agent.replicated.acl_store import AclStore

log = logging.getLogger("gossamer.acl")
LOG_EVERY_S = 10.0


class AclAccess:
    def __init__(
        self,
        store: AclStore,
        settings: Callable[[], AclConfig],
        *,
        datacenter: str,
        node: str,
        data_dir: str | None = None,
        cut_off: Callable[[], bool] = lambda: False,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = settings
        self.datacenter = datacenter
        self.node = node
        self.data_dir = data_dir  # where the bootstrap reset file is looked for
        self.cut_off = cut_off  # no peer alive: acl.down_policy decides (acl/down_policy.py)
        self._now = now
        self._monotonic = monotonic
        self.guard = FailureGuard()
        self._logged: dict[str, float] = {}
        self.api_tokens: dict[str, str] = {}  # set by PUT /v1/agent/token/<type> (agent_tokens)
        self.persist: Callable[[dict[str, str]], None] | None = None  # enable_token_persistence
        self.token_listeners: list[Callable[[], None]] = []  # DNS: the default token changed
        # Asks the cluster before a bootstrap wins (lifecycle/bootstrap_query.py); None: alone.
        self.bootstrap_guard: Callable[[int], Awaitable[Verdict]] | None = None

    def now(self) -> datetime:
        return self._now()

    def token(self, kind: str) -> str:
        """The agent's `kind` token in use: set through the API, else from the config."""
        return effective(kind, self.api_tokens, self.settings().tokens.model_dump())

    def set_token(self, kind: str, secret: str) -> None:
        """PUT /v1/agent/token/<kind>: in memory, on disk when persisted; listeners hear it."""
        tokens = with_token(self.api_tokens, kind, secret)
        if self.persist is not None:
            self.persist(tokens)  # first, so a token that cannot be kept is not half-set
        self.api_tokens = tokens
        for listener in self.token_listeners:
            listener()

    def identify_secret(self, secret: str, client: str) -> Identity:
        """The identity of `secret` for `client`; raises AclNotFound or TooManyGuesses."""
        at = self._monotonic()
        if self.guard.blocked(client, at):
            self._log_once(client, at, "refusing")
            raise TooManyGuesses(f"too many unknown ACL tokens from {client}; retry later")
        settings = self.settings()
        try:
            identity = self.store.identify(
                secret or self.token("default"), now=self._now(),
                datacenter=self.datacenter, default_allow=settings.default_policy == "allow",
            )  # fmt: skip
        except AclNotFound:
            self.guard.failed(client, at)
            self._log_once(client, at, "unknown token")
            raise
        if settings.down_policy in ("deny", "allow") and self.cut_off():
            management = settings.tokens.initial_management
            held = hash_secret(management) if management else None
            return while_cut_off(identity, settings.down_policy, held)
        return identity

    def _log_once(self, client: str, at: float, what: str) -> None:
        if at - self._logged.get(client, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._logged[client] = at
            log.warning("ACL: %s from %s (possible token guessing)", what, client)
        if len(self._logged) > 10_000:
            self._logged.clear()


ACL_KEY: web.AppKey[AclAccess] = web.AppKey("acl", AclAccess)
IDENTITY_KEY: web.RequestKey[Identity] = web.RequestKey("acl_identity", Identity)  # per request


def request_secret(request: web.Request) -> str:
    """The secret a request carries (header, bearer, query), or ""."""
    return secret_from(request.headers, request.query)


def secret_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    """`request_secret` over a head's headers and query (the light front reads it so too)."""
    header = headers.get("X-Consul-Token", "")
    if header:
        return header
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return query.get("token", "")


def identity_of(request: web.Request) -> Identity:
    """Who is asking (resolved by the middleware, or now); raises AclNotFound."""
    found = request.get(IDENTITY_KEY)
    if isinstance(found, Identity):
        return found
    access = request.app[ACL_KEY]
    identity = access.identify_secret(request_secret(request), request.remote or "?")
    request[IDENTITY_KEY] = identity
    return identity


def require(request: web.Request, kind: str, name: str, need: Access) -> None:
    """Raises PermissionDenied (Consul's 403 wording) unless the token may."""
    require_of(identity_of(request), kind, name, need)


def require_of(identity: Identity, kind: str, name: str, need: Access) -> None:
    """`require` for an identity already resolved (the light front's)."""
    if not identity.authorizer.allows(kind, name, need).allowed:
        raise PermissionDenied(denied_message(identity.accessor, kind, name, need))


def acl_of(request: web.Request) -> AclAccess | None:
    return request.app.get(ACL_KEY)
