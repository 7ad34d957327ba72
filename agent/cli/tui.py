"""`gossamer tui [--read-only]`: start the terminal UI against the agent every client command picks.

A thin entry: the address comes from client.py's rules (`--http-addr`,
`GOSSAMER_HTTP_ADDR`, `CONSUL_HTTP_ADDR`); policy files are read by
intention_files.py, the reader of `gossamer intention apply`, handed to the
UI so both read files the same way. The UI itself lives in intentions/tui/.
"""

from __future__ import annotations

import argparse

from rich.console import Console

from gossamer.agent.cli.client import AgentClient, UsageError
from gossamer.agent.cli.intention_files import PolicyError, load_policy
from gossamer.intentions.model import Intention
from gossamer.intentions.tui.plan_view import PolicyProblems


def read_policy_file(path: str) -> list[Intention]:
    """The intentions of a policy file; PolicyProblems listing every problem with its place."""
    try:
        return [located.intention for located in load_policy(path)]
    except PolicyError as exc:
        raise PolicyProblems(exc.lines) from None
    except UsageError as exc:
        raise PolicyProblems([str(exc)]) from None


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tui = sub.add_parser("tui", help="the terminal UI for intentions (live list, edit, check)")
    tui.add_argument("--read-only", action="store_true", help="hide and refuse every write")
    tui.set_defaults(run=run_tui)


def run_tui(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    from gossamer.intentions.tui.app import IntentionsApp
    from gossamer.intentions.tui.client import AgentApi

    api = AgentApi(client.base_url, client.token, ssl_context=client.context)
    IntentionsApp(
        client.base_url, read_only=args.read_only, load_policy=read_policy_file, api=api,
    ).run()  # fmt: skip
    return 0
