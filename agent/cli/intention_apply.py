"""`gossamer intention apply FILE`: make the agent's intentions those of a policy file.

`plan` is the difference, pure: each pair of the file (intention_files.py
reads it) is created, updated (action, permissions, description or meta
differ) or unchanged; a pair only on the agent is deleted with `prune`, else
kept and listed. ID, timestamps and indexes are the agent's and never
compared. The plan is printed (`+` create, `~` update, `-` delete), then
applied unless `--dry-run`: creates and updates through `PUT
/v1/connect/intentions/exact` (an upsert by pair), then deletes through
`DELETE .../exact`. A file with any problem changes nothing (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

from rich.console import Console
from rich.text import Text

from gossamer.agent.cli.client import AgentClient, AgentUnreachable, ApiError
from gossamer.agent.cli.intention_files import load_policy, pair_text
from gossamer.intentions.codec import intention_from_json, intention_to_json
from gossamer.intentions.model import Intention
from gossamer.intentions.validate import IntentionError

ACTION_STYLES = {"allow": "green", "deny": "red"}
_WRITE_FIELDS = ("Description", "Action", "Permissions", "Meta")


# --- the plan (pure) --------------------------------------------------------------------------

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


def action_text(ixn: Intention) -> Text:
    return Text(action_label(ixn), style=ACTION_STYLES.get(action_label(ixn), "cyan"))


def _meta_text(meta: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(meta.items())) + "}"


def write_body(ixn: Intention) -> dict[str, Any]:
    """The `PUT /exact` body: what a write sets (the pair goes in the query)."""
    full = intention_to_json(ixn)
    return {k: full[k] for k in _WRITE_FIELDS if k in full}


def exact_path(source: str, destination: str) -> str:
    return "/v1/connect/intentions/exact?" + urlencode(
        {"source": source, "destination": destination}
    )


def current_intentions(client: AgentClient) -> list[Intention]:
    """Every intention the agent holds, as values."""
    rows = client.get("/v1/connect/intentions") or []
    out = []
    for row in rows:
        try:
            out.append(intention_from_json(row))
        except IntentionError as exc:
            raise ApiError(200, f"the agent sent an intention the CLI cannot read: {exc}") from None
    return out


# --- gossamer intention apply ------------------------------------------------------------------


def render_plan(result: Plan, console: Console) -> None:
    for step in result.steps:
        ixn = step.intention
        line = Text()
        if step.op == "create":
            line.append("  + ", style="green").append(pair_text(*ixn.pair)).append(" (")
            line.append_text(action_text(ixn)).append(")")
        elif step.op == "update":
            line.append("  ~ ", style="yellow").append(pair_text(*ixn.pair))
            line.append(": " + "; ".join(step.changes))
        else:
            line.append("  - ", style="red").append(pair_text(*ixn.pair)).append(" (")
            line.append_text(action_text(ixn)).append(")")
        console.print(line)
    for ixn in result.kept:
        line = Text("    ").append(pair_text(*ixn.pair)).append(" (")
        line.append_text(action_text(ixn)).append(")").append("  not in file, kept", style="dim")
        console.print(line)
    console.print(
        f"Plan: {result.count('create')} to create, {result.count('update')} to update, "
        f"{result.count('delete')} to delete, {len(result.unchanged)} unchanged"
        + (f", {len(result.kept)} not in file, kept" if result.kept else "")
    )


def apply(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    wanted = [loc.intention for loc in load_policy(args.file)]  # PolicyError: exit 2, listed
    result = plan(wanted, current_intentions(client), prune=args.prune)
    render_plan(result, console)
    if not result.steps:
        console.print("Nothing to do.")
        return 0
    if args.dry_run:
        console.print("Dry run: nothing applied.")
        return 0
    for done, step in enumerate(result.steps):
        ixn = step.intention
        try:
            if step.op == "delete":
                client.request("DELETE", exact_path(*ixn.pair))
            else:
                client.put(exact_path(*ixn.pair), write_body(ixn))
        except (ApiError, AgentUnreachable) as exc:
            symbol = {"create": "+", "update": "~", "delete": "-"}[step.op]
            print(
                f"Error: {symbol} {pair_text(*ixn.pair)}: {exc}; "
                f"{done} of {len(result.steps)} changes applied before it",
                file=sys.stderr,
            )
            return 1
    console.print(
        f"Applied: {result.count('create')} created, {result.count('update')} updated, "
        f"{result.count('delete')} deleted."
    )
    return 0
