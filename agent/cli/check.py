"""`gossamer check [--pre] [--json]`: the host, the agent and its mesh, one line per check.

Exit codes: 0 nothing failed (warnings allowed), 1 a check failed, 2 usage or
config error. `--pre` takes the agent's own config flags and files and checks
what can be checked before the agent starts; without it, the agent at
--http-addr is asked.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from gossamer.agent.cli.client import AgentClient, client_from_args
from gossamer.agent.config import ConfigError, add_agent_flags, load_agent_config
from gossamer.agent.preflight.agent_probe import API_TIMEOUT_S
from gossamer.agent.preflight.render import json_text, text_lines
from gossamer.agent.preflight.result import exit_code
from gossamer.agent.preflight.run import live_checks, pre_checks

EXIT_CONFIG = 2


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="check the host, the agent and the mesh (as linkerd check)")
    p.add_argument(
        "--pre",
        action="store_true",
        help="checks that make sense before the agent starts, from its config flags",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_agent_flags(p)
    p.set_defaults(run=check, needs_agent=False)


def check(args: argparse.Namespace, client: AgentClient | None, console: Console) -> int:
    if args.pre:
        try:
            config = load_agent_config(args)
        except ConfigError as exc:
            for problem in exc.problems:
                print(f"gossamer check: config error: {problem}", file=sys.stderr)
            return EXIT_CONFIG
        results = pre_checks(config)
    else:
        client = client_from_args(args)
        client.timeout = API_TIMEOUT_S
        results = live_checks(client)
    if args.json:
        print(json_text(results))
    else:
        for line in text_lines(results):
            console.print(line, soft_wrap=True)
    return exit_code(results)
