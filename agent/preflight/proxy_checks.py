"""Judges of this agent's sidecar proxies: listening, the certificate they present, upstreams.

The probe opens a TLS connection to each sidecar's inbound port and keeps the
certificate the proxy presents (TLS 1.3 sends it before the proxy asks for
ours), so "up" means a proxy that answers TLS with the leaf it serves now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gossamer.agent.preflight.identity_checks import judge_validity
from gossamer.agent.preflight.result import Result, fail, ok

PROXY = "proxy"


@dataclass(frozen=True)
class Presented:
    """What a sidecar's TLS listener showed: its certificate's window and URI SANs, or an error."""

    error: str = ""
    not_before: datetime | None = None
    not_after: datetime | None = None
    uris: tuple[str, ...] = ()


def judge_proxy(
    proxy_id: str, service: str, address: str, shown: Presented, now: datetime
) -> Result:
    name = f"proxy {proxy_id} up at {address}"
    start = f"start it: gossamer connect proxy --sidecar-for {service}"
    if shown.error or shown.not_before is None or shown.not_after is None:
        return fail(PROXY, name, shown.error or "no certificate presented", start)
    if not any(u.endswith(f"/svc/{service}") for u in shown.uris):
        return fail(
            PROXY,
            name,
            f"presents a certificate for {', '.join(shown.uris) or '?'}, not for {service}",
            f"restart it; {start}",
        )
    result = judge_validity(
        name,
        shown.not_before,
        shown.not_after,
        now,
        "the proxy takes renewed leaves from its agent: read the proxy's "
        "and the agent's logs; SIGHUP asks the agent again",
    )
    return Result(
        PROXY, name, result.status, f"certificate of {service}, {result.detail}", result.hint
    )


def judge_upstreams(proxy_id: str, healthy: Sequence[tuple[str, int | None]]) -> Result:
    """`healthy`: each upstream and its passing sidecar instances (None: the query failed)."""
    name = f"upstreams of {proxy_id}"
    if not healthy:
        return ok(PROXY, name, "none configured")
    down = [n for n, count in healthy if not count]
    shown = ", ".join(f"{n} ({'?' if c is None else c} healthy)" for n, c in healthy)
    if down:
        return fail(
            PROXY,
            name,
            shown,
            f"start {', '.join(down)} with a sidecar, or read `gossamer catalog "
            "services` and the health checks of their proxies",
        )
    return ok(PROXY, name, shown)
