"""`gossamer services register|deregister`, like `consul services ...`.

A definition comes from a YAML or JSON file (one service in Consul's shape,
or Consul's config-file wrappers `{"service": {...}}` / `{"services": [...]}`)
or from flags. The CLI only unwraps the file and sends each definition to
`PUT /v1/agent/service/register` as it is: key spelling and every field are
the agent's to validate, so the CLI and the API can never disagree. A file
that cannot be read or parsed is a usage error (exit 2) naming file, line and
column; a definition the agent rejects is exit 1 with the agent's message.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import yaml
from rich.console import Console

from gossamer.agent.cli.client import AgentClient, ApiError, UsageError, path_segment
from gossamer.agent.cli.config_hcl import HclError, read_entry_hcl

Definition = dict[str, Any]


class VerbParsers:
    """`gossamer NOUN VERB`: each verb also takes the client flags after it.

    cli.py gives NOUN's parser the client flags; repeating them on the verb
    (default suppressed, so one given before the verb is never overwritten)
    lets them go anywhere on the command line.
    """

    REPEATED = (
        ("--http-addr", "agent HTTP address, host:port or URL "
                        "(default: $GOSSAMER_HTTP_ADDR, $CONSUL_HTTP_ADDR, 127.0.0.1:8500)"),
        ("--token", "ACL token (default: $GOSSAMER_HTTP_TOKEN, $CONSUL_HTTP_TOKEN)"),
        ("--token-file", "file holding the ACL token"),
        ("--ca-file", "CA to verify an HTTPS agent (or $CONSUL_CACERT)"),
        ("--client-cert", "client certificate for verify_incoming"),
        ("--client-key", "its key"),
    )  # fmt: skip

    def __init__(self, noun: argparse.ArgumentParser) -> None:
        self._verbs = noun.add_subparsers(dest="verb", required=True, metavar="VERB")

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        verb = self._verbs.add_parser(name, **kwargs)
        for flag, what in self.REPEATED:
            verb.add_argument(flag, default=argparse.SUPPRESS, help=what)
        return verb


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("services", help="register or deregister services on the agent")
    verbs = VerbParsers(p)
    reg = verbs.add_parser(
        "register",
        help="register services from a file or from flags",
        description="Register services from a YAML/JSON definition file or from flags.",
    )
    reg.add_argument("file", nargs="?", help="YAML or JSON file with the service definition(s)")
    reg.add_argument("--name", "-name", help="service name")
    reg.add_argument("--id", "-id", help="service ID (default: the name)")
    reg.add_argument("--port", "-port", type=int, help="service port")
    reg.add_argument("--address", "-address", help="service address (default: the node's)")
    reg.add_argument(
        "--tag", "-tag", action="append", default=[], metavar="TAG", help="tag (repeatable)"
    )
    reg.add_argument(
        "--meta", "-meta", action="append", default=[], metavar="K=V", help="metadata (repeatable)"
    )
    reg.set_defaults(run=register)
    dereg = verbs.add_parser(
        "deregister",
        help="deregister services by ID or by definition file",
        description="Deregister services by ID, or the services a definition file names.",
    )
    dereg.add_argument("target", nargs="*", help="service IDs or definition files")
    dereg.add_argument("--id", "-id", dest="ids", action="append", default=[], help="service ID")
    dereg.set_defaults(run=deregister)


def register(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    flagged = args.name or args.id or args.port is not None or args.address or args.tag or args.meta
    if args.file and flagged:
        raise UsageError("give either a definition file or --name and other flags, not both")
    if args.file:
        definitions = load_definitions(args.file)
    elif args.name:
        definitions = [definition_from_flags(args)]
    else:
        raise UsageError("give a definition file or at least --name")
    for definition in definitions:
        label = _service_id(definition) or "<unnamed>"
        try:
            client.put("/v1/agent/service/register", definition)
        except ApiError as exc:
            print(f"Error: registering service {label!r}: {exc}", file=sys.stderr)
            return 1
        console.print(f"Registered service: {label}")
    return 0


def deregister(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    ids: list[str] = list(args.ids)
    for target in args.target:
        if os.path.isfile(target):
            ids.extend(_ids_in_file(target))
        else:
            ids.append(target)
    if not ids:
        raise UsageError("give a service ID, --id ID or a definition file")
    for service_id in ids:
        client.put(f"/v1/agent/service/deregister/{path_segment(service_id)}")
        console.print(f"Deregistered service: {service_id}")
    return 0


def definition_from_flags(args: argparse.Namespace) -> Definition:
    definition: Definition = {"Name": args.name}
    if args.id:
        definition["ID"] = args.id
    if args.port is not None:
        definition["Port"] = args.port
    if args.address:
        definition["Address"] = args.address
    if args.tag:
        definition["Tags"] = list(args.tag)
    if args.meta:
        definition["Meta"] = parse_meta(args.meta)
    return definition


def parse_meta(pairs: list[str]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--meta {pair!r}: expected KEY=VALUE")
        meta[key] = value
    return meta


def load_definitions(path: str) -> list[Definition]:
    """The service definitions in a file; UsageError naming file:line:col if it is bad."""
    return unwrap(path, read_document(path))


def read_document(path: str, as_text: Callable[[Any], str] = str) -> Any:
    """A YAML or JSON file as plain JSON values; UsageError if unreadable or malformed.

    YAML dates and timestamps become text through `as_text`, so they reach
    the agent as the text they were written as.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: is not UTF-8 text") from None
    return json.loads(json.dumps(parse_document(path, text), default=as_text))


def parse_document(path: str, text: str) -> Any:
    """JSON for *.json (its errors then say JSON), HCL for *.hcl (Consul's usual service
    definition files), YAML (a superset of JSON) otherwise."""
    if path.endswith(".hcl"):
        try:
            return read_entry_hcl(text)
        except HclError as exc:
            raise UsageError(f"{path}: invalid HCL: {exc}") from None
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        what = ", ".join(filter(None, (exc.context, exc.problem)))
        raise UsageError(f"{where}: invalid YAML: {what}") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise UsageError(f"{path}: invalid YAML: {exc}") from None


def _norm(key: object) -> str:
    return str(key).lower().replace("_", "")


def unwrap(path: str, data: Any) -> list[Definition]:
    """One bare definition, or the contents of Consul's `service:`/`services:` wrapper."""
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping with a service definition")
    if len(data) == 1:
        ((key, value),) = data.items()
        if _norm(key) == "service":
            many = (
                isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
            )
            if not isinstance(value, dict) and not many:
                raise UsageError(f"{path}: {key!r} must be a mapping")
            return value if many else [value]
        if _norm(key) == "services":
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise UsageError(f"{path}: {key!r} must be a list of mappings")
            if not value:
                raise UsageError(f"{path}: {key!r} is empty")
            return value
    return [data]


def _service_id(definition: Definition) -> str:
    """The ID the agent will use: ID if given, else Name (any key spelling)."""
    by_key = {_norm(k): v for k, v in definition.items()}
    for key in ("id", "name"):
        value = by_key.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _ids_in_file(path: str) -> list[str]:
    ids = []
    for definition in load_definitions(path):
        service_id = _service_id(definition)
        if not service_id:
            raise UsageError(f"{path}: a service definition has neither ID nor Name")
        ids.append(service_id)
    return ids
