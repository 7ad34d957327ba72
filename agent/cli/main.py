"""`gossamer` command line: the agent itself and the commands that talk to it.

Exit codes: 0 ok, 1 failure (agent down, operation failed), 2 usage (bad
flags, bad config). Client commands speak only HTTP to an agent, like any
other Consul client would.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rich.console import Console

from gossamer.agent.cli import (
    acl,
    ca,
    catalog,
    check,
    config_entry,
    connect,
    intentions,
    k8s,
    keys,
    membership,
    services,
    stat,
    tui,
)
from gossamer.agent.cli.client import (
    AgentUnreachable,
    ApiError,
    UsageError,
    client_from_args,
    refusal_hint,
)
from gossamer.agent.cli.consul_flags import long_spelling
from gossamer.agent.config import add_agent_flags
from gossamer.agent.lifecycle.version import CONSUL_COMPAT_VERSION, VERSION

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended


def version_line() -> str:
    return f"gossamer {VERSION} (Consul API {CONSUL_COMPAT_VERSION})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gossamer", description="gossamer service mesh agent and CLI"
    )
    # As `consul --version` / `consul -v`: what an upgrade checks first (also `version`).
    parser.add_argument("-v", "--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    agent = sub.add_parser("agent", help="run the gossamer agent")
    add_agent_flags(agent)
    agent.set_defaults(run=None)
    client_flags = argparse.ArgumentParser(add_help=False)
    client_flags.add_argument(
        "--http-addr",
        help="agent HTTP address, host:port or URL "
        "(default: $GOSSAMER_HTTP_ADDR, $CONSUL_HTTP_ADDR, 127.0.0.1:8500)",
    )
    client_flags.add_argument(
        "--token", help="ACL token (default: $GOSSAMER_HTTP_TOKEN, $CONSUL_HTTP_TOKEN)"
    )
    client_flags.add_argument("--token-file", help="file holding the ACL token (or $..._FILE)")
    client_flags.add_argument("--ca-file", help="CA to verify an HTTPS agent (or $CONSUL_CACERT)")
    client_flags.add_argument("--client-cert", help="client certificate for verify_incoming")
    client_flags.add_argument("--client-key", help="its key")
    client_sub = _ParentedSubparsers(sub, client_flags)
    membership.add_parsers(client_sub)  # type: ignore[arg-type]
    keys.add_parsers(client_sub)  # type: ignore[arg-type]
    services.add_parsers(client_sub)  # type: ignore[arg-type]
    catalog.add_parsers(client_sub)  # type: ignore[arg-type]
    intentions.add_parsers(client_sub)  # type: ignore[arg-type]
    ca.add_parsers(client_sub)  # type: ignore[arg-type]
    tui.add_parsers(client_sub)  # type: ignore[arg-type]
    connect.add_parsers(client_sub)  # type: ignore[arg-type]
    k8s.add_parsers(client_sub)  # type: ignore[arg-type]
    stat.add_parsers(client_sub)  # type: ignore[arg-type]
    check.add_parsers(client_sub)  # type: ignore[arg-type]
    acl.add_parsers(client_sub)  # type: ignore[arg-type]
    config_entry.add_parsers(client_sub)  # type: ignore[arg-type]
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(run=None)
    return parser


class _ParentedSubparsers:
    """Adds the shared client flags to every client subcommand."""

    def __init__(
        self,
        sub: argparse._SubParsersAction[argparse.ArgumentParser],
        parent: argparse.ArgumentParser,
    ) -> None:
        self._sub = sub
        self._parent = parent

    def add_parser(self, name: str, **kwargs: object) -> argparse.ArgumentParser:
        return self._sub.add_parser(name, parents=[self._parent], **kwargs)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    given = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(long_spelling(given, parser))
    if args.command == "agent":
        from gossamer.agent.cli.agent import run_agent

        return run_agent(args)
    if args.command == "version":
        print(version_line())
        return 0
    return _run_client_command(parser, args)


PIPED_WIDTH = 1000  # columns a table may take when its reader is not a terminal


def _console() -> Console:
    """Rich sizes its output to the terminal, and to 80 columns when there is none: piped
    (to a file, grep, a script), `gossamer stat`'s table had its headers and values cut to
    fit. Piped with no COLUMNS set, a table takes the width its cells need."""
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, width=PIPED_WIDTH if piped else None)


def _run_client_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        client = None
        if getattr(args, "needs_agent", True):
            client = client_from_args(args)
        code: int = args.run(args, client, _console())
        return code
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"gossamer {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (AgentUnreachable, ApiError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        if isinstance(exc, ApiError) and exc.status == 403:  # ACLs: which call, and the fix
            print(f"  refused: {exc.request}\n  hint: {refusal_hint(exc.reason)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C in `stat --window`, or while an agent is slow
        print(file=sys.stderr)  # past the ^C the terminal echoed
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader left (`gossamer check --json | head`)
        _stdout_to_devnull()
        return 1


def _stdout_to_devnull() -> None:
    """Python flushes stdout at exit and would print a second BrokenPipeError there."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
