"""`gossamer intention history [SRC DST]`: the agent's audit trail of intention changes.

Newest first, one line per change: when, the node that wrote it, the
operation (`+` create, `~` update, `-` delete), the pair and what changed
(the same lines the terminal UI's history shows). `--json` prints the API's.
"""

from __future__ import annotations

import argparse
import json
from urllib.parse import urlencode

from rich.console import Console

from gossamer.agent.cli.client import AgentClient, UsageError
from gossamer.agent.cli.intention_show import service_arg
from gossamer.agent.cli.services import VerbParsers
from gossamer.intentions.tui.history import history_lines


def add_history_parser(verbs: VerbParsers) -> None:
    v = verbs.add_parser("history", help="the changes the agent kept, newest first")
    v.add_argument("source", nargs="?", metavar="SRC", help="only this pair's changes")
    v.add_argument("destination", nargs="?", metavar="DST")
    v.add_argument("--json", action="store_true", help="print the API's JSON")
    v.set_defaults(run=history)


def history(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    if (args.source is None) != (args.destination is None):
        raise UsageError("give both SRC and DST, or neither")
    query = ""
    if args.source is not None:
        pair = {
            "source": service_arg(args.source, "SRC"),
            "destination": service_arg(args.destination, "DST"),
        }
        query = "?" + urlencode(pair)
    records = client.get("/v1/connect/intentions/history" + query) or []
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    lines = history_lines(records)
    for line in lines:
        console.print(line, markup=False)
    if not lines:
        console.print("No changes kept.")
    return 0
