"""`gossamer members|join|leave|force-leave|reload`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gossamer.agent.cli.client import AgentClient, path_segment
from gossamer.gossip.addresses import format_host_port
from gossamer.gossip.tags import TAG_BUILD, TAG_DATACENTER, TAG_NODE_ID

STATUS_NAMES = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}
STATUS_STYLES = {"alive": "green", "leaving": "yellow", "left": "dim", "failed": "red"}
IDENTITY_STYLES = {"valid": "green", "not-enrolled": "yellow"}  # anything else: red


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("members", help="list the members of the gossip ring")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.add_argument("--status", help="only members with this status (alive, left, failed...)")
    p.set_defaults(run=members)
    p = sub.add_parser("join", help="ask the agent to join a cluster through an address")
    p.add_argument("address", nargs="+", help="host or host:port of a member (serf port)")
    p.set_defaults(run=join)
    p = sub.add_parser("leave", help="make the agent leave the cluster gracefully and stop")
    p.set_defaults(run=leave)
    p = sub.add_parser("force-leave", help="mark a failed member as left")
    p.add_argument("node", help="the member's node name")
    p.add_argument("--prune", action="store_true", help="remove it from the list entirely")
    p.set_defaults(run=force_leave)
    p = sub.add_parser("reload", help="reload the agent's configuration files")
    p.set_defaults(run=reload)


def members(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    rows: list[dict[str, Any]] = client.get("/v1/agent/members")
    if args.status:
        rows = [r for r in rows if STATUS_NAMES.get(r["Status"]) == args.status]
    if args.json:
        console.print_json(json.dumps(rows))
        return 0
    identities = _identities(client)
    table = Table(box=None, header_style="bold")
    for col in ("Node", "Address", "Status", "Identity", "DC", "Build", "ID"):
        table.add_column(col)
    for r in rows:
        status = STATUS_NAMES.get(r["Status"], str(r["Status"]))
        tags = r.get("Tags") or {}
        table.add_row(  # (escaped: Rich would take `[fd00::2]` for a style tag and drop it)
            escape(r["Name"]),
            escape(format_host_port(r["Addr"], r["Port"])),
            f"[{STATUS_STYLES.get(status, '')}]{status}[/]",
            _identity_cell(identities.get(r["Name"])),
            tags.get(TAG_DATACENTER, ""),
            tags.get(TAG_BUILD, ""),
            tags.get(TAG_NODE_ID, ""),
        )
    console.print(table)
    return 0


def _identities(client: AgentClient) -> dict[str, Any]:
    """Each member's RPC identity as this agent sees it (`Gossamer.Identity.Peers`)."""
    info = client.get("/v1/agent/self")
    peers = info.get("Gossamer", {}).get("Identity", {}).get("Peers", {})
    return peers if isinstance(peers, dict) else {}


def _identity_cell(peer: Any) -> str:
    """The cell: `valid until <date>`, or the state (red unless merely not enrolled yet)."""
    if not isinstance(peer, dict):
        return ""
    state = str(peer.get("State", ""))
    style = IDENTITY_STYLES.get(state, "red")
    text = state
    if state == "valid" and peer.get("NotAfter"):
        text = f"valid until {str(peer['NotAfter'])[:10]}"
    return f"[{style}]{text}[/]"


def join(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    for address in args.address:
        client.put(f"/v1/agent/join/{path_segment(address)}")
        console.print(f"joined {address}", markup=False)
    return 0


def leave(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    client.put("/v1/agent/leave")
    console.print("graceful leave complete; the agent is stopping")
    return 0


def force_leave(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    query = "?prune" if args.prune else ""
    client.put(f"/v1/agent/force-leave/{path_segment(args.node)}{query}")
    said = f"{args.node} marked as left" + (" and pruned" if args.prune else "")
    console.print(said, markup=False)
    return 0


def reload(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    client.put("/v1/agent/reload")
    console.print("configuration reload triggered")
    return 0
