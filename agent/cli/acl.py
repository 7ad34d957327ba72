"""`gossamer acl bootstrap | token create|list|read|delete | policy create|list|read|delete`.

Output follows Consul's `consul acl` commands: one "Field: value" line
each, a blank line between items. Rules given to `policy create` are
checked here first (`--rules @file` reads a file), so a typo exits 2 naming
the file, line and column before anything is sent.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape

from gossamer.agent.acl.problems import RulesInvalid
from gossamer.agent.acl.rules import parse_rules
from gossamer.agent.cli.client import AgentClient, UsageError, path_segment


class _Leaves:
    """Nested subcommands take the client flags (--http-addr, --token) after their verb."""

    def __init__(self, sub: Any, parents: list[argparse.ArgumentParser]) -> None:
        self._sub = sub
        self._parents = parents

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._sub.add_parser(
            name, parents=self._parents, **kwargs
        )
        return parser


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    acl = sub.add_parser("acl", help="ACL tokens and policies (Consul's model)")
    parents = [p for p in [getattr(sub, "_parent", None)] if p is not None]
    kinds = _Leaves(acl.add_subparsers(dest="acl_kind", required=True, metavar="KIND"), parents)
    kinds.add_parser("bootstrap", help="create the first management token (once)").set_defaults(
        run=bootstrap
    )
    token = kinds._sub.add_parser("token", help="create, list, read or delete tokens")
    verbs = _Leaves(token.add_subparsers(dest="acl_verb", required=True, metavar="VERB"), parents)
    p = verbs.add_parser("create", help="create a token")
    p.add_argument("--description", default="")
    p.add_argument("--policy-name", action="append", default=[], help="repeatable")
    p.add_argument("--policy-id", action="append", default=[], help="repeatable")
    p.add_argument("--service-identity", action="append", default=[], type=service_identity,
                   metavar="NAME[:DC,...]", help="a sidecar's least privilege, as Consul's "
                   "(service:write on NAME and NAME-sidecar-proxy, service:read and node:read "
                   "on all); repeatable")  # fmt: skip
    p.add_argument("--local", action="store_true", help="valid in this datacenter only")
    p.add_argument("--expires-ttl", help="e.g. 1h; the token stops working after it")
    p.set_defaults(run=token_create)
    verbs.add_parser("list", help="list tokens").set_defaults(run=token_list)
    p = verbs.add_parser("read", help="show one token")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--id", help="AccessorID")
    target.add_argument("--self", action="store_true", help="the token this command sends")
    p.set_defaults(run=token_read)
    p = verbs.add_parser("delete", help="delete (revoke) a token")
    p.add_argument("--id", required=True, help="AccessorID")
    p.set_defaults(run=token_delete)
    policy = kinds._sub.add_parser("policy", help="create, list, read or delete policies")
    verbs = _Leaves(policy.add_subparsers(dest="acl_verb", required=True, metavar="VERB"), parents)
    p = verbs.add_parser("create", help="create a policy")
    p.add_argument("--name", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--rules", default="", help="HCL or JSON rules, or @FILE")
    p.set_defaults(run=policy_create)
    verbs.add_parser("list", help="list policies").set_defaults(run=policy_list)
    for verb, run in (("read", policy_read), ("delete", policy_delete)):
        p = verbs.add_parser(verb, help=f"{verb} one policy")
        target = p.add_mutually_exclusive_group(required=True)
        target.add_argument("--id")
        target.add_argument("--name")
        p.set_defaults(run=run)


def _show(console: Console, item: dict[str, Any], fields: tuple[str, ...]) -> None:
    for name in fields:
        if name not in item:
            continue
        value = item[name]
        if name == "Policies":
            console.print("Policies:")
            for link in value or []:
                console.print(f"   {escape(link['ID'])} - {escape(link['Name'])}")
            continue
        if name == "ServiceIdentities":
            console.print("Service Identities:")
            for ident in value or []:
                where = ", ".join(ident.get("Datacenters") or []) or "all"
                console.print(f"   {escape(ident['ServiceName'])} (Datacenters: {escape(where)})")
            continue
        if name == "Rules":
            console.print("Rules:")
            console.print(escape(str(value)), soft_wrap=True)
            continue
        console.print(f"{name}:{' ' * max(1, 18 - len(name))}{escape(str(value))}")


TOKEN_FIELDS = (
    "AccessorID", "SecretID", "Description", "Local", "CreateTime", "ExpirationTime", "Policies",
    "ServiceIdentities",
)  # fmt: skip
POLICY_FIELDS = ("ID", "Name", "Description", "Datacenters", "Rules")


def service_identity(text: str) -> dict[str, Any]:
    """`NAME` or `NAME:DC1,DC2`, Consul's `-service-identity` spelling (names checked by the
    agent); ArgumentTypeError for an empty name or datacenter."""
    name, colon, dcs = text.partition(":")
    datacenters = dcs.split(",") if colon else []
    if not name or not all(datacenters) or (colon and not datacenters):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME or NAME:DC1,DC2")
    return {"ServiceName": name, **({"Datacenters": datacenters} if datacenters else {})}


def bootstrap(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    _show(console, client.put("/v1/acl/bootstrap"), TOKEN_FIELDS)
    return 0


def token_create(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    links = [{"Name": n} for n in args.policy_name] + [{"ID": i} for i in args.policy_id]
    body: dict[str, Any] = {"Description": args.description, "Policies": links}
    if args.service_identity:
        body["ServiceIdentities"] = args.service_identity
    if args.local:
        body["Local"] = True
    if args.expires_ttl:
        body["ExpirationTTL"] = args.expires_ttl
    _show(console, client.put("/v1/acl/token", body), TOKEN_FIELDS)
    return 0


def token_list(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    for i, token in enumerate(client.get("/v1/acl/tokens")):
        if i:
            console.print()
        _show(console, token, TOKEN_FIELDS)
    return 0


def token_read(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    path = "/v1/acl/token/self" if args.self else f"/v1/acl/token/{path_segment(args.id)}"
    _show(console, client.get(path), TOKEN_FIELDS)
    return 0


def token_delete(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    client.request("DELETE", f"/v1/acl/token/{path_segment(args.id)}")
    console.print(f"Token {escape(args.id)} deleted")
    return 0


def _rules(text: str) -> str:
    where = "--rules"
    if text.startswith("@"):
        where = text[1:]
        try:
            with open(where, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise UsageError(f"{where}: {exc.strerror or exc}") from None
    try:
        parse_rules(text)
    except RulesInvalid as exc:
        raise UsageError("\n".join(f"{where}: {p}" for p in exc.problems)) from None
    return text


def policy_create(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    body = {"Name": args.name, "Description": args.description, "Rules": _rules(args.rules)}
    _show(console, client.put("/v1/acl/policy", body), POLICY_FIELDS)
    return 0


def policy_list(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    for i, policy in enumerate(client.get("/v1/acl/policies")):
        if i:
            console.print()
        _show(console, policy, ("ID", "Name", "Description", "Datacenters"))
    return 0


def _policy_path(args: argparse.Namespace) -> str:
    if args.name:
        return f"/v1/acl/policy/name/{path_segment(args.name)}"
    return f"/v1/acl/policy/{path_segment(args.id)}"


def policy_read(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    _show(console, client.get(_policy_path(args)), POLICY_FIELDS)
    return 0


def policy_delete(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    policy_id = args.id or client.get(_policy_path(args))["ID"]
    client.request("DELETE", f"/v1/acl/policy/{path_segment(policy_id)}")
    console.print(f"Policy {escape(args.name or args.id)} deleted")
    return 0
