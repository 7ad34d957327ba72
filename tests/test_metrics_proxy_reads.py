"""How the agent and `gossamer stat` / `top` show what they read: a sidecar whose metrics port
takes the connection and never answers (a proxy stopped with SIGSTOP, a long GC pause) is
named with why.
"""

from __future__ import annotations

import asyncio
import json

from gossamer.agent.http.proxy_stats_routes import TIMEOUT_S
from tests.harness.served_agent import Served


async def test_a_sidecar_that_never_answers_is_named_with_its_timeout(served: Served) -> None:
    """Before: `"Error": "127.0.0.1:PORT: "`, the reason empty (a timeout's text is "")."""
    held: list[asyncio.StreamWriter] = []

    async def mute(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # the connection taken, the request never answered

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    addr = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    served.local.register_service({
        "Kind": "connect-proxy", "ID": "db-sidecar-proxy", "Name": "db-sidecar-proxy",
        "Port": 21000, "Proxy": {"DestinationServiceName": "db",
                                 "Config": {"gossamer_metrics_bind_addr": addr}},
    })  # fmt: skip
    try:
        status, body = await served.call("GET", "/v1/agent/metrics/proxies")
    finally:
        for writer in held:
            writer.close()
        server.close()
    assert status == 200, body
    (entry,) = json.loads(body)
    assert entry["Error"] == f"{addr}: no answer within {TIMEOUT_S:g} s", entry
