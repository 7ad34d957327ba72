"""`gossamer intention apply FILE`: make the agent's intentions those of a policy file.

The plan is the difference, pure (intentions/plan.py, shared with the
terminal UI): each pair of the file (intention_files.py reads it) is
created, updated or unchanged; a pair only on the agent is deleted with
`--prune`, else kept and listed. The plan is printed (`+` create, `~` update, `-` delete), then
applied unless `--dry-run`: creates and updates through `PUT
/v1/connect/intentions/exact` (an upsert by pair), then deletes through
`DELETE .../exact`. A file with any problem changes nothing (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlencode

from rich.console import Console
from rich.text import Text

from gossamer.agent.cli.client import AgentClient, AgentUnreachable, ApiError
from gossamer.agent.cli.intention_files import load_policy, pair_text
from gossamer.intentions.codec import intention_from_json
from gossamer.intentions.model import Intention
from gossamer.intentions.plan import SYMBOLS, Plan, action_label, plan, write_body
from gossamer.intentions.validate import IntentionError

ACTION_STYLES = {"allow": "green", "deny": "red"}


def action_text(ixn: Intention) -> Text:
    return Text(action_label(ixn), style=ACTION_STYLES.get(action_label(ixn), "cyan"))


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
            symbol = SYMBOLS[step.op]
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
