"""The proxy's Prometheus families, built on scrape from its edges and counters. Pure.

Every series a proxy exposes is listed here (README "Metrics" repeats the
list): per edge (`direction`, `source`, `destination`) the TCP figures,
authorization decisions and, where the L7 path reports responses, the HTTP
figures by `route` (inbound: the L7 permission that decided, where one did;
outbound: the service-router route the request took, where one did) and
`status_class`; per proxy (`service`) the TLS
handshake failures and every refusal by reason, and the other counters of
`tally.Tally` as `gossamer_proxy_events_total{event}`.
"""

from __future__ import annotations

from collections.abc import Sequence

from gossamer.proxy import tally
from gossamer.proxy.edge_metrics import INBOUND, OUTBOUND, Edge, EdgeMetrics
from gossamer.proxy.prom_text import Family

P = "gossamer_proxy_"
# Refusal reasons that are a failed TLS handshake (the rest are decisions or the app).
TLS_INBOUND = (
    tally.NOT_TLS, tally.HANDSHAKE_TIMEOUT, tally.PEER_REFUSED, tally.NO_CERTIFICATE,
    tally.UNKNOWN_ISSUER, tally.EXPIRED, tally.NOT_YET_VALID, tally.FOREIGN_TRUST_DOMAIN,
    tally.WRONG_PURPOSE, tally.NOT_SPIFFE, tally.NOT_A_SERVICE, tally.BAD_CERTIFICATE,
    tally.REVOKED,
)  # fmt: skip
TLS_OUTBOUND = (*TLS_INBOUND, tally.WRONG_SERVER)  # the server's, checked the same way
Proxy = tuple[EdgeMetrics, tally.Tally]


def families(proxies: Sequence[Proxy], start_time_s: float) -> list[Family]:
    """Every family of the proxies served by one metrics listener (one, or all in node mode)."""
    out = _edge_families(proxies)
    handshake = Family(P + "tls_handshake_failures_total", "counter",
                       "TLS handshakes that failed, by reason.")  # fmt: skip
    refused = Family(P + "refused_total", "counter", "Connections refused or closed, by reason.")
    events = Family(P + "events_total", "counter", "Other proxy counters, by name.")
    for metrics, counts in proxies:
        svc = ("service", metrics.service)
        snapshot = counts.snapshot()
        for reason in TLS_INBOUND:
            handshake.add(snapshot[f"inbound.refused.{reason}"], (svc, ("direction", INBOUND),
                                                                  ("reason", reason)))  # fmt: skip
        for reason in TLS_OUTBOUND:
            n = snapshot.get(f"outbound.attempt_failed.{reason}", 0)
            handshake.add(n, (svc, ("direction", OUTBOUND), ("reason", reason)))
        for name, n in snapshot.items():
            direction, _, rest = name.partition(".")
            if rest.startswith("refused."):
                refused.add(n, (svc, ("direction", direction), ("reason", rest[8:])))
            else:
                events.add(n, (svc, ("event", name)))
    start = Family(P + "start_time_seconds", "gauge", "When the proxy started, Unix seconds.")
    start.add(start_time_s)
    return [*out, handshake, refused, events, start]


def _edge_families(proxies: Sequence[Proxy]) -> list[Family]:
    opened = Family(P + "tcp_open_total", "counter", "Connections established.")
    closed = Family(P + "tcp_close_total", "counter", "Connections closed.")
    live = Family(P + "tcp_open_connections", "gauge", "Connections open now.")
    failed = Family(P + "tcp_failed_total", "counter", "Client connections that could not be "
                    "established (no instance, every attempt failed, refused by the other "
                    "sidecar, local app down).")  # fmt: skip
    sent = Family(P + "tcp_sent_bytes_total", "counter", "Bytes from source to destination.")
    got = Family(P + "tcp_received_bytes_total", "counter", "Bytes from destination to source.")
    setup = Family(P + "tcp_connect_seconds", "histogram",
                   "Time from accepting a connection to relaying it (handshake, decision, "
                   "connect).")  # fmt: skip
    duration = Family(P + "tcp_connection_duration_seconds", "histogram",
                      "How long closed connections were open.")  # fmt: skip
    authz = Family(P + "authz_total", "counter",
                   "Authorization decisions: allow, deny, terminate (policy change).")  # fmt: skip
    requests = Family(P + "request_total", "counter", "HTTP requests, by route.")
    responses = Family(P + "response_total", "counter", "HTTP responses, by status class.")
    latency = Family(P + "response_latency_seconds", "histogram",
                     "Time from request to response, by route.")  # fmt: skip
    for metrics, _ in proxies:
        for (direction, source, destination), e in sorted(metrics.edges.items()):
            labels = (("direction", direction), ("source", source), ("destination", destination))
            _tcp(e, labels, opened, closed, live, failed, sent, got)
            setup.histogram(labels, e.setup.bounds, e.setup.counts, e.setup.total)
            h = e.duration
            duration.histogram(labels, h.bounds, h.counts, h.total)
            if direction == INBOUND:
                for decision, n in (("allow", e.allowed), ("deny", e.denied),
                                    ("terminate", e.terminated)):  # fmt: skip
                    authz.add(n, (*labels, ("decision", decision)))
            for route, r in sorted(e.routes.items()):
                at = (*labels, ("route", route)) if route else labels  # "" when not known
                requests.add(r.requests, at)
                for cls, n in r.by_class().items():
                    responses.add(n, (*at, ("status_class", cls)))
                latency.histogram(at, r.latency.bounds, r.latency.counts, r.latency.total)
    return [opened, closed, live, failed, sent, got, setup, duration, authz, requests, responses,
            latency]  # fmt: skip


def _tcp(e: Edge, labels: tuple[tuple[str, str], ...], *fams: Family) -> None:
    opened, closed, live, failed, sent, got = fams
    opened.add(e.opened, labels)
    closed.add(e.closed, labels)
    live.add(len(e.live), labels)
    failed.add(e.failed, labels)
    out_bytes, in_bytes = e.bytes_each_way()
    sent.add(out_bytes, labels)
    got.add(in_bytes, labels)
