"""Gathering the agent's facts over its HTTP API, its DNS port and its proxies' TLS ports.

Every function returns (value, "") or (None, why): a target that fails is a
fact to judge, never an exception. Calls are synchronous and short, like the
rest of the CLI.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
from cryptography import x509

from gossamer.agent.cli.client import (
    AgentClient,
    AgentTimedOut,
    AgentUnreachable,
    ApiError,
    path_segment,
)
from gossamer.agent.preflight.proxy_checks import Presented
from gossamer.gossip.addresses import format_host_port

PROBE_TIMEOUT_S = 3.0
# Each API call of `check` (the CLI's 30 s is for slow writes): an agent that takes the
# connection and never answers costs seconds, not half a minute a call. Once one call
# timed out (serf stuck behind an agent that still answers /v1/agent/self), each later
# one gets a second: eight calls of 5 s made a 40 s check.
API_TIMEOUT_S = 5.0
AFTER_TIMEOUT_S = 1.0
_DER = ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]  # Certificate.public_bytes format


@dataclass(frozen=True)
class Answer:
    """An HTTP API answer: its JSON, or why there is none. `denied` (a 403) is told apart
    because its fix is the token the check runs with, not the agent."""

    value: Any
    error: str = ""
    denied: bool = False


def ask(client: AgentClient, path: str) -> Answer:
    try:
        return Answer(client.get(path))
    except ApiError as exc:
        return Answer(None, str(exc), exc.status == 403)
    except AgentUnreachable as exc:
        if isinstance(exc, AgentTimedOut):
            client.timeout = min(client.timeout, AFTER_TIMEOUT_S)
        return Answer(None, str(exc))
    except ValueError as exc:  # a body that is not JSON
        return Answer(None, f"GET {path}: not JSON ({exc})")


def fetch(client: AgentClient, path: str) -> tuple[Any, str]:
    answer = ask(client, path)
    return answer.value, answer.error


def leaf(client: AgentClient, service: str) -> Answer:
    return ask(client, f"/v1/agent/connect/ca/leaf/{path_segment(service)}")


def passing_instances(client: AgentClient, service: str, query: str = "passing") -> int | None:
    """`service`'s sidecar instances a proxy would send to; `query`: the health query (a
    resolver subset's carries its filter, catalog/resolver_chain.Target.query)."""
    found, _ = fetch(client, f"/v1/health/connect/{path_segment(service)}?{query}")
    return len(found) if isinstance(found, list) else None


def dns_answers(server: str, port: int, question: str) -> tuple[list[str] | None, str]:
    """The addresses the agent's DNS gives for `question` (over UDP): its A records, or its
    AAAA records when there are none (agents on IPv6 addresses answer only AAAA: asking A
    alone failed the check of every IPv6 agent)."""
    found: list[str] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        query = dns.message.make_query(question, rdtype)
        try:
            reply = dns.query.udp(query, server, port=port, timeout=PROBE_TIMEOUT_S)
        except (dns.exception.DNSException, OSError) as exc:
            where = format_host_port(server, port)
            return None, f"no answer from {where}: {exc or type(exc).__name__}"
        found = sorted(str(rd) for rrset in reply.answer for rd in rrset if rd.rdtype == rdtype)
        if found:
            break
    return found, ""


def presented(address: str, port: int) -> Presented:
    """The chain a TLS listener presents, read without ending the handshake: in TLS 1.3 the
    server's flight carries its certificates before the client says more, so the client's
    answer (no certificate, a Finished) is never sent, and the proxy counts a peer that
    leaves then as a probe, as a TCP check, not as a failed handshake (each `check` run
    counted a `no-certificate` refusal and logged it on every sidecar, found by a
    walkthrough)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        raw = socket.create_connection((address, port), timeout=PROBE_TIMEOUT_S)
    except OSError as exc:
        return Presented(error=f"{format_host_port(address, port)}: {exc.strerror or exc}")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    try:
        with raw:
            _server_flight(raw, tls, incoming, outgoing)
            der = tls.getpeercert(binary_form=True)
            chain = _sent_chain(tls)
    except (OSError, ssl.SSLError) as exc:  # something took the connection: not a proxy
        why = "no TLS answer" if isinstance(exc, TimeoutError) else exc.strerror or exc
        return Presented(error=f"{format_host_port(address, port)}: {why}", listening=True)
    if not der:
        return Presented(
            error=f"{format_host_port(address, port)}: no certificate presented", listening=True
        )
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
    except x509.ExtensionNotFound:
        uris = ()
    return Presented("", cert.not_valid_before_utc, cert.not_valid_after_utc, uris, chain)


def _server_flight(raw: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO,
                   outgoing: ssl.MemoryBIO) -> None:  # fmt: skip
    """Send the ClientHello and read until the server's flight is in: the client's side of
    the handshake is then done, its last flight left unsent in `outgoing`."""
    while True:
        try:
            tls.do_handshake()
            return
        except ssl.SSLWantReadError:
            pass
        if hello := outgoing.read():
            raw.sendall(hello)
        data = raw.recv(65536)
        if not data:
            raise ConnectionResetError("closed during the handshake")
        incoming.write(data)


def _sent_chain(tls: ssl.SSLObject) -> tuple[bytes, ...]:
    """The certificates the server sent, leaf first, as DER (unverified: the judge verifies)."""
    getter = getattr(tls, "get_unverified_chain", None)  # Python 3.13+
    if getter is None:
        getter = tls._sslobj.get_unverified_chain  # type: ignore[attr-defined]
    found = [c for c in getter() or [] if c is not None]
    return tuple(c if isinstance(c, bytes) else c.public_bytes(_DER) for c in found)


def clock_offsets(client: AgentClient) -> tuple[dict[str, float] | None, list[str], str]:
    """(offsets by peer, peers that did not answer, error) from /v1/agent/clock."""
    found, error = fetch(client, "/v1/agent/clock")
    if not isinstance(found, Mapping):
        return None, [], error or "unexpected answer"
    offsets = found.get("Offsets") or {}
    missing = [str(n) for n in found.get("Missing") or []]
    return {str(n): float(v) for n, v in offsets.items()}, missing, ""


def now_utc() -> datetime:
    return datetime.now(UTC)
