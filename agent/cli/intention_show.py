"""`gossamer intention get|list|match`: intentions as the agent holds them.

Tables list intentions in evaluation order (as the API does): source,
destination, action — or the number of L7 permissions — precedence and when
it was last written. `get` names one intention by SRC DST or by ID and shows
every field, each permission spelled out. `--json` prints the API's JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import urlencode

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gossamer.agent.cli.client import AgentClient, ApiError, UsageError, path_segment
from gossamer.agent.cli.intention_apply import action_text, exact_path
from gossamer.intentions.codec import intention_from_json
from gossamer.intentions.model import HeaderMatch, Intention, Permission
from gossamer.intentions.validate import validate


def service_arg(name: str, what: str) -> str:
    """A service name from the command line (or `*`); UsageError naming the argument."""
    if "/" in name:  # `default/web`: the agent decides on namespaces
        return name
    problems = [p for p in validate(Intention(name, "x", "allow")) if p.field == "SourceName"]
    if problems:
        raise UsageError(f"{what}: {problems[0].message}")
    return name


def target(args: argparse.Namespace) -> tuple[str, str]:
    """The API path of the intention named by SRC DST or ID, and how to call it."""
    if args.second is None:
        return f"/v1/connect/intentions/{path_segment(args.first)}", f"ID {args.first}"
    src, dst = service_arg(args.first, "SRC"), service_arg(args.second, "DST")
    return exact_path(src, dst), f"{src} => {dst}"


def fetch(client: AgentClient, path: str, what: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = client.get(path)
    except ApiError as exc:
        if exc.status != 404:
            raise
        print(f"Error: no intention {what}", file=sys.stderr)
        return None
    return found


def get(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    path, what = target(args)
    found = fetch(client, path, what)
    if found is None:
        return 1
    if args.json:
        console.print_json(json.dumps(found))
        return 0
    ixn = intention_from_json(found)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: list[tuple[str, str | Text]] = [
        ("Source", ixn.source),
        ("Destination", ixn.destination),
        ("Action", action_text(ixn)),
        ("ID", ixn.id),
        ("Precedence", str(found.get("Precedence", ixn.precedence))),
        ("Description", ixn.description),
        ("Meta", ", ".join(f"{k}={v}" for k, v in sorted(ixn.meta.items()))),
        ("Created At", ixn.created_at),
        ("Updated At", ixn.updated_at),
    ]
    for label, value in rows:
        grid.add_row(label, value)
    for i, perm in enumerate(ixn.permissions, 1):
        grid.add_row(f"Permission {i}", describe_permission(perm))
    console.print(grid)
    return 0


def describe_permission(perm: Permission) -> Text:
    """`deny  path prefix /admin, methods GET|POST, header x-debug present`."""
    text = Text(perm.action, style="green" if perm.action == "allow" else "red")
    http = perm.http
    if http is None:
        return text
    parts = []
    for label, value in (("path", http.path_exact), ("path prefix", http.path_prefix),
                         ("path regex", http.path_regex)):  # fmt: skip
        if value:
            parts.append(f"{label} {value}")
    if http.methods:
        parts.append("methods " + "|".join(http.methods))
    parts += [_describe_header(h) for h in http.headers]
    return text.append("  " + ", ".join(parts))


def _describe_header(h: HeaderMatch) -> str:
    if h.present:
        cond = "present"
    else:
        kinds = (("exact", h.exact), ("prefix", h.prefix), ("suffix", h.suffix),
                 ("contains", h.contains), ("regex", h.regex))  # fmt: skip
        cond = next(f"{kind} {value!r}" for kind, value in kinds if value)
    case = " ignoring case" if h.ignore_case else ""
    return f"header {h.name} {'not ' if h.invert else ''}{cond}{case}"


# --- list and match --------------------------------------------------------------------------


def _table(rows: list[dict[str, Any]], console: Console, numbered: bool = False) -> None:
    table = Table(box=None, header_style="bold")
    columns = ["#"] if numbered else []
    for col in [*columns, "Source", "Destination", "Action", "Precedence", "Updated"]:
        table.add_column(col)
    for n, row in enumerate(rows, 1):
        ixn = intention_from_json(row)
        cells: list[str | Text] = [str(n)] if numbered else []
        cells += [
            ixn.source,
            ixn.destination,
            action_text(ixn),
            str(row.get("Precedence", ixn.precedence)),
            ixn.updated_at,
        ]
        table.add_row(*cells)
    console.print(table)


def list_intentions(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    query = "?" + urlencode({"filter": args.filter}) if args.filter else ""
    rows: list[dict[str, Any]] = client.get(f"/v1/connect/intentions{query}") or []
    if args.json:
        console.print_json(json.dumps(rows))
        return 0
    if not rows:
        print("No intentions" + (" match the filter" if args.filter else ""), file=sys.stderr)
        return 0
    _table(rows, console)
    return 0


def match(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    given = [f for f in (args.source, args.destination) if f is not None]
    if len(given) + (args.name is not None) != 1:
        raise UsageError("give a service: DST, --destination DST or --source SRC (not both)")
    by = "source" if args.source is not None else "destination"
    name = given[0] if given else args.name
    name = service_arg(name, "DST" if args.name is not None else f"--{by}")
    answer = client.get("/v1/connect/intentions/match?" + urlencode({"by": by, "name": name}))
    if args.json:
        console.print_json(json.dumps(answer))
        return 0
    rows: list[dict[str, Any]] = answer.get(name) or []
    if not rows:
        print(f"No intentions match {by} {name}", file=sys.stderr)
        return 0
    _table(rows, console, numbered=True)
    return 0
