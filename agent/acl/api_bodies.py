"""The bodies of `/v1/acl/token` and `/v1/acl/policy`: read them, check them, render them.

Field names are Consul's. Every problem of a body is reported at once
(AclBodyError, a 400 naming the field); policy rules that do not parse
report each problem with its position under `Rules`. A token's SecretID is
rendered only when the token was just made (bootstrap, create, clone):
the map holds its hash alone.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gossamer.agent.acl.identities import FIELD as IDENTITIES
from gossamer.agent.acl.identities import identities_json, read_identities
from gossamer.agent.acl.problems import RulesInvalid
from gossamer.agent.acl.rules import parse_rules
from gossamer.agent.acl.tokens import AclState, Policy, Token, hash_secret

_POLICY_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TTL = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class AclBodyError(ValueError):
    """A token or policy body that is wrong; every problem, each naming its field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


TOKEN_FIELDS = (
    "AccessorID", "SecretID", "Description", "Policies", "Local", "ExpirationTime",
    "ExpirationTTL", IDENTITIES, "NodeIdentities", "Roles", "TemplatedPolicies",
)  # fmt: skip
# Consul's token fields this agent does not implement: refused when not empty, so a token is
# never made holding less than its maker asked for (they were silently dropped)
UNSUPPORTED = ("NodeIdentities", "Roles", "TemplatedPolicies")
POLICY_FIELDS = ("ID", "Name", "Description", "Rules", "Datacenters")


def canonical(body: Any, fields: tuple[str, ...]) -> Any:
    """Field names as Go's encoding/json reads them: case-insensitively (py-consul sends
    `name` and `rules` in lower case); other keys are kept as they are."""
    if not isinstance(body, dict):
        return body
    names = {f.lower(): f for f in fields}
    return {names.get(str(k).lower(), k): v for k, v in body.items()}


@dataclass(frozen=True)
class NewToken:
    token: Token
    secret: str


def _ttl(text: str) -> timedelta | None:
    parts = _TTL.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def _policy_ids(value: Any, state: AclState, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append("Policies: must be a list of {ID} or {Name}")
        return ()
    ids: list[str] = []
    for i, link in enumerate(value):
        link = link if isinstance(link, dict) else {}
        by_id, by_name = link.get("ID"), link.get("Name")
        found = state.by_name.get(by_name) if by_name and not by_id else by_id
        if not found or found not in state.policies:
            problems.append(f"Policies[{i}]: no policy with ID or Name {by_id or by_name!r}")
        else:
            ids.append(found)
    return tuple(dict.fromkeys(ids))


def _expiration(
    body: dict[str, Any], held: datetime | None, now: datetime, problems: list[str]
) -> datetime | None:
    """ExpirationTime, or now + ExpirationTTL, or what the token held."""
    expiration = held
    if (ttl := body.get("ExpirationTTL")) is not None:
        span = _ttl(ttl) if isinstance(ttl, str) else None
        if span is None or span <= timedelta(0):
            problems.append(f"ExpirationTTL: {ttl!r} is not a positive duration like 10m")
        else:
            expiration = now + span
    if (at := body.get("ExpirationTime")) is not None:
        try:
            expiration = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"ExpirationTime: {at!r} is not an RFC 3339 time")
    return expiration


