"""Where the agent sends a check it runs through the sidecar (`Expose.Checks`).

A sidecar with `Proxy.Config.bind_address: "::"` (what an IPv6 mesh sets)
listens on IPv6 only, yet the check was rewritten to 127.0.0.1:<ExposedPort>,
refused for ever: the check stayed critical with the sidecar up. One bound to
0.0.0.0 whose `Address` is IPv6 was sent to that IPv6 address, where it does
not listen. Now `::` is reached at ::1 and 0.0.0.0 at 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gossamer.agent.local.node import LocalNode
from gossamer.agent.local.own_record import NodeIdentity
from gossamer.catalog.expose_checks import probe_url
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.store import CatalogStore


def _local(path: Path) -> LocalNode:
    store = CatalogStore.open(path)
    catalog = LiveCatalog("dc1", store, wall_ms=lambda: 1_000)
    identity = NodeIdentity(node="n1", node_id="id-1", datacenter="dc1", address="fd00::1")
    return LocalNode(identity, store, catalog, wall_ms=lambda: 1_000, on_version=lambda v: None)


@pytest.mark.parametrize(
    ("address", "bind", "host"),
    [
        ("", "::", "[::1]"),
        ("fd00::5", "::", "[::1]"),
        ("fd00::5", "0.0.0.0", "127.0.0.1"),
        ("", "0.0.0.0", "127.0.0.1"),
        ("", None, "127.0.0.1"),
        ("fd00::5", None, "[fd00::5]"),
        ("10.0.0.5", "10.0.0.6", "10.0.0.6"),
    ],
)
async def test_exposed_check_dials_where_the_sidecar_listens(
    tmp_path: Path, address: str, bind: str | None, host: str
) -> None:
    local = _local(tmp_path / "c.db")
    local.restore()
    config = {} if bind is None else {"bind_address": bind}
    local.register_service({
        "Name": "web", "ID": "web", "Port": 8080,
        "Check": {"HTTP": "http://[::1]:8080/health", "Interval": "10s"},
        "Connect": {"SidecarService": {"Address": address, "Proxy": {
            "Config": config, "Expose": {"Checks": True}}}},
    })  # fmt: skip
    check = local._registry.registrations["web"].checks[0]
    assert check.exposed_port
    assert probe_url(check, "http://[::1]:8080/health") == (
        f"http://{host}:{check.exposed_port}/health"
    )
    await local.stop()
