"""`gossamer keygen` and `gossamer keyring`."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from gossamer.agent.cli.client import AgentClient, UsageError
from gossamer.gossip.keyring import InvalidKeyError, generate_key, validate_key


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("keygen", help="print a new gossip encryption key")
    p.set_defaults(run=keygen, needs_agent=False)
    p = sub.add_parser("keyring", help="list, install, use or remove gossip keys cluster-wide")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--list", action="store_true", help="list keys and how many nodes hold each")
    group.add_argument("--install", metavar="KEY", help="install a new key on every node")
    group.add_argument("--use", metavar="KEY", help="make an installed key the primary one")
    group.add_argument("--remove", metavar="KEY", help="remove a key from every node")
    p.set_defaults(run=keyring)


def keygen(args: argparse.Namespace, client: AgentClient | None, console: Console) -> int:
    print(generate_key())
    return 0


def keyring(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    if args.list:
        for pool in client.get("/v1/operator/keyring"):
            table = Table(title=f"gossip keys in {pool['Datacenter']}", box=None)
            table.add_column("Key")
            table.add_column("Nodes")
            for key, count in sorted(pool["Keys"].items()):
                table.add_row(key, f"{count}/{pool['NumNodes']}")
            console.print(table)
        return 0
    method, key, verb = _operation(args)
    try:
        validate_key(key)
    except InvalidKeyError as exc:
        raise UsageError(f"key {key!r}: {exc}") from None
    client.request(method, "/v1/operator/keyring", {"Key": key})
    console.print(f"{verb} key on every node")
    return 0


def _operation(args: argparse.Namespace) -> tuple[str, str, str]:
    if args.install:
        return "POST", args.install, "installed"
    if args.use:
        return "PUT", args.use, "now using the"
    return "DELETE", args.remove, "removed"
