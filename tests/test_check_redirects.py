"""What a registration says reaches the probe: real servers, sockets and processes.

Regression (issue 9): the registration parser accepted and echoed
`DisableRedirects`, but the runner's hand-copied field list dropped it and
the probe always followed redirects. Consul judges the 3xx answer itself when
redirects are disabled: only 2xx passes and 429 warns, so a 301/302 is
critical. With redirects followed (the default) the final answer counts.
The rule that fixed it: the runner reads the one CheckDefinition, so every
field a probe uses (HTTP request, TCP target, Args, alias target) arrives
from the body a user sent; the last tests pin that for each kind.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gossamer.agent.checks.probes import AliasLookup, new_http_session, probe_http
from gossamer.agent.checks.runner import CheckRunner
from gossamer.agent.checks.status import AliasedCheck, NodeHealth, ProbeResult
from gossamer.catalog.check_definition import HttpRequest
from gossamer.catalog.registration import parse_check_registration
from tests.harness.http_app import self_signed_tls, serving
from tests.harness.poll import eventually_async


@pytest.fixture
async def redirecting() -> AsyncIterator[str]:
    """A server whose /moved answers 301 and /found 302, both to /target (200)."""

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/target", text="moved away")

    async def found(request: web.Request) -> web.Response:
        raise web.HTTPFound("/target", text="look there")

    async def target(request: web.Request) -> web.Response:
        return web.Response(text="arrived")

    app = web.Application()
    app.router.add_get("/moved", moved)
    app.router.add_get("/found", found)
    app.router.add_get("/target", target)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = new_http_session()
    yield s
    await s.close()


@pytest.mark.parametrize(
    ("path", "code", "reason", "body"),
    [("/moved", 301, "Moved Permanently", "moved away"), ("/found", 302, "Found", "look there")],
)
async def test_disabled_redirect_is_judged_on_the_3xx(
    redirecting: str,
    session: aiohttp.ClientSession,
    path: str,
    code: int,
    reason: str,
    body: str,
) -> None:
    url = redirecting + path
    result = await probe_http(session, HttpRequest(url, disable_redirects=True), timeout_s=5)
    assert result == ProbeResult("critical", f"HTTP GET {url}: {code} {reason} Output: {body}")


@pytest.mark.parametrize("path", ["/moved", "/found"])
async def test_redirects_are_followed_by_default(
    redirecting: str, session: aiohttp.ClientSession, path: str
) -> None:
    url = redirecting + path
    result = await probe_http(session, HttpRequest(url), timeout_s=5)
    assert result == ProbeResult("passing", f"HTTP GET {url}: 200 OK Output: arrived")


@pytest.mark.parametrize(("disable", "status"), [(True, "critical"), (False, "passing")])
async def test_registered_disable_redirects_reaches_the_probe(
    redirecting: str, disable: bool, status: str
) -> None:
    """From the body a user sends, through the runner, to the answer the probe judged."""
    url = redirecting + "/found"
    body = {"Name": "web", "HTTP": url, "Interval": "1s", "DisableRedirects": disable}
    code = "302 Found Output: look there" if disable else "200 OK Output: arrived"
    assert await first_report(body) == (status, f"HTTP GET {url}: {code}")


async def first_report(
    body: Mapping[str, Any], *, allow_script: bool = False, alias_lookup: AliasLookup | None = None
) -> tuple[str, str]:
    """Register `body` as a user would, run it, and return the first (status, output) reported."""
    check = parse_check_registration(body, service_ids=set(), allow_script=allow_script)
    seen: list[tuple[str, str]] = []
    runner = CheckRunner(
        lambda _id, s, out: seen.append((s, out)), alias_lookup=alias_lookup, rng=random.Random(0)
    )
    runner.add(check)
    try:
        await eventually_async(lambda: bool(seen), timeout=10)
    finally:
        await runner.stop()
    return seen[0]


async def test_every_http_field_reaches_the_probe(tmp_path: Path) -> None:
    """Method, Header, Body, DisableRedirects, TLSServerName and TLSSkipVerify, all at once.

    An HTTPS server with a self-signed certificate (so only TLSSkipVerify
    lets the probe in) records the SNI name and answers 302 with what it
    received, so the 302 is judged only if DisableRedirects arrived.
    """
    sni: list[str | None] = []
    tls = self_signed_tls(tmp_path)
    tls.sni_callback = lambda _sock, name, _ctx: sni.append(name)

    async def echo(request: web.Request) -> web.Response:
        seen = {"method": request.method, "x-probe": request.headers.getall("X-Probe")}
        seen["body"] = await request.text()
        raise web.HTTPFound("/elsewhere", text=json.dumps(seen))

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    async with serving(app, tls) as where:
        url = where.base + "/echo"
        body = {
            "Name": "web",
            "HTTP": url,
            "Interval": "1s",
            "Method": "PUT",
            "Header": {"X-Probe": ["a", "b"]},
            "Body": "ping",
            "DisableRedirects": True,
            "TLSServerName": "probe.test",
            "TLSSkipVerify": True,
        }
        request = parse_check_registration(body, service_ids=set(), allow_script=False).http
        assert request is not None
        # Every field but the url differs from its default: a field added to
        # HttpRequest fails here until this body sets it too.
        default = HttpRequest(url)
        same = [
            f.name for f in fields(request) if getattr(request, f.name) == getattr(default, f.name)
        ]
        assert same == ["url"]
        status, output = await first_report(body)
    assert status == "critical"
    assert output.startswith(f"HTTP PUT {url}: 302 Found Output: ")
    assert json.loads(output.split(" Output: ", 1)[1]) == {
        "method": "PUT",
        "x-probe": ["a", "b"],
        "body": "ping",
    }
    assert sni[:1] == ["probe.test"]


async def test_tcp_target_reaches_the_probe() -> None:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        body = {"Name": "db", "TCP": f"127.0.0.1:{port}", "Interval": "1s"}
        report = await first_report(body)
    finally:
        server.close()
        await server.wait_closed()
    assert report == ("passing", f"TCP connect 127.0.0.1:{port}: Success")


async def test_args_reach_the_probe() -> None:
    body = {"Name": "s", "Args": ["/bin/sh", "-c", "echo from args; exit 1"], "Interval": "1s"}
    assert await first_report(body, allow_script=True) == ("warning", "from args\n")


async def test_alias_target_reaches_the_probe() -> None:
    asked: list[str] = []
    health = NodeHealth("n2", frozenset({"web"}), (AliasedCheck("h", "warning", "slow", "web"),))

    def lookup(node: str) -> NodeHealth | None:
        asked.append(node)
        return health if node == "n2" else None

    body = {"Name": "a", "AliasNode": "n2", "AliasService": "web"}
    report = await first_report(body, alias_lookup=lookup)
    assert report == ("warning", "Aliased check 'h' failing: slow")
    assert asked[:1] == ["n2"]
