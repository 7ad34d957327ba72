"""`gossamer intention create|delete|get|list|check|match|apply`, like `consul intention`.

Everything goes through the agent's Consul API (`/v1/connect/intentions*`).
Input is checked here with the same pure validation the agent uses, so a bad
name, action or `--meta` is exit 2 before anything is sent, with every
problem listed. Exit codes: 0 ok; 1 a "no" (the pair exists already, no such
intention) or the agent failed; 2 bad input — flags, files, and any 400 from
the agent. `check` answers with its exit code: 0 allowed, 1 denied, 2 no
answer (bad input, agent unreachable or failing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from rich.console import Console
from rich.text import Text

from gossamer.agent.cli.client import AgentClient, AgentUnreachable, ApiError, UsageError
from gossamer.agent.cli.intention_apply import (
    action_text,
    apply,
    current_intentions,
    exact_path,
)
from gossamer.agent.cli.intention_denials import add_denials_parser
from gossamer.agent.cli.intention_files import (
    PolicyError,
    load_policy,
    print_policy_error,
)
from gossamer.agent.cli.intention_history import add_history_parser
from gossamer.agent.cli.intention_show import (
    fetch,
    get,
    list_intentions,
    match,
    service_arg,
    target,
)
from gossamer.agent.cli.services import VerbParsers, parse_meta
from gossamer.intentions.model import Intention
from gossamer.intentions.plan import write_body
from gossamer.intentions.validate import validate

EXIT_INPUT = 2
Command = Callable[[argparse.Namespace, AgentClient, Console], int]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("intention", help="create, list, check and apply intentions")
    verbs = VerbParsers(p)
    for add in (_add_create, _add_delete_get, _add_list, _add_check, _add_match, _add_apply):
        add(verbs)
    add_history_parser(verbs)
    add_denials_parser(verbs)


def _add_create(verbs: VerbParsers) -> None:
    v = verbs.add_parser(
        "create",
        help="create an intention SRC => DST, or those of files",
        description="Create an intention (default action: allow), or every intention of "
        "--file. An existing pair is an error unless --replace is given.",
    )
    v.add_argument("source", nargs="?", metavar="SRC", help="source service, or *")
    v.add_argument("destination", nargs="?", metavar="DST", help="destination service, or *")
    action = v.add_mutually_exclusive_group()
    action.add_argument("--allow", "-allow", action="store_true", help="allow (the default)")
    action.add_argument("--deny", "-deny", action="store_true", help="deny")
    v.add_argument("--replace", "-replace", action="store_true", help="replace an existing pair")
    v.add_argument("--description", "-description", default="", metavar="D")
    v.add_argument(
        "--meta", "-meta", action="append", default=[], metavar="K=V", help="metadata (repeatable)"
    )
    v.add_argument(
        "--file", "-file", dest="files", action="append", default=[], metavar="F",
        help="YAML or JSON file of intentions or service-intentions entries (repeatable)",
    )  # fmt: skip
    v.set_defaults(run=_input_errors(create))


def _add_delete_get(verbs: VerbParsers) -> None:
    for verb, what in (("delete", "delete"), ("get", "show")):
        v = verbs.add_parser(verb, help=f"{what} an intention by SRC DST or by ID")
        v.add_argument("first", metavar="SRC|ID", help="source service, or the intention's ID")
        v.add_argument("second", nargs="?", metavar="DST", help="destination service")
        if verb == "get":
            v.add_argument("--json", action="store_true", help="print the API's JSON")
        v.set_defaults(run=_input_errors(delete if verb == "delete" else get))


def _add_list(verbs: VerbParsers) -> None:
    v = verbs.add_parser("list", help="list every intention, in evaluation order")
    v.add_argument("--filter", "-filter", metavar="EXPR", help="Consul filter expression")
    v.add_argument("--json", action="store_true", help="print the API's JSON")
    v.set_defaults(run=_input_errors(list_intentions))


def _add_check(verbs: VerbParsers) -> None:
    v = verbs.add_parser(
        "check",
        help="would SRC be allowed to call DST? (exit 0 allowed, 1 denied, 2 error)",
        description="Ask the agent's decision. With --method, --path or --header the "
        "request is described and L7 permissions are evaluated; without, an L7 intention "
        "denies, as in Consul.",
    )
    v.add_argument("source", metavar="SRC")
    v.add_argument("destination", metavar="DST")
    v.add_argument("--method", metavar="M", help="HTTP method of the request (default GET)")
    v.add_argument("--path", metavar="P", help="HTTP path of the request (default /)")
    v.add_argument(
        "--header", action="append", default=[], metavar="K=V",
        help="a request header (repeatable)",
    )  # fmt: skip
    v.set_defaults(run=check)


def _add_match(verbs: VerbParsers) -> None:
    v = verbs.add_parser(
        "match", help="the intentions that apply to a service, in evaluation order"
    )
    side = v.add_mutually_exclusive_group()
    side.add_argument("--source", "-source", metavar="NAME", help="intentions from NAME")
    side.add_argument("--destination", "-destination", metavar="NAME", help="intentions to NAME")
    # `consul intention match db` (Consul's own example): a bare name is a destination.
    v.add_argument("name", nargs="?", metavar="DST", help="intentions to DST")
    v.add_argument("--json", action="store_true", help="print the API's JSON")
    v.set_defaults(run=_input_errors(match))


def _add_apply(verbs: VerbParsers) -> None:
    v = verbs.add_parser(
        "apply",
        help="make the agent's intentions those of a policy file, printing the difference",
        description="Create and update the intentions of FILE (YAML or JSON); with --prune "
        "also delete those not in it.",
    )
    v.add_argument("file", metavar="FILE", help="intentions or service-intentions entries")
    v.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    v.add_argument("--prune", action="store_true", help="delete intentions not in FILE")
    v.set_defaults(run=_input_errors(apply))


def _input_errors(command: Command) -> Command:
    """A 400 from the agent is bad input (exit 2); file problems too, listed."""

    def run(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
        try:
            return command(args, client, console)
        except ApiError as exc:
            if exc.status != 400:
                raise
            print(f"Error: {exc}", file=sys.stderr)
            return EXIT_INPUT
        except PolicyError as exc:
            print_policy_error(exc)
            return EXIT_INPUT

    return run


def _pair(ixn: Intention) -> str:
    return f"{ixn.source} => {ixn.destination}"


# --- create ----------------------------------------------------------------------------------


def create(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    wanted = _wanted_from_files(args) if args.files else [_wanted_from_flags(args)]
    held = {i.pair: i for i in current_intentions(client)}
    if not args.replace:
        taken = [held[i.pair] for i in wanted if i.pair in held]
        for old in taken:
            print(f"Error: an intention {old.summary()} exists already; "
                  "use --replace to replace it", file=sys.stderr)  # fmt: skip
        if taken:
            return 1
    for ixn in wanted:
        if args.replace:
            client.put(exact_path(*ixn.pair), write_body(ixn))
        else:
            try:  # POST refuses a pair created since the list was read
                client.request("POST", "/v1/connect/intentions", _create_body(ixn))
            except ApiError as exc:
                if exc.status != 409:
                    raise
                print(f"Error: {exc}; use --replace to replace it", file=sys.stderr)
                return 1
        verb = "Replaced" if ixn.pair in held else "Created"
        console.print(Text(f"{verb}: {_pair(ixn)} (").append_text(action_text(ixn)).append(")"))
    return 0


def _wanted_from_files(args: argparse.Namespace) -> list[Intention]:
    """`create --file F...`: every intention of the files, each pair at most once."""
    if args.source or args.destination:
        raise UsageError("give SRC DST or --file, not both")
    if args.allow or args.deny or args.description or args.meta:
        raise UsageError("--allow, --deny, --description and --meta apply to SRC DST, "
                         "not to --file (the file says what each intention is)")  # fmt: skip
    wanted = [loc.intention for path in args.files for loc in load_policy(path)]
    seen: set[tuple[str, str]] = set()
    for ixn in wanted:
        if ixn.pair in seen:
            raise UsageError(f"{_pair(ixn)} is given in more than one file")
        seen.add(ixn.pair)
    return wanted


def _wanted_from_flags(args: argparse.Namespace) -> Intention:
    """`create SRC DST [--deny] ...`: the one intention, checked as the agent would."""
    if not (args.source and args.destination):
        raise UsageError("give SRC and DST, or --file F")
    ixn = Intention(
        service_arg(args.source, "SRC"),
        service_arg(args.destination, "DST"),
        action="deny" if args.deny else "allow",
        description=args.description,
        meta=parse_meta(args.meta),
    )
    problems = [str(p) for p in validate(ixn)]
    if problems:
        raise PolicyError(problems)
    return ixn


def _create_body(ixn: Intention) -> dict[str, Any]:
    return {"SourceName": ixn.source, "DestinationName": ixn.destination, **write_body(ixn)}


def delete(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    path, what = target(args)
    found = fetch(client, path, what)
    if found is None:
        return 1
    client.request("DELETE", path)
    console.print(f"Intention deleted: {found['SourceName']} => {found['DestinationName']}")
    return 0


# --- check -----------------------------------------------------------------------------------


def check(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    """0 allowed, 1 denied, 2 anything else: a script can tell a "no" from a failure."""
    try:
        query: list[tuple[str, str]] = [
            ("source", service_arg(args.source, "SRC")),
            ("destination", service_arg(args.destination, "DST")),
        ]
        if args.method is not None:
            query.append(("method", args.method))
        if args.path is not None:
            query.append(("path", args.path))
        query += [("header", header_arg(h)) for h in args.header]
        answer = client.get("/v1/connect/intentions/check?" + urlencode(query))
    except (AgentUnreachable, ApiError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    allowed = bool(answer.get("Allowed"))
    text = Text("Allowed" if allowed else "Denied", style="green" if allowed else "red")
    if answer.get("Reason"):
        text.append(f": {answer['Reason']}")
    console.print(text)
    return 0 if allowed else 1


def header_arg(raw: str) -> str:
    """`--header Name=Value` (or `Name:Value`) as the API's `header=Name:Value`."""
    cut = min((i for i in (raw.find("="), raw.find(":", 1)) if i > 0), default=-1)
    if cut < 0:
        raise UsageError(f"--header {raw!r}: expected NAME=VALUE")
    return f"{raw[:cut].strip()}:{raw[cut + 1 :].strip()}"
