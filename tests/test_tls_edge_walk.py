"""A walk over the edges of the certificate rules the sidecars hold each other to.

One real agent (default policy deny) holds `cache` with a real sidecar (its
metrics served), `web` with a real sidecar whose upstream is `db`, and `db`,
whose one sidecar instance is a TLS server this test runs (a rogue that holds
a leaf signed under the mesh's real root, read from the agent's data dir as a
compromised host could). Each bad certificate is signed by that root, so it
is refused by the rule it is about, not as a stranger:
- a client leaf whose KeyUsage forbids digitalSignature (keyAgreement alone:
  OpenSSL's client purpose passes it) may not come in (`wrong-purpose`), as
  the agent's own verifier (verify.py) already refused it;
- an upstream instance presenting `db`'s SPIFFE ID of another datacenter is
  not `db` of this one (`wrong-server`), as Envoy under Consul matches the
  whole SPIFFE ID; nor is one whose KeyUsage forbids signing.
Convergence is polled, never slept for.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from gossamer.proxy.ca.keys import certificate_pem, generate_key, load_private_key, private_key_pem
from gossamer.proxy.ca.profile import Issuer, common_name, end_entity_builder, sign
from tests.ca_support import make_intermediate
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    refused,
    roundtrip,
    series,
    set_intention,
    sidecar,
    stop_mesh,
    wait_listening,
)

Swap = Callable[[x509.ExtensionType], x509.ExtensionType]


@dataclass
class Rogue:
    """A TLS server standing as `db`'s sidecar: it presents whatever `context` holds now and
    answers `rogue`, then closes, to any client that completes a handshake."""

    context: ssl.SSLContext | None = None
    sock: socket.socket = field(default_factory=socket.socket)

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed: the walk is over
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        """One connection on a thread of its own: a client that says nothing (the agent's
        TCP check) holds up no other."""
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            if self.context is not None:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"rogue")
                    tls.unwrap()  # close_notify: an end, not a cut connection


@dataclass
class Edge:
    agent: AgentProc
    web_proxy: ProxyProc
    cache_in: tuple[str, int]
    cache_metrics: str
    up_port: int
    rogue: Rogue
    tmp: Path


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    tmp = tmp_path_factory.mktemp("tls-edge")
    c = Cluster(tmp)
    apps: list[App] = []
    proxies: list[ProxyProc] = []
    rogue = Rogue()
    try:
        config = tmp / "agent.yaml"
        config.write_text("intentions: {default_policy: deny}\n")
        agent = c.new_agent("te1", "--config-file", str(config)).start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        apps.append(app := App("127.0.0.1").start())
        rogue_port = free_port(agent.ip)
        rogue.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rogue.sock.bind((agent.ip, rogue_port))
        rogue.sock.listen(16)
        threading.Thread(target=rogue.serve, daemon=True).start()
        cache_in, web_in = free_port(agent.ip), free_port(agent.ip)
        metrics, up_port = free_port("127.0.0.1"), free_port("127.0.0.1")
        agent.put("/v1/agent/service/register", {
            "Name": "cache", "ID": "cache", "Port": app.port, "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": cache_in, "Address": agent.ip, "Proxy": {
                "Config": {"gossamer_metrics_bind_addr": f"127.0.0.1:{metrics}"}}}},
        })  # fmt: skip
        agent.put("/v1/agent/service/register", {
            "Name": "db", "ID": "db", "Port": 1, "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": rogue_port, "Address": agent.ip}},
        })  # fmt: skip
        agent.put("/v1/agent/service/register", {
            "Name": "web", "ID": "web", "Port": 1, "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": web_in, "Address": agent.ip, "Proxy": {
                "Upstreams": [{"DestinationName": "db", "LocalBindPort": up_port}]}}},
        })  # fmt: skip
        web_leaf = agent.get("/v1/agent/connect/ca/leaf/web")
        (tmp / "web.pem").write_text(web_leaf["CertPEM"])
        (tmp / "web.key").write_text(web_leaf["PrivateKeyPEM"])
        set_intention(agent, "web", "cache", "allow")
        set_intention(agent, "web", "db", "allow")
        proxies.append(cache_proxy := sidecar(agent, tmp, "cache"))
        proxies.append(web_proxy := sidecar(agent, tmp, "web"))
        wait_listening(agent.ip, cache_in, cache_proxy)
        wait_listening("127.0.0.1", up_port, web_proxy)
        yield Edge(agent, web_proxy, (agent.ip, cache_in), f"127.0.0.1:{metrics}", up_port,
                   rogue, tmp)  # fmt: skip
    finally:
        rogue.sock.close()
        leftovers = stop_mesh(c, proxies, apps)
    assert not leftovers, f"processes left behind: {leftovers}"


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    names = (
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
        "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
    )  # fmt: skip
    return x509.KeyUsage(**{name: allowed.get(name, False) for name in names})


def forged(edge: Edge, name: str, service: str, *, dc: str = "dc1",
           key_usage: x509.KeyUsage | None = None) -> tuple[Path, Path]:  # fmt: skip
    """A leaf for `service` of datacenter `dc` signed under the mesh's real root, its
    KeyUsage replaced by `key_usage` if given: (chain file, key file)."""
    roots = edge.agent.get("/v1/agent/connect/ca/roots")
    (active,) = [r for r in roots["Roots"] if r["Active"]]
    root_key = (edge.agent.data_dir / "identity" / "root-key.pem").read_bytes()
    root = Issuer(x509.load_pem_x509_certificate(active["RootCert"].encode()),
                  load_private_key(root_key, "root"))  # fmt: skip
    now = datetime.now(UTC)
    issuer = make_intermediate(root, now - timedelta(days=1))
    key = generate_key()
    uri = f"spiffe://{roots['TrustDomain']}/ns/default/dc/{dc}/svc/{service}"
    built = end_entity_builder(common_name(service), key.public_key(), uri)
    builder = x509.CertificateBuilder().subject_name(common_name(service))
    builder = builder.public_key(key.public_key())
    for ext in built._extensions:  # type: ignore[attr-defined]
        value = ext.value
        if key_usage is not None and isinstance(value, x509.KeyUsage):
            value = key_usage
        builder = builder.add_extension(value, critical=ext.critical)
    cert = sign(builder, issuer, now, timedelta(hours=1))
    chain, key_file = edge.tmp / f"{name}.pem", edge.tmp / f"{name}.key"
    chain.write_text(certificate_pem(cert) + certificate_pem(issuer.certificate))
    key_file.write_text(private_key_pem(key))
    return chain, key_file


def _client(chain: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.load_cert_chain(chain, key)
    return context


def _ping(edge: Edge, context: ssl.SSLContext) -> bytes:
    raw = socket.create_connection(edge.cache_in, timeout=10)
    with raw, context.wrap_socket(raw) as tls:
        with contextlib.suppress(ssl.SSLError, ConnectionResetError):
            tls.sendall(b"ping")
            return tls.recv(100)
        return b""


def _refusals(edge: Edge, reason: str) -> float:
    return series(edge.cache_metrics, "gossamer_proxy_refused_total", direction="inbound",
                  reason=reason)  # fmt: skip


def test_a_client_leaf_whose_key_usage_forbids_signing_is_refused_as_wrong_purpose(
    edge: Edge,
) -> None:
    assert _ping(edge, _client(edge.tmp / "web.pem", edge.tmp / "web.key")) == b"ping"
    before = _refusals(edge, "wrong-purpose")
    # keyAgreement alone: OpenSSL's TLS client purpose lets it through, yet the key signed
    # the handshake's CertificateVerify (before the fix: served, `ping` came back)
    chain, key = forged(edge, "web-agree", "web", key_usage=_key_usage(key_agreement=True))
    assert _ping(edge, _client(chain, key)) == b""
    eventually(lambda: _refusals(edge, "wrong-purpose") == before + 1, 10,
               what="one more wrong-purpose refusal")  # fmt: skip


def _rogue_is(edge: Edge, chain: Path, key: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    edge.rogue.context = context


def test_an_upstream_presenting_the_service_of_another_datacenter_is_not_the_upstream(
    edge: Edge,
) -> None:
    _rogue_is(edge, *forged(edge, "db-dc1", "db"))
    # the control: db of this datacenter, signed alike, is served (the rogue answers)
    eventually(lambda: roundtrip(("127.0.0.1", edge.up_port), b"x") == b"rogue", 20,
               what="web -> db reaching the stand-in instance")  # fmt: skip
    _rogue_is(edge, *forged(edge, "db-dc2", "db", dc="dc2"))
    before = _web_counter(edge, "outbound.attempt_failed.wrong-server")
    # before the fix: the dc2 leaf was taken for db, and `rogue` came back
    assert refused(("127.0.0.1", edge.up_port), b"x")
    eventually(lambda: _web_counter(edge, "outbound.attempt_failed.wrong-server") > before,
               10, what="a wrong-server attempt counted")  # fmt: skip
    # (its log line, once a minute per instance, names both datacenters: the pure test)


def test_an_upstream_whose_key_usage_forbids_signing_is_refused(edge: Edge) -> None:
    # keyEncipherment alone: OpenSSL's TLS server purpose lets it through
    _rogue_is(edge, *forged(edge, "db-enc", "db", key_usage=_key_usage(key_encipherment=True)))
    before = _web_counter(edge, "outbound.attempt_failed.wrong-purpose")
    assert refused(("127.0.0.1", edge.up_port), b"x")  # before the fix: `rogue` came back
    eventually(lambda: _web_counter(edge, "outbound.attempt_failed.wrong-purpose") > before,
               10, what="a wrong-purpose attempt counted")  # fmt: skip


def _web_counter(edge: Edge, name: str) -> int:
    """A counter of web's sidecar, from the counters line it logs on SIGUSR1 (0 if absent)."""
    lines = edge.web_proxy.log().count("counters for web:")
    edge.web_proxy.signal(signal.SIGUSR1)
    eventually(lambda: edge.web_proxy.log().count("counters for web:") > lines, 5,
               what="web's counters line")  # fmt: skip
    last = edge.web_proxy.log().rsplit("counters for web:", 1)[1].splitlines()[0]
    found = re.search(rf"\b{re.escape(name)}=(\d+)", last)
    return int(found.group(1)) if found else 0


