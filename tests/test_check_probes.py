"""Check probes against real servers, sockets and processes (no mocks)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gossamer.agent.checks.probes import (
    USER_AGENT,
    new_http_session,
    probe_alias,
    probe_http,
    probe_tcp,
)
from gossamer.agent.checks.script_probe import probe_script
from gossamer.agent.checks.status import AliasedCheck, NodeHealth, ProbeResult
from gossamer.catalog.check_definition import HttpRequest
from gossamer.catalog.durations import format_seconds as go_duration
from tests.harness.http_app import ServeApp, self_signed_tls, serving
from tests.harness.poll import eventually


@pytest.fixture
async def http_base() -> AsyncIterator[str]:
    release = asyncio.Event()

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"body of {code}")

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    async def big(request: web.Request) -> web.Response:
        return web.Response(text="x" * 10_000)

    async def echo(request: web.Request) -> web.Response:
        seen = {
            "method": request.method,
            "x-foo": request.headers.getall("X-Foo", []),
            "ua": request.headers.get("User-Agent"),
            "body": await request.text(),
        }
        return web.Response(text=json.dumps(seen))

    app = web.Application()
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/big", big)
    app.router.add_route("*", "/echo", echo)
    async with serving(app) as where:
        try:
            yield where.base
        finally:
            release.set()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = new_http_session()
    yield s
    await s.close()


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [
        (200, "passing", "OK"),
        (204, "passing", "No Content"),
        (429, "warning", "Too Many Requests"),
        (503, "critical", "Service Unavailable"),
    ],
)
async def test_http_status_mapping(
    http_base: str, session: aiohttp.ClientSession, code: int, status: str, reason: str
) -> None:
    url = f"{http_base}/status/{code}"
    result = await probe_http(session, HttpRequest(url), timeout_s=5)
    body = "" if code == 204 else f"body of {code}"
    assert result == ProbeResult(status, f"HTTP GET {url}: {code} {reason} Output: {body}")  # type: ignore[arg-type]


async def test_http_timeout_is_critical(http_base: str, session: aiohttp.ClientSession) -> None:
    result = await probe_http(session, HttpRequest(f"{http_base}/slow"), timeout_s=0.2)
    assert result == ProbeResult("critical", f"HTTP GET {http_base}/slow: timed out after 200ms")


async def test_http_connection_refused_is_critical(session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/"
    result = await probe_http(session, HttpRequest(url), timeout_s=5)
    assert result.status == "critical"
    assert result.output.startswith(f"HTTP GET {url}: Cannot connect")


async def test_http_body_is_capped(http_base: str, session: aiohttp.ClientSession) -> None:
    result = await probe_http(session, HttpRequest(f"{http_base}/big"), timeout_s=5, max_output=100)
    assert result.status == "passing"
    assert result.output.endswith("Output: " + "x" * 100)


async def test_http_method_headers_body(http_base: str, session: aiohttp.ClientSession) -> None:
    result = await probe_http(
        session,
        HttpRequest(
            f"{http_base}/echo", method="put", header={"X-Foo": ("a", "b")}, body='{"ping": 1}'
        ),
        timeout_s=5,
    )
    assert result.status == "passing"
    seen = json.loads(result.output.split(" Output: ", 1)[1])
    assert seen == {"method": "PUT", "x-foo": ["a", "b"], "ua": USER_AGENT, "body": '{"ping": 1}'}


async def test_https_verifies_unless_skip_verify(
    tmp_path: Path, session: aiohttp.ClientSession, serve_app: ServeApp
) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="secure")

    app = web.Application()
    app.router.add_get("/", ok)
    url = (await serve_app(app, self_signed_tls(tmp_path))).base + "/"
    refused = await probe_http(session, HttpRequest(url, tls_server_name="svc.test"), timeout_s=5)
    assert refused.status == "critical"
    assert "certificate verify failed" in refused.output
    skipped = await probe_http(session, HttpRequest(url, tls_skip_verify=True), timeout_s=5)
    assert skipped == ProbeResult("passing", f"HTTP GET {url}: 200 OK Output: secure")


# --- TCP ---------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_tcp_listener_passes() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await probe_tcp(f"127.0.0.1:{port}", timeout_s=5)
    finally:
        server.close()
        await server.wait_closed()
    assert result == ProbeResult("passing", f"TCP connect 127.0.0.1:{port}: Success")


def test_tcp_listener_passes_under_uvloop_as_the_agent_runs() -> None:
    """The agent's loop is uvloop, whose create_connection has no happy_eyeballs_delay."""
    uvloop = pytest.importorskip("uvloop")

    async def probe() -> tuple[ProbeResult, int]:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await probe_tcp(f"127.0.0.1:{port}", timeout_s=5), port
        finally:
            server.close()
            await server.wait_closed()

    result, port = uvloop.run(probe())
    assert result == ProbeResult("passing", f"TCP connect 127.0.0.1:{port}: Success")


