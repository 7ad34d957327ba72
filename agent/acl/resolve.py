"""Who is asking: a secret (or none) to an identity with its authorizer, or a refusal.

Rules this module keeps (Consul's token resolution):
1. No secret means the anonymous token (no policies, so the default policy
   alone decides), unless the agent has a `default` token configured.
2. A secret that matches no token, an expired token, or a `Local` token
   from another datacenter is refused alike with `ACL not found`: the
   caller learns nothing about which.
3. Secrets are compared by their hashes with `hmac.compare_digest`, so the
   time taken says nothing about how much of a guess was right.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from gossamer.agent.acl.authorize import Authorizer
from gossamer.agent.acl.tokens import ANONYMOUS_ACCESSOR, AclState, Token, hash_secret

ACL_NOT_FOUND = "ACL not found"


class AclNotFound(Exception):
    """The secret names no usable token (403 `ACL not found`, as Consul answers)."""

    def __init__(self) -> None:
        super().__init__(ACL_NOT_FOUND)


class PermissionDenied(Exception):
    """The token lacks a permission; the message is Consul's (authorize.denied_message)."""


class TooManyGuesses(Exception):
    """A client that sent too many unknown secrets (429; guard.py)."""


class AclDisabled(Exception):
    """An ACL endpoint called while ACLs are off (401, as Consul answers)."""


@dataclass(frozen=True)
class Identity:
    accessor: str
    authorizer: Authorizer
    token: Token | None  # None: the anonymous token


def resolve(
    state: AclState, secret: str, *, now: datetime, datacenter: str, default_allow: bool
) -> Identity:
    """The identity `secret` stands for; raises AclNotFound."""
    if not secret:
        return Identity(ANONYMOUS_ACCESSOR, Authorizer([], default_allow), None)
    wanted = hash_secret(secret)
    accessor = state.by_hash.get(wanted)
    token = state.tokens.get(accessor) if accessor is not None else None
    if token is None or not hmac.compare_digest(token.secret_hash, wanted):
        raise AclNotFound()
    if token.expired(now) or (token.local and token.datacenter != datacenter):
        raise AclNotFound()
    return Identity(
        token.accessor, Authorizer(state.policy_rules(token, datacenter), default_allow), token
    )