def test_sni_and_alpn_select_nothing_and_bypass_nothing(edge: Edge) -> None:
    """Not a fault (a record of the walk): the sidecar presents its one leaf whatever SNI
    names, and agrees to no ALPN value but its own tunnel's; a client naming another service
    and claiming `h2` or an unknown protocol is served as any other, and one with a bad leaf
    is refused as any other."""
    context = _client(edge.tmp / "web.pem", edge.tmp / "web.key")
    context.set_alpn_protocols(["h2", "x-unknown/1"])
    raw = socket.create_connection(edge.cache_in, timeout=10)
    with raw, context.wrap_socket(raw, server_hostname="db.service.consul") as tls:
        tls.sendall(b"ping")
        assert tls.recv(100) == b"ping"
        assert tls.selected_alpn_protocol() is None
        leaf = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [u.endswith("/svc/cache") for u in san.get_values_for_type(
            x509.UniformResourceIdentifier)] == [True]  # fmt: skip
    chain, key = forged(edge, "web-agree-sni", "web", key_usage=_key_usage(key_agreement=True))
    bad = _client(chain, key)
    bad.set_alpn_protocols(["h2"])
    before = _refusals(edge, "wrong-purpose")
    assert _ping(edge, bad) == b""
    eventually(lambda: _refusals(edge, "wrong-purpose") == before + 1, 10,
               what="one more wrong-purpose refusal")  # fmt: skip
