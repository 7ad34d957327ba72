"""The plan of making the agent's intentions those of a policy file. Pure: no I/O.

`plan` is the difference between what a file wants and what the agent holds:
each pair of the file is created, updated (action, permissions, description
or meta differ) or unchanged; a pair only on the agent is deleted with
`prune`, else kept and listed. ID, timestamps and indexes are the agent's and
never compared. Steps come in the order they are applied: creates and
updates in evaluation order, then deletes. `gossamer intention apply` and
the terminal UI both show and apply this plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gossamer.intentions.codec import intention_to_json
from gossamer.intentions.model import Intention

_WRITE_FIELDS = ("Description", "Action", "Permissions", "Meta")
SYMBOLS = {"create": "+", "update": "~", "delete": "-"}

Op = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class Step:
    """One write: the intention to put (create, update) or the one to delete."""

    op: Op
    intention: Intention
    changes: tuple[str, ...] = ()  # for an update: what differs, in words


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]  # in the order they are applied: creates and updates, then deletes
    unchanged: tuple[Intention, ...]
    kept: tuple[Intention, ...]  # on the agent, not in the file, and no --prune

    def count(self, op: Op) -> int:
        return sum(1 for s in self.steps if s.op == op)


def evaluation_order(ixns: Iterable[Intention]) -> list[Intention]:
    """Precedence descending, then source and destination: the API's list order."""
    return sorted(ixns, key=lambda i: (-i.precedence, i.source, i.destination))


def plan(wanted: Iterable[Intention], current: Iterable[Intention], prune: bool) -> Plan:
    """What turns `current` into `wanted` (pairs unique on both sides)."""
    have = {i.pair: i for i in current}
    want = {i.pair: i for i in wanted}
    writes: list[Step] = []
    unchanged: list[Intention] = []
    for ixn in evaluation_order(want.values()):
        old = have.get(ixn.pair)
        if old is None:
            writes.append(Step("create", ixn))
        elif changes := differences(old, ixn):
            writes.append(Step("update", ixn, changes))
        else:
            unchanged.append(ixn)
    extra = evaluation_order(i for p, i in have.items() if p not in want)
    deletes = [Step("delete", i) for i in extra] if prune else []
    return Plan(tuple(writes + deletes), tuple(unchanged), () if prune else tuple(extra))


def differences(old: Intention, new: Intention) -> tuple[str, ...]:
    """What differs between two intentions of one pair, in words; () when nothing does."""
    out: list[str] = []
    if old.permissions != new.permissions or (not new.permissions and old.action != new.action):
        before, after = action_label(old), action_label(new)
        out.append(f"{before} → {after}" if before != after else "permissions changed")
    if old.description != new.description:
        out.append(f"description {old.description!r} → {new.description!r}")
    if dict(old.meta) != dict(new.meta):
        out.append(f"meta {_meta_text(old.meta)} → {_meta_text(new.meta)}")
    return tuple(out)


def action_label(ixn: Intention) -> str:
    """`allow`, `deny` or `2 permissions`."""
    if ixn.permissions:
        n = len(ixn.permissions)
        return f"{n} permission" + ("" if n == 1 else "s")
    return str(ixn.action)


def _meta_text(meta: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(meta.items())) + "}"


def write_body(ixn: Intention) -> dict[str, Any]:
    """The `PUT /exact` body: what a write sets (the pair goes in the query)."""
    full = intention_to_json(ixn)
    return {k: full[k] for k in _WRITE_FIELDS if k in full}
