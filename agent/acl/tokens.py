"""Tokens and policies as entries of the replicated "acl" map, and their decoded state.

Keys: `token/<AccessorID>`, `policy/<ID>`, and `bootstrap` (present once the
cluster was bootstrapped, holding the reset index). Values are Consul's JSON
field names, with one difference on purpose: a token's SecretID is never
stored, only `SecretHash` (SHA-256 of it). Secrets are random UUIDs (122
bits), so an unsalted fast hash is enough: there is no dictionary to try,
and the map that replicates to every agent holds nothing a thief can send.
The SecretID is shown once, when the token is created.

Decoding never raises: an entry that does not decode is named in
`problems` and grants nothing (a token that cannot be read cannot be used).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gossamer.agent.acl.authorize import MANAGEMENT_POLICY_ID, MANAGEMENT_RULES
from gossamer.agent.acl.identities import (
    ServiceIdentity,
    identities_from_json,
    identities_json,
    identity_rules,
)
from gossamer.agent.acl.problems import RulesInvalid
from gossamer.agent.acl.rules import Rules, parse_rules

MAP_NAME = "acl"
TOKEN, POLICY, BOOTSTRAP = "token/", "policy/", "bootstrap"
ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
MANAGEMENT_NAME = "global-management"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def known_key(key: str) -> bool:
    return key == BOOTSTRAP or (key.startswith((TOKEN, POLICY)) and len(key) < 200)


@dataclass(frozen=True)
class Policy:
    id: str
    name: str
    description: str
    rules_text: str
    rules: Rules
    datacenters: tuple[str, ...] = ()


MANAGEMENT_POLICY = Policy(
    MANAGEMENT_POLICY_ID, MANAGEMENT_NAME, "Builtin Policy that grants unlimited access", "",
    MANAGEMENT_RULES,
)  # fmt: skip


@dataclass(frozen=True)
class Token:
    accessor: str
    secret_hash: str
    description: str = ""
    policies: tuple[str, ...] = ()  # policy IDs
    local: bool = False
    datacenter: str = ""
    expiration: datetime | None = None
    create_time: str = ""
    service_identities: tuple[ServiceIdentity, ...] = ()  # Consul's template (identities.py)

    def expired(self, now: datetime) -> bool:
        return self.expiration is not None and self.expiration <= now


def token_value(token: Token) -> dict[str, Any]:
    return {
        "AccessorID": token.accessor,
        "SecretHash": token.secret_hash,
        "Description": token.description,
        "Policies": list(token.policies),
        "Local": token.local,
        "Datacenter": token.datacenter,
        "ExpirationTime": token.expiration.isoformat() if token.expiration else None,
        "CreateTime": token.create_time,
        **(
            {"ServiceIdentities": identities_json(ids)} if (ids := token.service_identities) else {}
        ),
    }


def token_from_value(value: Any) -> Token:
    """Raises KeyError/TypeError/ValueError for a value that is not a token."""
    expiration = value.get("ExpirationTime")
    return Token(
        accessor=str(value["AccessorID"]),
        secret_hash=str(value["SecretHash"]),
        description=str(value.get("Description", "")),
        policies=tuple(str(p) for p in value.get("Policies", ())),
        local=bool(value.get("Local", False)),
        datacenter=str(value.get("Datacenter", "")),
        expiration=datetime.fromisoformat(expiration) if expiration else None,
        create_time=str(value.get("CreateTime", "")),
        service_identities=identities_from_json(value.get("ServiceIdentities")),
    )


def policy_value(policy: Policy) -> dict[str, Any]:
    return {
        "ID": policy.id,
        "Name": policy.name,
        "Description": policy.description,
        "Rules": policy.rules_text,
        "Datacenters": list(policy.datacenters),
    }


def policy_from_value(value: Any) -> Policy:
    """Raises KeyError/TypeError/ValueError (RulesInvalid too) for a value that is not one."""
    rules_text = str(value.get("Rules", ""))
    return Policy(
        id=str(value["ID"]),
        name=str(value["Name"]),
        description=str(value.get("Description", "")),
        rules_text=rules_text,
        rules=parse_rules(rules_text),
        datacenters=tuple(str(d) for d in value.get("Datacenters", ())),
    )


def initial_management(secret: str, create_time: str) -> Token:
    """The token `acl.tokens.initial_management` names. Its AccessorID is derived from
    the secret's hash, so every agent configured with it writes the same key."""
    secret_hash = hash_secret(secret)
    accessor = str(uuid.uuid5(uuid.NAMESPACE_OID, "gossamer-initial-management/" + secret_hash))
    return Token(
        accessor, secret_hash, "Initial Management Token", (MANAGEMENT_POLICY_ID,),
        create_time=create_time,
    )  # fmt: skip


@dataclass
class AclState:
    """The map decoded: tokens by accessor and by secret hash, policies by ID and name."""

    tokens: dict[str, Token] = field(default_factory=dict)
    by_hash: dict[str, str] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    by_name: dict[str, str] = field(default_factory=dict)
    bootstrap: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    def token_for(self, secret: str) -> Token | None:
        accessor = self.by_hash.get(hash_secret(secret))
        return self.tokens.get(accessor) if accessor is not None else None

    def policy_rules(self, token: Token, datacenter: str) -> list[Rules]:
        """The rules of the token's policies that exist and apply in `datacenter`, and of its
        service identities that apply there."""
        found = [self.policies.get(p) for p in token.policies]
        return [
            p.rules
            for p in found
            if p is not None and (not p.datacenters or datacenter in p.datacenters)
        ] + [identity_rules(s.name) for s in token.service_identities if s.applies(datacenter)]


def read_state(items: Iterable[tuple[str, Any]]) -> AclState:
    state = AclState()
    state.policies[MANAGEMENT_POLICY_ID] = MANAGEMENT_POLICY
    state.by_name[MANAGEMENT_NAME] = MANAGEMENT_POLICY_ID
    for key, value in items:
        try:
            if key == BOOTSTRAP:
                state.bootstrap = dict(value)
            elif key.startswith(TOKEN):
                token = token_from_value(value)
                state.tokens[token.accessor] = token
                state.by_hash[token.secret_hash] = token.accessor
            elif key.startswith(POLICY):
                policy = policy_from_value(value)
                state.policies[policy.id] = policy
                state.by_name[policy.name] = policy.id
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            reason = "; ".join(map(str, exc.problems)) if isinstance(exc, RulesInvalid) else exc
            state.problems.append(f"{key[:100]}: {reason}")
    return state
