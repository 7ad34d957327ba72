"""`gossamer catalog services|nodes|service`: the replicated catalog as tables.

Read-only, through the catalog and health API of any agent (each holds the
whole catalog of its datacenter). Health is the aggregate of the checks the
way Consul computes it: any critical → critical, else any warning → warning,
else passing. `--json` prints the API's JSON instead of a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gossamer.agent.cli.client import AgentClient, path_segment
from gossamer.agent.cli.services import VerbParsers
from gossamer.catalog.severity import SEVERITY

HEALTH_STYLES = {"passing": "green", "warning": "yellow", "critical": "red"}
_RANK = SEVERITY


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("catalog", help="list the services and nodes in the catalog")
    verbs = VerbParsers(p)
    v = verbs.add_parser("services", help="list service names")
    v.add_argument("--tags", "-tags", action="store_true", help="show each service's tags")
    v.add_argument("--node", "-node", help="only services on this node")
    v.add_argument("--json", action="store_true", help="print the API's JSON")
    v.set_defaults(run=services)
    v = verbs.add_parser("nodes", help="list nodes with their health")
    v.add_argument("--service", "-service", help="only nodes providing this service")
    v.add_argument("--detailed", "-detailed", action="store_true", help="full IDs, addresses, meta")
    v.add_argument("--json", action="store_true", help="print the API's JSON")
    v.set_defaults(run=nodes)
    v = verbs.add_parser("service", help="list a service's instances with their health")
    v.add_argument("name", help="service name")
    v.add_argument(
        "--tag", "-tag", action="append", default=[], help="only instances with this tag "
        "(repeatable: all must match)",
    )  # fmt: skip
    v.add_argument(
        "--json", action="store_true", help="print /v1/health/service/NAME's JSON (node, "
        "service and checks of each instance)",
    )  # fmt: skip
    v.set_defaults(run=service)


def aggregate(statuses: Iterable[str]) -> str:
    """Consul's aggregated status: the worst of the checks; passing with none."""
    return max(statuses, key=lambda s: _RANK.get(s, 2), default="passing")


def health_text(status: str) -> Text:
    return Text(status, style=HEALTH_STYLES.get(status, "red"))


def join_host_port(host: str, port: int) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def _pairs(mapping: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((mapping or {}).items()))


def services(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    if args.node:
        record = client.get(f"/v1/catalog/node/{path_segment(args.node)}")
        if record is None:
            print(f"Error: no node named {args.node!r} in the catalog", file=sys.stderr)
            return 1
        if args.json:
            console.print_json(json.dumps(record))
            return 0
        tags: dict[str, set[str]] = {}
        for svc in (record.get("Services") or {}).values():
            tags.setdefault(svc["Service"], set()).update(svc.get("Tags") or [])
        by_name = {name: sorted(t) for name, t in tags.items()}
    else:
        by_name = client.get("/v1/catalog/services")
        if args.json:
            console.print_json(json.dumps(by_name))
            return 0
    table = Table(box=None, header_style="bold")
    table.add_column("Service")
    if args.tags:
        table.add_column("Tags")
    for name in sorted(by_name):
        row = [Text(name)]
        if args.tags:
            row.append(Text(", ".join(sorted(by_name[name] or []))))
        table.add_row(*row)
    console.print(table)
    return 0


def nodes(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    rows: list[dict[str, Any]] = client.get("/v1/catalog/nodes")
    if args.service:
        instances = client.get(f"/v1/catalog/service/{path_segment(args.service)}")
        providing = {i["Node"] for i in instances}
        rows = [r for r in rows if r["Node"] in providing]
    if args.json:
        console.print_json(json.dumps(rows))
        return 0
    if not rows:
        print("No nodes match the given query", file=sys.stderr)
        return 0
    node_checks: dict[str, list[str]] = {}
    for check in client.get("/v1/health/state/any"):
        if not check.get("ServiceID"):
            node_checks.setdefault(check["Node"], []).append(check["Status"])
    table = Table(box=None, header_style="bold")
    columns = ["Node", "ID", "Address", "DC", "Health"]
    if args.detailed:
        columns += ["TaggedAddresses", "Meta"]
    for col in columns:
        table.add_column(col)
    for r in sorted(rows, key=lambda r: r["Node"]):
        node_id = r.get("ID") or ""
        row = [
            Text(r["Node"]),
            Text(node_id if args.detailed else node_id[:8]),
            Text(r.get("Address") or ""),
            Text(r.get("Datacenter") or ""),
            health_text(aggregate(node_checks.get(r["Node"], []))),
        ]
        if args.detailed:
            row += [Text(_pairs(r.get("TaggedAddresses"))), Text(_pairs(r.get("Meta")))]
        table.add_row(*row)
    console.print(table)
    return 0


def service(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    query = "?" + urlencode([("tag", t) for t in args.tag]) if args.tag else ""
    entries: list[dict[str, Any]] = client.get(
        f"/v1/health/service/{path_segment(args.name)}{query}"
    )
    if args.json:
        console.print_json(json.dumps(entries))
        return 0
    if not entries:
        print(f"No instances of service {args.name!r} match the given query", file=sys.stderr)
        return 0
    table = Table(box=None, header_style="bold")
    for col in ("Node", "Address", "ID", "Tags", "Health", "Checks"):
        table.add_column(col)
    entries.sort(key=lambda e: (e["Node"]["Node"], e["Service"]["ID"]))
    for entry in entries:
        node, svc, checks = entry["Node"], entry["Service"], entry.get("Checks") or []
        address = svc.get("Address") or node.get("Address") or ""
        names = Text(", ").join(
            Text(c.get("Name") or c["CheckID"], style=HEALTH_STYLES.get(c["Status"], "red"))
            for c in checks
        )
        table.add_row(
            Text(node["Node"]),
            Text(join_host_port(address, int(svc.get("Port") or 0))),
            Text(svc["ID"]),
            Text(", ".join(svc.get("Tags") or [])),
            health_text(aggregate(c["Status"] for c in checks)),
            names,
        )
    console.print(table)
    return 0