def read_token(
    body: Any, state: AclState, *, now: datetime, datacenter: str, new_id: Callable[[], str],
    held: Token | None = None,
) -> NewToken:  # fmt: skip
    """The token a create (held None) or update body describes; raises AclBodyError."""
    body = canonical(body, TOKEN_FIELDS)
    if not isinstance(body, dict):
        raise AclBodyError(["body: must be a JSON object"])
    problems: list[str] = []
    accessor = body.get("AccessorID") or (held.accessor if held else new_id())
    if not isinstance(accessor, str) or not _UUID.fullmatch(accessor):
        problems.append(f"AccessorID: {accessor!r} is not a UUID")
    if held is None and accessor in state.tokens:
        problems.append(f"AccessorID: {accessor} is already in use")
    secret = body.get("SecretID") if held is None else None
    secret = secret or new_id()
    if not isinstance(secret, str) or not _UUID.fullmatch(secret):
        problems.append("SecretID: must be a UUID")
    elif held is None and hash_secret(secret) in state.by_hash:
        problems.append("SecretID: already in use")
    description = body.get("Description", held.description if held else "")
    if not isinstance(description, str):
        problems.append("Description: must be a string")
    local = body.get("Local", held.local if held else False)
    if not isinstance(local, bool):
        problems.append("Local: must be true or false")
    expiration = _expiration(body, held.expiration if held else None, now, problems)
    policies = _policy_ids(body.get("Policies"), state, problems)
    identities = read_identities(body.get(IDENTITIES), problems)
    problems += [f"{name}: not supported by gossamer; link a policy with the rules instead"
                 for name in UNSUPPORTED if body.get(name)]  # fmt: skip
    if problems:
        raise AclBodyError(problems)
    token = Token(
        accessor=str(accessor), secret_hash=held.secret_hash if held else hash_secret(secret),
        description=str(description), policies=policies if "Policies" in body or not held
        else held.policies, local=bool(local), datacenter=datacenter, expiration=expiration,
        create_time=held.create_time if held else now.isoformat(),
        service_identities=identities if IDENTITIES in body or not held
        else held.service_identities,
    )  # fmt: skip
    return NewToken(token, "" if held else str(secret))


def read_policy(body: Any, state: AclState, new_id: Callable[[], str], held_id: str = "") -> Policy:
    """The policy a create or update body describes; raises AclBodyError."""
    body = canonical(body, POLICY_FIELDS)
    if not isinstance(body, dict):
        raise AclBodyError(["body: must be a JSON object"])
    problems: list[str] = []
    name = body.get("Name")
    if not isinstance(name, str) or not _POLICY_NAME.fullmatch(name):
        problems.append(f"Name: {name!r} must be 1-128 letters, digits, '-' or '_'")
    elif state.by_name.get(name, held_id) != held_id:
        problems.append(f"Name: a policy named {name!r} already exists")
    rules_text = body.get("Rules", "")
    rules = None
    if not isinstance(rules_text, str):
        problems.append("Rules: must be a string of HCL or JSON")
    else:
        try:
            rules = parse_rules(rules_text)
        except RulesInvalid as exc:
            problems += [f"Rules: {p}" for p in exc.problems]
    description = body.get("Description", "")
    datacenters = body.get("Datacenters") or []
    if not isinstance(description, str):
        problems.append("Description: must be a string")
    if not isinstance(datacenters, list) or not all(isinstance(d, str) for d in datacenters):
        problems.append("Datacenters: must be a list of names")
    if problems or rules is None:
        raise AclBodyError(problems)
    return Policy(
        held_id or new_id(), str(name), description, rules_text, rules, tuple(datacenters)
    )


def token_json(token: Token, state: AclState, secret: str = "", index: int = 0) -> dict[str, Any]:
    links = [
        {"ID": p, "Name": state.policies[p].name} for p in token.policies if p in state.policies
    ]
    out: dict[str, Any] = {
        "AccessorID": token.accessor,
        "Description": token.description,
        "Policies": links,
        "Local": token.local,
        "CreateTime": token.create_time,
        "Hash": token.secret_hash[:16],
        "CreateIndex": index,
        "ModifyIndex": index,
    }
    if token.service_identities:
        out[IDENTITIES] = identities_json(token.service_identities)
    if secret:
        out["SecretID"] = secret
    if token.expiration is not None:
        out["ExpirationTime"] = token.expiration.isoformat()
    return out


def policy_json(policy: Policy, index: int = 0) -> dict[str, Any]:
    return {
        "ID": policy.id,
        "Name": policy.name,
        "Description": policy.description,
        "Rules": policy.rules_text,
        "Datacenters": list(policy.datacenters) or None,
        "CreateIndex": index,
        "ModifyIndex": index,
    }


def random_id() -> str:
    """A random UUID (122 bits from the OS): accessors, secrets and policy IDs."""
    return str(uuid.uuid4())
