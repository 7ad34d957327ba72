"""`gossamer ca init | roots | rotate | revoke-agent | leaf`: the mesh CA, over the HTTP API.

- `init [--root-cert F --private-key F]`: create the mesh's first root (the
  operator's, or a new one); refused once a root exists (rotate instead).
- `roots [--json]`: the trust bundle: each root's subject, SPIFFE ID,
  validity and whether it is active or retiring.
- `rotate [--root-cert F --private-key F]`: a new root, cross-signed by the
  old one, which stays trusted until its last leaf expires.
- `revoke-agent NODE [--reason R]`: every agent refuses chains holding
  that agent's intermediate (then rotate the secret and the root).
- `leaf SERVICE [--json]`: the service's leaf on this agent: subject, SPIFFE
  ID, serial, validity and time to renewal. `--json` prints the API's JSON.
Bad input (unreadable files, a refused root, a service not registered on
the agent) exits 2 with the reason; an agent that cannot be reached, 1.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gossamer.agent.cli.client import AgentClient, ApiError, UsageError, path_segment
from gossamer.agent.cli.services import VerbParsers
from gossamer.proxy.ca.errors import LeafRequestError
from gossamer.proxy.ca.leaf import check_service_name
from gossamer.proxy.ca.profile import uri_sans
from gossamer.proxy.ca.renewal import WINDOW_END, WINDOW_START
from gossamer.proxy.ca.verify import load_pem_chain

EXIT_BAD_INPUT = 2
CONFIG = "/v1/connect/ca/configuration"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verbs = VerbParsers(
        sub.add_parser("ca", help="the mesh CA: roots, rotation, leaf certificates")
    )
    for name, run, what in (
        ("init", ca_init, "create the mesh's first CA root (refused once one exists)"),
        ("rotate", ca_rotate, "rotate the root: a new one, cross-signed by the old"),
    ):
        p = verbs.add_parser(name, help=what)
        p.add_argument("--root-cert", type=Path, help="PEM file of your own root certificate")
        p.add_argument("--private-key", type=Path, help="PEM file of its private key")
        p.set_defaults(run=run)
    p = verbs.add_parser("revoke-agent", help="revoke an agent: its chains are refused")
    p.add_argument("node", help="the agent's node name")
    p.add_argument("--reason", default="", help="why (kept with the revocation)")
    p.set_defaults(run=ca_revoke_agent)
    p = verbs.add_parser("roots", help="show the trust bundle")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.add_argument("--pem", action="store_true",
                   help="print the trusted roots as PEM (a CA file for HTTPS)")  # fmt: skip
    p.set_defaults(run=ca_roots)
    p = verbs.add_parser("leaf", help="show a service's leaf certificate")
    p.add_argument("service", help="a service registered on the agent")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(run=ca_leaf)


def ca_init(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    return _put_config(args, client, console, {"InitOnly": True}, "created the mesh CA root")


def ca_rotate(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    extra = {} if args.root_cert else {"ForceRotate": True}
    return _put_config(args, client, console, extra, "rotated the mesh CA root")


def ca_revoke_agent(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    try:
        client.put(
            f"/v1/connect/ca/revoke-agent/{path_segment(args.node)}", {"Reason": args.reason}
        )
    except ApiError as exc:
        return _refused(exc, console)
    console.print(
        f"revoked {args.node}; now rotate the gossip key (gossamer keyring) or the join token, "
        "then the root (gossamer ca rotate)"
    )
    return 0


def ca_roots(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    body = client.get("/v1/connect/ca/roots")
    if args.pem:  # plain print: rich would wrap or colour the PEM
        print("".join(root["RootCert"] for root in body.get("Roots") or []), end="")
        return 0
    if args.json:
        console.print_json(json.dumps(body))
        return 0
    _print_roots(console, body)
    return 0


def ca_leaf(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    try:
        check_service_name("dc1", args.service)  # the name's syntax; the agent checks the rest
    except LeafRequestError as exc:
        raise UsageError(str(exc)) from None
    try:
        body = client.get(f"/v1/agent/connect/ca/leaf/{path_segment(args.service)}")
    except ApiError as exc:
        return _refused(exc, console)
    if args.json:
        console.print_json(json.dumps(body))
        return 0
    cert = load_pem_chain(body["CertPEM"])[0]
    table = _fields()
    table.add_row("Service", body["Service"])
    table.add_row("Subject", cert.subject.rfc4514_string())
    table.add_row("SPIFFE ID", body["ServiceURI"])
    table.add_row("Serial", body["SerialNumber"])
    table.add_row("Valid", _validity(cert.not_valid_before_utc, cert.not_valid_after_utc))
    table.add_row("Renewal", _renewal(cert.not_valid_before_utc, cert.not_valid_after_utc))
    table.add_row("Issuer", cert.issuer.rfc4514_string())
    console.print(table)
    return 0


def _put_config(
    args: argparse.Namespace,
    client: AgentClient,
    console: Console,
    extra: dict[str, Any],
    done: str,
) -> int:
    config = dict(client.get(CONFIG)["Config"])
    config.update(_operator_root(args))
    try:
        client.put(CONFIG, {"Provider": "consul", "Config": config, **extra})
    except ApiError as exc:
        return _refused(exc, console)
    console.print(done)
    _print_roots(console, client.get("/v1/connect/ca/roots"))
    return 0


def _operator_root(args: argparse.Namespace) -> dict[str, str]:
    """RootCert and PrivateKey from the files given (both or neither); UsageError otherwise."""
    if (args.root_cert is None) != (args.private_key is None):
        raise UsageError("--root-cert and --private-key go together")
    if args.root_cert is None:
        return {}
    out = {}
    for field, path in (("RootCert", args.root_cert), ("PrivateKey", args.private_key)):
        try:
            out[field] = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: cannot read it: {exc}") from None
    return out


def _refused(exc: ApiError, console: Console) -> int:
    """The agent refused the input (4xx): exit 2 with its reason; anything else is exit 1."""
    if 400 <= exc.status < 500:
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"Error: {exc}", markup=False)
        return EXIT_BAD_INPUT
    raise exc


def _print_roots(console: Console, body: dict[str, Any]) -> None:
    console.print(f"trust domain [bold]{body['TrustDomain'] or '(none yet)'}[/bold]")
    table = Table(box=None, header_style="bold")
    for column in ("State", "ID", "Subject", "SPIFFE ID", "Valid", "Key"):
        table.add_column(column)
    for root in body["Roots"]:
        cert = load_pem_chain(root["RootCert"])[0]
        state = "[green]active[/green]" if root["Active"] else "[yellow]retiring[/yellow]"
        table.add_row(
            state, root["ID"][:23] + "…", cert.subject.rfc4514_string(),
            ", ".join(uri_sans(cert)),
            _validity(cert.not_valid_before_utc, cert.not_valid_after_utc),
            f"{root['PrivateKeyType']} {root['PrivateKeyBits']}",
        )  # fmt: skip
    console.print(table)


def _fields() -> Table:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    return table


def _validity(start: datetime, end: datetime) -> str:
    left = end - datetime.now(UTC)
    state = f"{_span(left)} left" if left > timedelta(0) else "[red]expired[/red]"
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC ({state})"


def _renewal(start: datetime, end: datetime) -> str:
    """When the agent renews it: renewal.py's window, counted from the signing time."""
    signed = start + timedelta(minutes=1)  # NotBefore is set a minute back for skew
    life = end - signed
    now = datetime.now(UTC)
    early, late = signed + life * WINDOW_START, signed + life * WINDOW_END
    if now >= late:
        return "due now"
    return f"in {_span(max(early - now, timedelta(0)))} to {_span(late - now)}"


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400}d{seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60}s"
    return f"{seconds}s"
