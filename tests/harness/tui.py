"""An agent client with fixed answers, for the terminal UI's snapshot tests and frame bench.

Snapshots must not depend on ports, clocks or indexes, so they run the UI
against `FixedApi`: the same `AgentApi` with its one network method,
`call`, answering from fixed data. A blocking query (one that sends an
index) waits forever, as an agent whose data does not change. Every flow
that talks to a real agent is tested against real agents (test_tui_app.py).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from textual.pilot import Pilot

from gossamer.intentions.codec import intention_to_json
from gossamer.intentions.decide import IntentionSet, decide
from gossamer.intentions.denials import Denial, denial_to_json
from gossamer.intentions.model import HeaderMatch, HTTPMatch, Intention, Permission
from gossamer.intentions.tui.client import AgentApi

STAMP = "2026-12-01T09:30:00.000Z"
DEADLINE_S = 10.0  # how long `until` lets an app run before failing
INDEX = 42


async def until(pilot: Pilot[Any], check: Callable[[], Any], what: str) -> Any:
    """Let the app run until `check()` is truthy; fail after DEADLINE_S naming `what`."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        await pilot.pause(0.02)
    raise AssertionError(f"timed out after {DEADLINE_S}s waiting for {what}")


def sample_intentions() -> list[Intention]:
    l7 = (
        Permission("allow", HTTPMatch(path_prefix="/v1/orders", methods=("GET", "POST"))),
        Permission("deny", HTTPMatch(headers=(HeaderMatch("x-debug", present=True),))),
    )
    rows = [
        Intention("web", "api", "allow", description="storefront calls the API"),
        Intention("api", "db", "allow", description="only the API writes orders"),
        Intention("*", "db", "deny", description="nobody else reaches the database"),
        Intention("billing", "api", permissions=l7, description="billing: orders only"),
        Intention("batch", "*", "deny"),
        Intention("*", "*", "deny", description="default deny, written down"),
    ]
    return [_stamped(i, n) for n, i in enumerate(rows, start=1)]


def sample_denials() -> list[dict[str, Any]]:
    """Denial rows seen minutes ago (whole minutes on screen, so the picture holds still)."""
    now = time.time_ns() // 1_000_000
    rows = [
        Denial("batch", "db", "00000000-0000-4000-8000-000000000003", 8, "* => db (deny)",
               "matched deny intention", 14, now - 530_000, now - 150_000),
        Denial("web", "billing", "", 0, "default policy (deny)", "default policy is deny",
               3, now - 400_000, now - 270_000),
    ]  # fmt: skip
    return [denial_to_json(d) for d in rows]


def sample_figures() -> list[dict[str, Any]]:
    """`/v1/agent/metrics/proxies` as an agent with two sidecars answers it, one unread."""

    def edge(direction: str, source: str, destination: str, denied: int, cut: int
             ) -> dict[str, Any]:  # fmt: skip
        return {"Direction": direction, "Source": source, "Destination": destination,
                "Denied": denied, "Terminated": cut}  # fmt: skip

    return [
        {"ProxyID": "db-sidecar-proxy", "Address": "127.0.0.1:21900", "Stats": {"Proxies": [
            {"Service": "db", "UptimeSeconds": 600.0, "Edges": [
                edge("inbound", "api", "db", 0, 0), edge("inbound", "batch", "db", 14, 1),
                edge("outbound", "db", "cache", 5, 0)]}]}},
        {"ProxyID": "billing-sidecar-proxy", "Address": "127.0.0.1:21901", "Stats": {"Proxies": [
            {"Service": "billing", "UptimeSeconds": 600.0, "Edges": [
                edge("inbound", "web", "billing", 3, 0)]}]}},
        {"ProxyID": "web-sidecar-proxy", "Error": "127.0.0.1:21902: connection refused"},
    ]  # fmt: skip


def _stamped(ixn: Intention, n: int) -> Intention:
    from dataclasses import replace

    return replace(
        ixn,
        id=f"00000000-0000-4000-8000-{n:012d}",
        created_at=STAMP,
        updated_at=STAMP,
        create_index=n,
        modify_index=n,
    )


def many_intentions(count: int, services: int) -> list[Intention]:
    """`count` distinct exact pairs over `services` names (for the frame bench)."""
    names = service_names(services)
    out = []
    for k in range(count):
        src, dst = names[k % services], names[(k // services + 1 + k) % services]
        out.append(Intention(src, dst, "allow" if k % 3 else "deny", modify_index=k + 1))
    return list({i.pair: i for i in out}.values())


def service_names(count: int) -> list[str]:
    return [f"svc-{n:03d}" for n in range(count)]


class FixedApi(AgentApi):
    """`AgentApi` answering from fixed intentions and services; no socket."""

    def __init__(self, intentions: list[Intention], services: list[str]) -> None:
        super().__init__("http://agent.test:8500")
        self.rows = [intention_to_json(i) for i in intentions]
        self.names = services
        self.rules = IntentionSet(intentions)

    async def call(
        self, method: str, path: str, body: Any = None, timeout: float = 0.0
    ) -> tuple[Any, int]:
        if "index=" in path:
            await asyncio.Event().wait()
        if path.startswith("/v1/connect/intentions/history"):
            return [], INDEX
        if path.startswith("/v1/connect/intentions/denials"):
            return sample_denials(), INDEX
        if path.startswith("/v1/agent/metrics/proxies"):
            return sample_figures(), 0
        if path.startswith("/v1/connect/intentions/check"):
            query = dict(parse_qsl(urlsplit(path).query))
            found = decide(self.rules, query["source"], query["destination"], default_allow=False)
            return {"Allowed": found.allowed, "Reason": found.reason}, 0
        if path.startswith("/v1/connect/intentions"):
            return self.rows, INDEX
        if path.startswith("/v1/catalog/services"):
            return {name: [] for name in self.names}, INDEX
        raise AssertionError(f"FixedApi has no answer for {method} {path}")


async def _screenshot(path: str) -> None:
    """The README's picture: the list with the check panel's answer, at 100x30."""
    from gossamer.intentions.tui.app import IntentionsApp

    api = FixedApi(sample_intentions(), ["api", "batch", "billing", "db", "web"])
    api.base_url = "http://127.0.0.1:8500"
    app = IntentionsApp(api.base_url, api=api)
    async with app.run_test(size=(100, 30)) as pilot:
        while not app.loaded or not app.services:
            await pilot.pause(0.01)
        await pilot.press("c", *"batch", "tab", *"db", "enter")
        await pilot.pause(0.3)
        app.save_screenshot(path)


if __name__ == "__main__":
    # .venv/bin/python -m tests.harness.tui intentions/tui/screenshot.svg
    asyncio.run(_screenshot(sys.argv[1]))
