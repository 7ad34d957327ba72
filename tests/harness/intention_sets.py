"""Large intention sets for a sidecar's policy (tests/test_proxy_policy_steps.py and
bench/policy_apply.py): `s{i} => db`, two in three with L7 permissions (three regexes each),
the rest plain allows, one row a deny when asked."""

from __future__ import annotations

import uuid

from gossamer.intentions.model import HeaderMatch, HTTPMatch, Intention, Permission


def intention(i: int, denied: bool, written: int = 0) -> Intention:
    """Row `i`; `denied`: a plain deny, with a later modify index (a changed row); `written`:
    how many times the set was written before, so an unchanged row keeps its index."""
    ids = {"id": str(uuid.UUID(int=i + 1)), "created_at": "2026-12-08T00:00:00Z",
           "updated_at": "2026-12-08T00:00:00Z", "create_index": 10 + i,
           "modify_index": (20_000 if denied else 10 + written) + i}  # fmt: skip
    if denied:
        return Intention(f"s{i}", "db", "deny", **ids)
    if i % 3 == 0:
        return Intention(f"s{i}", "db", "allow", **ids)
    perms = (
        Permission("allow", HTTPMatch(path_regex=f"/api/v{i}/.*", methods=("GET",))),
        Permission("deny", HTTPMatch(path_prefix="/admin",
                                     headers=(HeaderMatch("x-user", regex=f"u{i}.*"),))),
        Permission("deny", HTTPMatch(path_regex=f"/v{i}/(a|b|c)+/[0-9]{{1,8}}")),
    )  # fmt: skip
    return Intention(f"s{i}", "db", permissions=perms, **ids)
