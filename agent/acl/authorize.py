"""The authorizer: may a token with these policies do this to that resource?

Rules this module keeps (Consul's `acl/policy_authorizer.go` and
`policy_merger.go`):
1. Policies merge per (kind, segment, exact-or-prefix): `deny` wins, else
   the more permissive word.
2. For one name, the exact rule wins over any prefix rule, and the longest
   matching prefix wins over shorter ones.
3. A service rule without `intentions` grants intentions `read` when its
   policy is read or write, and `deny` otherwise.
4. `mesh` falls back to `operator` when unset. No rule at all: the default
   policy decides, except `acl`, which only an explicit rule grants (the
   default `allow` never lets a token manage tokens).
A decision is a value: `Decision(allowed, reason)`, never an exception.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gossamer.agent.acl.rules import Access, Rule, Rules, parse_rules

# Consul's builtin global-management policy, with its well-known ID.
MANAGEMENT_POLICY_ID = "00000000-0000-0000-0000-000000000001"
MANAGEMENT_RULES = parse_rules(
    """
acl = "write"
operator = "write"
mesh = "write"
keyring = "write"
peering = "write"
agent_prefix "" { policy = "write" }
node_prefix "" { policy = "write" }
service_prefix "" { policy = "write" intentions = "write" }
key_prefix "" { policy = "write" }
session_prefix "" { policy = "write" }
event_prefix "" { policy = "write" }
query_prefix "" { policy = "write" }
"""
)
_NEEDS = {Access.READ: "read", Access.WRITE: "write", Access.LIST: "list"}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def _merge(old: Access | None, new: Access | None) -> Access | None:
    if old is None or new is None:
        return new if old is None else old
    if Access.DENY in (old, new):
        return Access.DENY
    return max(old, new)


class Authorizer:
    """Answers `allows(kind, name, need)` for the merged rules of one token."""

    def __init__(self, policies: Iterable[Rules], default_allow: bool) -> None:
        self.default_allow = default_allow
        self._exact: dict[tuple[str, str], Access] = {}
        self._prefix: dict[tuple[str, str], Access] = {}
        self._scalars: dict[str, Access] = {}
        for rules in policies:
            for rule in rules.segments:
                table = self._prefix if rule.prefix else self._exact
                self._put(table, rule.kind, rule.segment, rule.policy)
                if rule.kind == "service":
                    self._put(table, "intention", rule.segment, _intentions(rule))
            for kind, word in rules.scalars:
                merged = _merge(self._scalars.get(kind), word)
                if merged is not None:
                    self._scalars[kind] = merged

    @staticmethod
    def _put(
        table: dict[tuple[str, str], Access], kind: str, segment: str, word: Access | None
    ) -> None:
        merged = _merge(table.get((kind, segment)), word)
        if merged is not None:
            table[(kind, segment)] = merged

    def word_for(self, kind: str, name: str) -> tuple[Access | None, str]:
        """The deciding rule's word for `kind` on `name`, and a description of it."""
        if kind in ("operator", "acl", "mesh", "keyring", "peering"):
            word = self._scalars.get(kind)
            if word is None and kind == "mesh":
                return self._scalars.get("operator"), "operator rule"
            return word, f"{kind} rule"
        exact = self._exact.get((kind, name))
        if exact is not None:
            return exact, f'{kind} "{name}"'
        for end in range(len(name), -1, -1):
            word = self._prefix.get((kind, name[:end]))
            if word is not None:
                return word, f'{kind}_prefix "{name[:end]}"'
        return None, "default policy"

    def reads_all(self, kind: str) -> bool:
        """Whether every name of `kind` is readable (no rule below read, and `prefix ""` or
        the default grants it), so a read need not be filtered item by item."""
        tables = (self._exact.items(), self._prefix.items())
        if any(k == kind and word < Access.READ for table in tables for (k, _), word in table):
            return False
        base = self._prefix.get((kind, ""))
        return base >= Access.READ if base is not None else self.default_allow

    def allows(self, kind: str, name: str, need: Access) -> Decision:
        word, source = self.word_for(kind, name)
        if word is None:
            allowed = self.default_allow and kind != "acl"
            return Decision(allowed, f"default policy ({'allow' if allowed else 'deny'})")
        allowed = word != Access.DENY and word >= need
        return Decision(allowed, f"{source} grants {word.name.lower()}")


def _intentions(rule: Rule) -> Access | None:
    if rule.intentions is not None:
        return rule.intentions
    if rule.policy in (Access.READ, Access.WRITE):
        return Access.READ
    return Access.DENY if rule.policy is not None else None


def denied_message(accessor: str, kind: str, name: str, need: Access) -> str:
    """Consul's 403 text (acl/errors.go), e.g.
    `Permission denied: token with AccessorID 'a1' lacks permission 'service:write' on "web"`."""
    what = "intentions" if kind == "intention" else kind
    text = (
        f"Permission denied: token with AccessorID '{accessor}' lacks permission "
        f"'{what}:{_NEEDS.get(need, 'read')}'"
    )
    return text + (f' on "{name}"' if name else "")
