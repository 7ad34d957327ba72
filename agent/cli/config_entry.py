"""`gossamer config write|read|list|delete`: config entries, like `consul config`.

Everything goes through the agent's `/v1/config` API. `write FILE` (or `-`
for stdin) reads one entry, JSON or HCL as Consul's files are written
(config_hcl.py), and checks it with the agent's own reader
(catalog/config_entries.py; a `service-intentions` entry with the
intentions' reader, intentions/config_entry.py) first, so a bad entry is
exit 2 naming the file and every field at fault (or every HCL syntax
problem with its line) before anything is sent.
Exit codes: 0 ok; 1 the agent failed or refused (`-cas` did not match, no
such entry); 2 bad input (flags, the file, any 400 from the agent).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from gossamer.agent.cli.client import AgentClient, ApiError, path_segment
from gossamer.agent.cli.config_hcl import read_entry_hcl
from gossamer.agent.cli.services import VerbParsers
from gossamer.catalog.config_entries import ConfigEntryError, entry_name, kind_param, read_entry
from gossamer.intentions.config_entry import KIND as INTENTIONS_KIND
from gossamer.intentions.config_entry import config_entry_from_json, is_config_entry

EXIT_BAD_INPUT = 2


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    noun = sub.add_parser("config", help="write, read, list and delete config entries")
    verbs = VerbParsers(noun)
    p = verbs.add_parser("write", help="write a config entry from a JSON or HCL file (- for stdin)")
    p.add_argument("file", metavar="FILE", help="the entry as JSON or HCL, or - for stdin")
    _cas_flags(p)
    p.set_defaults(run=config_write)
    for name, run, what in (
        ("read", config_read, "print a config entry as JSON"),
        ("delete", config_delete, "delete a config entry"),
    ):
        p = verbs.add_parser(name, help=what)
        _kind_flag(p)
        p.add_argument("-name", "--name", required=True, help="the entry's name")
        if name == "delete":
            _cas_flags(p)
        p.set_defaults(run=run)
    p = verbs.add_parser("list", help="list the names of a kind's entries")
    _kind_flag(p)
    p.set_defaults(run=config_list)


def _kind_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-kind",
        "--kind",
        required=True,
        help="service-defaults, service-splitter, service-resolver or service-router",
    )


def _cas_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-cas", "--cas", action="store_true", help="check-and-set on -modify-index")
    p.add_argument(
        "-modify-index", "--modify-index", type=int, default=0, metavar="N",
        help="with -cas: the ModifyIndex the entry must still have (0: none held)",
    )  # fmt: skip


def _query(args: argparse.Namespace) -> str:
    return f"?cas={args.modify_index}" if args.cas else ""


def _bad(console: Console, message: str) -> int:
    console.print(f"Error: {message}", style="red", markup=False)
    return EXIT_BAD_INPUT


def _refused(exc: ApiError, console: Console, doing: str) -> int:
    console.print(f"Error {doing}: {exc}", style="red", markup=False)
    return EXIT_BAD_INPUT if exc.status == 400 else 1


def _load(name: str) -> Any:
    """The entry in FILE or stdin, JSON or HCL; ValueError saying what is wrong with it."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
    except OSError as exc:
        raise ValueError(f"cannot read it: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith(("{", "[")):
            raise ValueError(f"not valid JSON: {exc}") from None
    return read_entry_hcl(text)  # HclError (a ValueError) lists every problem


def config_write(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    shown = "stdin" if args.file == "-" else args.file
    try:
        entry = _checked(_load(args.file))
    except ValueError as exc:  # ConfigEntryError too: every field at fault, with the file
        return _bad(console, f"{shown}: {exc}")
    try:
        written = client.put("/v1/config" + _query(args), entry)
    except ApiError as exc:
        return _refused(exc, console, "writing the config entry")
    where = f"{kind_of(entry)}/{entry.get('Name') or entry.get('name', '')}"
    if written is not True:
        console.print(f"Config entry not written: {where} (-cas: ModifyIndex changed)")
        return 1
    console.print(f"Config entry written: {where}", markup=False)
    return 0


def _checked(body: Any) -> dict[str, Any]:
    """The entry to send, checked as the agent will check it; ValueError listing problems.
    A `service-intentions` entry is the intentions' (intentions/config_entry.py)."""
    if is_config_entry(body):
        config_entry_from_json(body)  # IntentionError (a ValueError): every field at fault
        return dict(body)
    return read_entry(body)


def kind_of(entry: dict[str, Any]) -> str:
    return INTENTIONS_KIND if is_config_entry(entry) else str(entry["Kind"])


def _kind(raw: object, field: str) -> str:
    if isinstance(raw, str) and raw.lower() == INTENTIONS_KIND:  # served as intentions
        return INTENTIONS_KIND
    return kind_param(raw, field)


def _kind_name(args: argparse.Namespace) -> tuple[str, str]:
    return _kind(args.kind, "-kind"), entry_name(args.name, "-name")


def config_read(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    try:
        kind, name = _kind_name(args)
    except ConfigEntryError as exc:
        return _bad(console, str(exc))
    try:
        entry = client.get(f"/v1/config/{kind}/{path_segment(name)}")
    except ApiError as exc:
        return _refused(exc, console, "reading the config entry")
    console.print(json.dumps(entry, indent=4, sort_keys=True), markup=False, highlight=False)
    return 0


def config_list(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    try:
        kind = _kind(args.kind, "-kind")
    except ConfigEntryError as exc:
        return _bad(console, str(exc))
    try:
        entries = client.get(f"/v1/config/{kind}") or []
    except ApiError as exc:
        return _refused(exc, console, "listing config entries")
    for entry in entries:
        console.print(entry.get("Name", ""), markup=False, highlight=False)
    return 0


def config_delete(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    try:
        kind, name = _kind_name(args)
    except ConfigEntryError as exc:
        return _bad(console, str(exc))
    try:
        done = client.request("DELETE", f"/v1/config/{kind}/{path_segment(name)}{_query(args)}")
    except ApiError as exc:
        return _refused(exc, console, "deleting the config entry")
    if args.cas and done is not True:
        console.print(f"Config entry not deleted: {kind}/{name} (-cas: ModifyIndex changed)")
        return 1
    console.print(f"Config entry deleted: {kind}/{name}", markup=False)
    return 0
