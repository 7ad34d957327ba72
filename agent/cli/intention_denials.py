"""`gossamer intention denials [--source S] [--destination D]`: what the proxies denied lately.

One line per (source, destination, rule), most recently seen first: how
long ago, how many times, the pair, the rule that denied and why (the same
cells the terminal UI's denials pane shows). `--json` prints the API's.
"""

from __future__ import annotations

import argparse
import json
import time
from urllib.parse import urlencode

from rich.console import Console

from gossamer.agent.cli.client import AgentClient, ApiError
from gossamer.agent.cli.intention_show import service_arg
from gossamer.agent.cli.services import VerbParsers
from gossamer.intentions.denials import DenialError, denials_from_json
from gossamer.intentions.tui.denial_rows import cells


def add_denials_parser(verbs: VerbParsers) -> None:
    v = verbs.add_parser("denials", help="connections the proxies of this agent denied lately")
    v.add_argument("--source", help="only denials of this source service")
    v.add_argument("--destination", help="only denials of this destination service")
    v.add_argument("--json", action="store_true", help="print the API's JSON")
    v.set_defaults(run=denials)


def denials(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    query = {}
    if args.source is not None:
        query["source"] = service_arg(args.source, "--source")
    if args.destination is not None:
        query["destination"] = service_arg(args.destination, "--destination")
    raw = client.get("/v1/connect/intentions/denials" + ("?" + urlencode(query) if query else ""))
    if args.json:
        print(json.dumps(raw, indent=2))
        return 0
    try:
        rows = denials_from_json(raw or [])
    except DenialError as exc:
        raise ApiError(200, f"the agent's answer is not a list of denials: {exc}") from None
    now_ms = time.time_ns() // 1_000_000
    for d in rows:
        source, destination, rule, count, seen = cells(d, now_ms)
        line = f"{seen:>8}  {count:>6}x  {source} => {destination}  by {rule}: {d.reason}"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not rows:
        console.print("No connection denied lately.")
    return 0
