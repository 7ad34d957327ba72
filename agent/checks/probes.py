"""One run of a check: the I/O, turned into a ProbeResult.

Each probe is a small coroutine that never raises for a failing target:
refusals, timeouts and bad addresses are critical results whose output says
what happened, because the output is what an operator reads in
`/v1/health/...`. Thresholds and change detection are not done here (see
status.py and runner.py). Outputs follow Consul's wording so tools and
people used to Consul read them the same way. The script probe lives in
script_probe.py; `run_probe` picks the probe for a check's kind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import aiohttp
from multidict import CIMultiDict

from gossamer.agent.checks import spec
from gossamer.agent.checks.grpc_probe import probe_grpc
from gossamer.agent.checks.script_probe import probe_script
from gossamer.agent.checks.status import (
    DEFAULT_OUTPUT_MAX,
    NodeHealth,
    ProbeResult,
    alias_result,
)
from gossamer.catalog.check_definition import CheckDefinition, HttpRequest
from gossamer.catalog.durations import format_seconds
from gossamer.catalog.expose_checks import probe_address, probe_url

# Consul's header values: some services allow-list the health checker's
# User-Agent, so we keep Consul's rather than announcing our own.
USER_AGENT = "Consul Health Check"
ACCEPT = "text/plain, text/*, */*"

# Given a node name ("" = this node), the node's services and checks, or
# None when the node is unknown. Called on every alias run: keep it cheap.
AliasLookup = Callable[[str], NodeHealth | None]


def _split_address(address: str) -> tuple[str, int]:
    """Split "host:port" / "[v6]:port" for the dialer; ValueError if it cannot.

    Only a split: addresses are validated at registration (by the one
    host:port parser, gossip.addresses), so a bad one is refused there with
    a 400 instead of becoming a check that is critical forever.
    """
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{address!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port_text)


def new_http_session() -> aiohttp.ClientSession:
    """The session HTTP checks share.

    Keep-alive is off (force_close), as in Consul: a pooled connection the
    server closed at its idle timeout would fail the next check for nothing.
    Redirects are followed (Consul's default) unless a check sets DisableRedirects.
    """
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


async def _read_head(content: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to `limit` bytes of a body; the rest is never read (it may be endless)."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = await content.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _request_headers(header: Mapping[str, Sequence[str]]) -> CIMultiDict[str]:
    """The check's headers, with Consul's User-Agent and Accept unless it sets them."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name, values in header.items():
        for value in values:
            headers.add(name, value)
    headers.setdefault("User-Agent", USER_AGENT)
    headers.setdefault("Accept", ACCEPT)
    return headers


def http_status_result(code: int, output: str) -> ProbeResult:
    """Consul's verdict on an answer: 2xx passing, 429 warning (RFC 6585), else critical.

    With DisableRedirects a 3xx is judged here as it is, so it is critical.
    """
    if 200 <= code <= 299:
        return ProbeResult("passing", output)
    if code == 429:
        return ProbeResult("warning", output)
    return ProbeResult("critical", output)


async def probe_http(
    session: aiohttp.ClientSession,
    request: HttpRequest,
    *,
    timeout_s: float = 10.0,
    max_output: int = DEFAULT_OUTPUT_MAX,
) -> ProbeResult:
    """Send the check's request and judge the answer (see http_status_result).

    Output: "HTTP GET <url>: 200 OK Output: <first max_output bytes of body>".
    The timeout covers connect, redirects followed, headers and the capped body read.
    """
    method = (request.method or "GET").upper()
    where = f"HTTP {method} {request.url}"
    try:
        async with (
            asyncio.timeout(timeout_s),
            session.request(
                method,
                request.url,
                headers=_request_headers(request.header),
                data=request.body.encode() if request.body else None,
                allow_redirects=not request.disable_redirects,
                ssl=not request.tls_skip_verify,
                server_hostname=request.tls_server_name or None,
            ) as resp,
        ):
            data = await _read_head(resp.content, max_output)
    except TimeoutError:
        return ProbeResult("critical", f"{where}: timed out after {format_seconds(timeout_s)}")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return ProbeResult("critical", f"{where}: {exc or type(exc).__name__}")
    reason = f" {resp.reason}" if resp.reason else ""
    output = f"{where}: {resp.status}{reason} Output: {data.decode('utf-8', 'replace')}"
    return http_status_result(resp.status, output)


async def probe_tcp(address: str, *, timeout_s: float = 10.0) -> ProbeResult:
    """Passing when a TCP connection to host:port opens within the timeout.

    A name resolving to IPv4 and IPv6 addresses is tried on all of them
    (happy eyeballs), like Consul's dual-stack dialer.
    """
    where = f"TCP connect {address}"
    try:
        host, port = _split_address(address)
    except ValueError as exc:
        return ProbeResult("critical", f"{where}: {exc}")
    # uvloop's create_connection has no happy_eyeballs_delay (TypeError); it tries each
    # address in turn instead, which still reaches a dual-stack name.
    uvloop = type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    try:
        async with asyncio.timeout(timeout_s):
            if uvloop:
                _, writer = await asyncio.open_connection(host, port)
            else:
                _, writer = await asyncio.open_connection(host, port, happy_eyeballs_delay=0.25)
    except TimeoutError:
        return ProbeResult("critical", f"{where}: timed out after {format_seconds(timeout_s)}")
    except OSError as exc:
        return ProbeResult("critical", f"{where}: {exc}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult("passing", f"{where}: Success")


async def probe_alias(lookup: AliasLookup, *, node: str, service_id: str) -> ProbeResult:
    """The worst status of the aliased service's (or node's) checks.

    `node` "" means this agent's node; the lookup decides what that is.
    A failing lookup is critical, as a failing query is in Consul.
    """
    try:
        health = lookup(node)
    except Exception as exc:
        return ProbeResult("critical", f"Failure checking aliased node or service: {exc}")
    return alias_result(health, node or "(this node)", service_id)


async def run_probe(
    check: CheckDefinition,
    session: aiohttp.ClientSession | None,
    alias_lookup: AliasLookup | None,
) -> ProbeResult:
    """One run of `check`'s probe (not for TTL checks, which have none).

    Reads the definition itself (its HttpRequest whole), so every field the
    parser fills reaches the probe; only timeout and output cap are derived.
    """
    timeout_s, cap = spec.timeout(check), spec.max_output(check)
    if check.kind == "http":
        if check.http is None or session is None:  # spec.validate refuses a missing request
            return ProbeResult("critical", "http check has no request")
        request = check.http
        if check.exposed_port:  # through the sidecar's exposed listener (`Expose.Checks`)
            request = replace(request, url=probe_url(check, request.url))
        return await probe_http(session, request, timeout_s=timeout_s, max_output=cap)
    if check.kind == "tcp":
        return await probe_tcp(check.tcp, timeout_s=timeout_s)
    if check.kind == "grpc" and check.grpc is not None:
        target = check.grpc
        if check.exposed_port:
            target = replace(target, address=probe_address(check, target.address))
        return await probe_grpc(target, timeout_s=timeout_s)
    if check.kind == "script":
        return await probe_script(check.args, timeout_s=timeout_s, max_output=cap)
    if alias_lookup is None:
        return ProbeResult("critical", "alias checks are not available on this agent")
    return await probe_alias(alias_lookup, node=check.alias_node, service_id=check.alias_service)
