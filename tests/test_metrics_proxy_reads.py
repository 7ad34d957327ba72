"""How the agent and `gossamer stat` / `top` show what they read: a sidecar whose metrics port
takes the connection and never answers (a proxy stopped with SIGSTOP, a long GC pause) is
named with why; the table keeps every figure whole on a terminal narrower than it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from gossamer.agent.http.proxy_stats_routes import TIMEOUT_S
from gossamer.proxy.edge_metrics import EdgeMetrics, stats_json
from gossamer.proxy.stat_rows import edges_of, rows
from gossamer.proxy.stat_table import cells
from tests.harness.cli import expect
from tests.harness.cluster import AgentProc, Cluster
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


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProc]:
    c = Cluster(tmp_path_factory.mktemp("proxy-reads"))
    try:
        yield c.new_agent("pr1").start()
    finally:
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def _figures() -> EdgeMetrics:
    """An HTTP edge with latencies of every size, a TCP edge, long service names."""
    m = EdgeMetrics("db")
    http = m.inbound("web")
    for i in range(200):
        http.answered(503 if i % 7 == 0 else 200, 0.0004 * (i % 50) + (0.3 if i > 190 else 0),
                      "/")  # fmt: skip
    http.denied = 12345
    tcp = m.outbound("a-rather-long-upstream-service-name")
    for i in range(30):
        tcp.connected(_Closed(), 0.002 * i)
    tcp.failed = 3
    return m


class _Closed:
    def bytes_each_way(self) -> tuple[int, int]:
        return 0, 0


@contextlib.contextmanager
def _sidecar_serving(agent: AgentProc, m: EdgeMetrics) -> Iterator[list[list[str]]]:
    """A `db` sidecar registration whose metrics address serves `m`'s `/stats` (uptime 100 s);
    yields the figure cells `gossamer stat` must show for it."""
    body = json.dumps({"StartTime": 0.0, "Proxies": [stats_json(m, 100.0)]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db", "Port": 3, "Connect": {"SidecarService": {"Proxy": {
            "Config": {"gossamer_metrics_bind_addr": f"127.0.0.1:{server.server_address[1]}"}}}},
    })  # fmt: skip
    answer = [{"ProxyID": "db-sidecar-proxy", "Stats": json.loads(body)}]
    try:
        yield [cells(r)[3:] for r in rows(edges_of(answer), None, 0.0)]
    finally:
        agent.put("/v1/agent/service/deregister/db")
        server.shutdown()
        server.server_close()


def test_stat_on_an_80_column_terminal_cuts_no_figure(agent: AgentProc) -> None:
    """Before: at 80 columns every column was cut to fit ("100.0…", "0.2…", "465…")."""
    with _sidecar_serving(agent, _figures()) as expected:
        shown = expect("stat", "--http-addr", agent.http, env={"COLUMNS": "80"})
        framed = expect("top", "--iterations", "1", "--interval", "0.2", "--http-addr",
                        agent.http, env={"COLUMNS": "80"})  # fmt: skip
    assert "…" not in shown and "…" not in framed, shown + framed
    assert max(len(line) for line in shown.splitlines()) <= 80, shown
    lines = shown.splitlines()
    for figures in expected:
        assert any(all(f" {cell}" in line for cell in figures) for line in lines), (figures, shown)


def test_stat_on_a_narrow_terminal_folds_rather_than_cuts(agent: AgentProc) -> None:
    with _sidecar_serving(agent, _figures()):
        shown = expect("stat", "--http-addr", agent.http, env={"COLUMNS": "40"})
    assert "…" not in shown and max(len(line) for line in shown.splitlines()) <= 40, shown


def test_stat_and_top_with_no_sidecar_say_so_and_end_their_line(agent: AgentProc) -> None:
    """Before: `stat --service nosuch` said no sidecar at all was registered on the agent,
    `top` showed an empty table with no word, and its output (piped) ended without a newline,
    the shell's prompt after the table's last line."""
    said = "No sidecar proxy of nosuch registered on this agent."
    shown = expect("stat", "--service", "nosuch", "--http-addr", agent.http)
    assert said in shown, shown
    framed = expect("top", "--iterations", "1", "--interval", "0.2", "--service", "nosuch",
                    "--http-addr", agent.http)  # fmt: skip
    assert said in framed and framed.endswith("\n"), repr(framed)
    assert "No sidecar proxy registered on this agent." in expect("stat", "--http-addr", agent.http)


def test_stat_over_a_short_window_says_how_long_it_was(agent: AgentProc) -> None:
    """Before: `--window 0.5` was titled "last 0 s"."""
    with _sidecar_serving(agent, _figures()):
        shown = expect("stat", "--window", "0.5", "--http-addr", agent.http)
    title = shown.splitlines()[0]
    assert title.startswith("edges of this agent's proxies, last 0.") and "last 0 s" not in title
