"""What the agent's parts add to /v1/agent/metrics: sync rounds, DNS rcodes, leaves.

Each part keeps plain counters where it works (the replicator its rounds
and their summed time, the DNS listeners a list of answers per rcode); the
functions here read them on request and shape them as Consul's JSON
entries. The composition root registers one source per part under
`FIGURE_SOURCES_KEY` (a list, so parts made after the app can still be
added); a source is any `() -> Figures`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from aiohttp import web

from gossamer.agent.http.metrics_figures import Figures, counter, gauge
from gossamer.agent.identity.mesh_identity import MeshIdentity

FigureSource = Callable[[], Figures]
FIGURE_SOURCES_KEY: web.AppKey[list[FigureSource]] = web.AppKey("figure_sources", list)
MEMBER_STATUSES = ("alive", "leaving", "left", "failed")
# DNS rcodes by number (RFC 1035, 2136), as Consul's and dig's names; others show as numbers.
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


class Rounds(Protocol):
    rounds: int
    failures: int
    round_seconds: float


class Answers(Protocol):
    rcodes: list[int]


def sync_figures(replicator: Rounds) -> Figures:
    """Anti-entropy rounds with a peer: how many, how many failed, their time (ms, summed)."""
    return Figures(
        counters=[counter("gossamer.sync.round_failures", replicator.failures)],
        samples=[counter("gossamer.sync.round", replicator.rounds,
                         replicator.round_seconds * 1000.0)],
    )  # fmt: skip


def dns_figures(responder: Answers) -> Figures:
    """DNS answers sent, by rcode (every rcode this agent has answered, NOERROR always)."""
    return Figures(
        counters=[
            counter("gossamer.dns.answers", n, rcode=RCODES.get(code, str(code)))
            for code, n in enumerate(responder.rcodes)
            if n or code == 0
        ]
    )


def leaf_figures(identity: MeshIdentity) -> Figures:
    """The leaves this agent holds (one per local service it issued for) and time to expiry."""
    now = identity.authority.now()
    gauges = []
    services = identity.leaves.services()
    for service in services:
        held = identity.leaves.get(service)
        if held is not None:
            left = (held.certificate.not_valid_after_utc - now).total_seconds()
            gauges.append(gauge("gossamer.connect.leaf.expiry_seconds", left, service=service))
    gauges.append(gauge("gossamer.connect.leaves", len(services)))
    cert = identity.authority.agent_cert
    if cert is not None:
        left = (cert.not_valid_after_utc - now).total_seconds()
        gauges.append(gauge("gossamer.agent.certificate.expiry_seconds", left))
    return Figures(gauges=gauges)
