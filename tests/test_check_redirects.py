"""DisableRedirects reaches the HTTP probe: a real redirecting server on a loopback port.

Regression (issue 9): the registration parser accepted and echoed
`DisableRedirects`, but the runner's hand-copied field list dropped it and
the probe always followed redirects. Consul judges the 3xx answer itself when
redirects are disabled: only 2xx passes and 429 warns, so a 301/302 is
critical. With redirects followed (the default) the final answer counts.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gossamer.agent.checks.probes import new_http_session, probe_http
from gossamer.agent.checks.runner import CheckRunner
from gossamer.agent.checks.spec import spec_from_definition
from gossamer.agent.checks.status import ProbeResult
from gossamer.catalog.check_definition import HttpRequest
from gossamer.catalog.registration import parse_check_registration
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
    spec = spec_from_definition(
        parse_check_registration(body, service_ids=set(), allow_script=False)
    )
    seen: list[tuple[str, str]] = []
    runner = CheckRunner(lambda _id, s, out: seen.append((s, out)), rng=random.Random(0))
    runner.add(spec)
    try:
        await eventually_async(lambda: bool(seen), timeout=10)
    finally:
        await runner.stop()
    code = "302 Found Output: look there" if disable else "200 OK Output: arrived"
    assert seen[0] == (status, f"HTTP GET {url}: {code}")
