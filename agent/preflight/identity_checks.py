"""Judges of the mesh identity: the CA's roots, this agent's RPC certificate, the leaves.

Times come in as the API writes them (RFC 3339) and `now` is passed in, so
the judges are plain functions of their inputs. A leaf is renewed at 45-60 %
of its life (counted from signing, not from the back-dated NotBefore), so
one with less than LEAF_LOW of its life left means renewal is failing even
before it expires.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from gossamer.agent.preflight.result import Result, days, fail, ok, token_hint, warn
from gossamer.proxy.ca.profile import CLOCK_SKEW

IDENTITY = "identity"
ROOT_WARN_DAYS = 60  # as linkerd warns about its trust anchor
LEAF_LOW = 0.25


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def judge_roots(roots: Mapping[str, Any] | None, error: str, now: datetime) -> Result:
    name = "CA and roots valid"
    if roots is None:
        return fail(IDENTITY, name, error, "read the agent's log (identity lines)")
    listed = roots.get("Roots") or []
    active = [r for r in listed if r.get("Active")]
    if not active:
        return fail(
            IDENTITY,
            name,
            "no active root: the mesh has no CA yet",
            "wait for the agent to enrol; if it says it cannot, its keyring or "
            "join token opens none of the CA's seals",
        )
    for root in listed:
        before, after = parse_time(root["NotBefore"]), parse_time(root["NotAfter"])
        if not before <= now <= after:
            state = "expired" if now > after else "not valid yet"
            return fail(
                IDENTITY,
                name,
                f"root {root['ID'][:11]}… {state} ({before} to {after})",
                "`gossamer ca rotate` makes a new root; check this host's clock",
            )
    left = (parse_time(active[0]["NotAfter"]) - now).total_seconds()
    shown = (
        f"{len(listed)} root(s), trust domain {roots.get('TrustDomain', '?')}, "
        f"active root valid {days(left)}"
    )
    if left < ROOT_WARN_DAYS * 86400:
        return warn(IDENTITY, name, shown, "rotate the root soon: `gossamer ca rotate`")
    return ok(IDENTITY, name, shown)


def judge_rpc_identity(
    identity: Mapping[str, Any], now: datetime, gone: Collection[str] = ()
) -> Result:
    """`identity`: `Gossamer.Identity` of /v1/agent/self; `gone`: members that have left.

    A member that left is not judged: it syncs with no one, and a revoked node that was
    force-left is the end of the eviction the hint below asks for (it stays listed as left
    until serf reaps it). An alive or failed one that is revoked still fails."""
    name = "agent-RPC identity valid"
    cert = identity.get("AgentCertificate") or {}
    if not cert.get("Valid"):
        return fail(
            IDENTITY,
            name,
            "this agent holds no valid agent certificate",
            "it cannot sync with peers: its keyring or join token must open the "
            "CA's seals (README, Identity: Enrolment)",
        )
    left = (parse_time(cert["NotAfter"]) - now).total_seconds()
    listed = identity.get("Peers") or {}
    peers = {n: p for n, p in listed.items() if n not in gone}
    bad = sorted(
        f"{n} ({p.get('State')})"
        for n, p in peers.items()
        if p.get("State") not in ("valid", "not-enrolled")
    )
    if bad:
        return fail(
            IDENTITY,
            name,
            f"peers not trusted: {', '.join(bad)}",
            "a revoked or untrusted peer cannot sync; re-enrol it or remove it "
            "(`gossamer force-leave NODE`)",
        )
    if left <= 0:
        return fail(
            IDENTITY,
            name,
            "this agent's certificate expired",
            "check this host's clock and the agent's log",
        )
    passed = len(listed) - len(peers)
    shown = f"certificate valid {days(left)}, {len(peers)} peer(s) trusted"
    return ok(IDENTITY, name, shown + (f", {passed} that left not judged" if passed else ""))


def judge_leaf(
    service: str, leaf: Mapping[str, Any] | None, error: str, now: datetime, denied: bool = False
) -> Result:
    """`denied`: the agent refused this token the leaf (403): nothing is known of the leaf,
    and the proxy's own line still checks the one it serves, so a warning, not a failure."""
    name = f"leaf certificate of {service}"
    if leaf is None and denied:
        return warn(
            IDENTITY, name, f"not checked: {error}", token_hint(f"service:write on {service}")
        )
    if leaf is None:
        return fail(
            IDENTITY,
            name,
            f"the agent cannot issue it: {error}",
            "read the agent's log (identity lines); its data dir must be writable",
        )
    return judge_validity(
        name,
        parse_time(leaf["ValidAfter"]),
        parse_time(leaf["ValidBefore"]),
        now,
        "the agent renews leaves on its own: read its log",
    )


def judge_validity(
    name: str, after: datetime, before: datetime, now: datetime, hint: str
) -> Result:
    """A certificate's window against now: expired, not yet valid, nearly out, or fine."""
    left = (before - now).total_seconds()
    if left <= 0:
        return fail(
            IDENTITY, name, f"expired {days(-left)} ago ({before:%Y-%m-%d %H:%M:%S} UTC)", hint
        )
    if now < after:
        return fail(
            IDENTITY,
            name,
            f"not valid before {after:%Y-%m-%d %H:%M:%S} UTC",
            "check this host's clock against its peers",
        )
    life = (before - after - CLOCK_SKEW).total_seconds()  # NotBefore is back-dated by that
    if life > 0 and left < LEAF_LOW * life:
        return warn(IDENTITY, name, f"expires in {days(left)}, it should have been renewed", hint)
    return ok(IDENTITY, name, f"expires in {days(left)}")


def connect_services(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Services on this agent that hold leaves: each sidecar's destination, sorted, once."""
    return sorted({s["Proxy"]["DestinationServiceName"] for s in sidecars(services)})


def sidecars(services: Mapping[str, Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
    """The connect-proxy registrations of /v1/agent/services, by ID."""
    return [services[k] for k in sorted(services) if services[k].get("Kind") == "connect-proxy"]