async def test_tcp_closed_port_is_critical() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    result = await probe_tcp(address, timeout_s=5)
    assert result.status == "critical"
    assert result.output.startswith(f"TCP connect {address}: ")
    assert "refused" in result.output.lower() or "connect call failed" in result.output.lower()


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:notaport", ":80", "[::1]:99999"])
async def test_tcp_bad_address_is_critical(address: str) -> None:
    result = await probe_tcp(address, timeout_s=1)
    assert result.status == "critical"
    assert "is not host:port" in result.output


# --- scripts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"), [(0, "passing"), (1, "warning"), (2, "critical"), (127, "critical")]
)
async def test_script_exit_codes(code: int, status: str) -> None:
    result = await probe_script(["/bin/sh", "-c", f"echo out; echo err >&2; exit {code}"])
    assert result == ProbeResult(status, "out\nerr\n")  # type: ignore[arg-type]


async def test_script_output_keeps_the_tail() -> None:
    script = "head -c 9000 /dev/zero | tr '\\0' a; printf END"
    result = await probe_script(["/bin/sh", "-c", script], max_output=100)
    assert result.status == "passing"
    assert result.output == "Captured 100 of 9003 bytes\n...\n" + "a" * 97 + "END"


async def test_script_that_cannot_start_is_critical(tmp_path: Path) -> None:
    result = await probe_script([str(tmp_path / "missing")])
    assert result.status == "critical"
    assert result.output.startswith("Failed to invoke")


def _gone(pid: int) -> bool:
    """Dead or a zombie (whose reaping is its new parent's business)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _sleeper(pids: Path) -> list[str]:
    # The shell starts a child that loops (it outlives its parent if only the
    # parent is killed), records both pids, then outlives any timeout.
    child = "while :; do sleep 0.05; done"
    return ["/bin/sh", "-c", f"echo started; /bin/sh -c '{child}' & echo $$ $! > {pids}; wait"]


def _read_pids(pids: Path) -> list[int]:
    def written() -> str:
        return pids.read_text().strip() if pids.exists() else ""

    return [int(p) for p in eventually(written, timeout=5).split()]


async def test_script_killed_at_timeout_with_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    result = await probe_script(_sleeper(pids), timeout_s=0.5)
    assert result == ProbeResult("critical", "Timed out (500ms) running check\n\nstarted\n")
    shell, child = _read_pids(pids)
    eventually(lambda: _gone(shell) and _gone(child), timeout=5, what="no process left")


async def test_cancelled_script_is_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    task = asyncio.create_task(probe_script(_sleeper(pids), timeout_s=30))
    shell, child = await asyncio.to_thread(_read_pids, pids)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    eventually(lambda: _gone(shell) and _gone(child), timeout=5, what="no process left")


# --- alias -------------------------------------------------------------------


async def test_alias_reads_the_lookup() -> None:
    health = NodeHealth("n1", frozenset({"web"}), (AliasedCheck("h", "warning", "slow", "web"),))
    result = await probe_alias(
        lambda node: health if node == "" else None, node="", service_id="web"
    )
    assert result == ProbeResult("warning", "Aliased check 'h' failing: slow")


async def test_alias_lookup_failure_is_critical() -> None:
    def broken(node: str) -> NodeHealth | None:
        raise RuntimeError("catalog unavailable")

    result = await probe_alias(broken, node="n2", service_id="web")
    assert result == ProbeResult(
        "critical", "Failure checking aliased node or service: catalog unavailable"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "200ms"), (1, "1s"), (1.5, "1.5s"), (30, "30s"), (90, "1m30s"), (3600, "1h0m0s")],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
