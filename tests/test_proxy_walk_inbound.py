"""An operator's and an attacker's walk over a real sidecar's L4 inbound port.

One real agent (default policy deny) holds `db` with a real sidecar process
(its metrics served), and `web` and `api` without sidecars: their leaves,
asked of the agent's CA API, are the clients' (`web => db` allowed, `api =>
db` denied). The bad certificates are signed with the mesh's real root key
(read from the agent's data dir, as a compromised host could), so each is
refused by the check it is about, not as a stranger. Clients are
`openssl s_client` and Python's `ssl`. Convergence is polled, never slept for.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca.intermediate import sign_agent_certificate
from gossamer.proxy.ca.keys import (
    certificate_pem,
    generate_key,
    load_private_key,
    private_key_pem,
)
from gossamer.proxy.ca.leaf import issue_leaf
from gossamer.proxy.ca.profile import Issuer, common_name, end_entity_builder, sign
from gossamer.proxy.identity_watch import IdentityWatch
from tests.ca_support import make_intermediate
from tests.harness.binaries import cannot_run, find_binary
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_pki import Pki
from tests.proxy_support import (
    App,
    ProxyProc,
    read_all,
    series,
    set_intention,
    sidecar,
    stop_mesh,
    wait_listening,
)


@dataclass
class Walk:
    agent: AgentProc
    db_proxy: ProxyProc
    inbound: tuple[str, int]  # db's sidecar, as other sidecars reach it
    metrics: str
    tmp: Path
    app: App


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    tmp = tmp_path_factory.mktemp("walk-inbound")
    c = Cluster(tmp)
    apps: list[App] = []
    proxies: list[ProxyProc] = []
    try:
        config = tmp / "agent.yaml"
        config.write_text("intentions: {default_policy: deny}\n")
        agent = c.new_agent("wi1", "--config-file", str(config)).start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        apps.append(app := App("127.0.0.1").start())
        db_in, metrics = free_port(agent.ip), free_port("127.0.0.1")
        agent.put("/v1/agent/service/register", {
            "Name": "db", "ID": "db", "Port": app.port, "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip, "Proxy": {
                "Config": {"gossamer_metrics_bind_addr": f"127.0.0.1:{metrics}"}}}},
        })  # fmt: skip
        for name in ("web", "api"):
            agent.put("/v1/agent/service/register",
                      {"Name": name, "ID": name, "Port": 1, "Address": "127.0.0.1"})  # fmt: skip
            write_leaf(tmp, name, agent.get(f"/v1/agent/connect/ca/leaf/{name}"))
        set_intention(agent, "web", "db", "allow")
        set_intention(agent, "api", "db", "deny")
        proxies.append(db_proxy := sidecar(agent, tmp, "db"))
        wait_listening(agent.ip, db_in, db_proxy)
        yield Walk(agent, db_proxy, (agent.ip, db_in), f"127.0.0.1:{metrics}", tmp, app)
    finally:
        leftovers = stop_mesh(c, proxies, apps)
    assert not leftovers, f"processes left behind: {leftovers}"


def write_leaf(tmp: Path, name: str, leaf: dict[str, Any]) -> None:
    """`name.pem` (leaf then intermediate, as the agent answers) and `name.key`."""
    (tmp / f"{name}.pem").write_text(leaf["CertPEM"])
    (tmp / f"{name}.key").write_text(leaf["PrivateKeyPEM"])


def context_of(walk: Walk, name: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.load_cert_chain(walk.tmp / f"{name}.pem", walk.tmp / f"{name}.key")
    return context


def echo(walk: Walk, context: ssl.SSLContext, session: ssl.SSLSession | None = None
         ) -> tuple[bytes, ssl.SSLSession | None, bool]:  # fmt: skip
    """One connection: `ping` sent, what came back, the session (with its ticket), resumed?"""
    raw = socket.create_connection(walk.inbound, timeout=10)
    with raw, context.wrap_socket(raw, session=session) as tls:
        got = b""
        with contextlib.suppress(ssl.SSLError, ConnectionResetError):
            tls.sendall(b"ping")
            got = tls.recv(100)
        return got, tls.session, tls.session_reused


def s_client(walk: Walk, *args: str) -> str:
    """`openssl s_client` to db's sidecar, sending a line; its output until the line comes
    back or the sidecar closes (s_client then ends)."""
    openssl = find_binary("openssl")
    if openssl is None:
        cannot_run("openssl not installed")
    argv = [openssl, "s_client", "-connect", "{}:{}".format(*walk.inbound), "-quiet", *args]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    timer = threading.Timer(20, proc.kill)
    timer.start()
    try:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(b"walking\n")
            proc.stdin.flush()
        out = b""
        while b"walking" not in out and (line := proc.stdout.readline()):
            out += line
        return out.decode(errors="replace")
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()


def refusals(walk: Walk, reason: str) -> float:
    return series(walk.metrics, "gossamer_proxy_refused_total", direction="inbound", reason=reason)


def counted(walk: Walk, reason: str, before: float) -> None:
    eventually(lambda: refusals(walk, reason) == before + 1, 10, what=f"one more {reason}")


def forged(walk: Walk, kind: str) -> str:
    """A client certificate signed under the mesh's real root (as a host holding the key could):
    `expired`, `https` (a URI outside the root's name constraints), `not-spiffe` (a SPIFFE
    ID of this trust domain naming no service or agent), `foreign` (a service of another
    trust domain), `agent`, `server` (web's SPIFFE ID with a host name, as a server's leaf),
    `server-only` (web's, for server auth alone). Its name."""
    roots = walk.agent.get("/v1/agent/connect/ca/roots")
    (active,) = [r for r in roots["Roots"] if r["Active"]]
    key_pem = (walk.agent.data_dir / "identity" / "root-key.pem").read_bytes()
    root = Issuer(x509.load_pem_x509_certificate(active["RootCert"].encode()),
                  load_private_key(key_pem, "root"))  # fmt: skip
    now = datetime.now(UTC)
    issuer = make_intermediate(root, now - timedelta(days=3))
    key = generate_key()
    if kind == "expired":
        leaf = issue_leaf(issuer, "dc1", "web", now - timedelta(days=2), ttl=timedelta(hours=1))
        cert, key = leaf.certificate, leaf.private_key
    elif kind == "agent":
        agent_id = AgentId(roots["TrustDomain"], "dc1", "node-id-1")
        cert = sign_agent_certificate(issuer, key.public_key(), agent_id, now, node_name="x")
    elif kind in ("server", "server-only"):  # a server's leaf: hosts, or server auth alone
        web = f"spiffe://{roots['TrustDomain']}/ns/default/dc/dc1/svc/web"
        builder = end_entity_builder(common_name("web"), key.public_key(), web,
                                     hosts=[x509.DNSName("web.example")] if kind == "server"
                                     else [])  # fmt: skip
        if kind == "server-only":
            builder = _server_auth_only(builder)
        cert = sign(builder, issuer, now, timedelta(hours=1))
    else:
        uri = {"https": "https://web.example/",
               "not-spiffe": f"spiffe://{roots['TrustDomain']}/web",
               "foreign": "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/"
                          "dc1/svc/web"}[kind]  # fmt: skip
        cert = sign(end_entity_builder(common_name("web"), key.public_key(), uri), issuer, now,
                    timedelta(hours=1))  # fmt: skip
    chain = certificate_pem(cert) + certificate_pem(issuer.certificate)
    write_leaf(walk.tmp, kind, {"CertPEM": chain, "PrivateKeyPEM": private_key_pem(key)})
    return kind


def _server_auth_only(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    """The same builder with its extended key usage server auth alone."""
    rebuilt = x509.CertificateBuilder().subject_name(builder._subject_name)  # type: ignore[attr-defined]
    rebuilt = rebuilt.public_key(builder._public_key)  # type: ignore[attr-defined]
    for ext in builder._extensions:  # type: ignore[attr-defined]
        value = ext.value
        if isinstance(value, x509.ExtendedKeyUsage):
            value = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
        rebuilt = rebuilt.add_extension(value, critical=ext.critical)
    return rebuilt


def test_an_unchanged_leaf_and_roots_answer_keeps_the_identity() -> None:
    """An answer delivered again as it was (SIGHUP asks for everything again; an agent back
    from a restart answers from a lower index) changes nothing: the identity, its TLS
    contexts and their ticket keys stay, so the sessions issued under them still resume
    and the outbound side's tickets and shared connections stay current. Each such answer
    used to build new contexts, as a new leaf does."""
    pki = Pki()
    watch = IdentityWatch("db", lambda: 0)
    leaf, roots = pki.leaf_json("db"), pki.roots_json()
    watch.on_leaf(leaf)
    watch.on_roots(roots)
    first = watch.identity
    assert first is not None
    watch.on_leaf(dict(leaf))
    watch.on_roots(dict(roots))
    assert watch.identity is first
    watch.on_leaf(pki.leaf_json("db"))  # a renewed leaf: new contexts
    assert watch.identity is not first and watch.identity is not None


def test_a_session_ticket_from_before_sighup_still_resumes(walk: Walk) -> None:
    web = context_of(walk, "web")
    got, session, _ = echo(walk, web)
    assert got == b"ping" and session is not None and session.has_ticket

    def updates() -> float:
        return series(walk.metrics, "gossamer_proxy_events_total", event="intentions.updates")

    before = updates()
    walk.db_proxy.signal(signal.SIGHUP)  # every watch asks again: the intentions' answer too
    eventually(lambda: updates() > before, 10, what="the intentions read again")
    for _ in range(10):  # (the leaf and roots answers come with it)
        got, _, resumed = echo(walk, web, session)
        assert (got, resumed) == (b"ping", True)


def test_openssl_clients_without_a_good_certificate_are_refused_by_reason(walk: Walk) -> None:
    web = ("-cert", str(walk.tmp / "web.pem"), "-cert_chain", str(walk.tmp / "web.pem"),
           "-key", str(walk.tmp / "web.key"))  # fmt: skip
    assert "walking" in s_client(walk, *web)  # allowed: echoed
    assert "walking" in s_client(walk, *web, "-noservername")
    cases: list[tuple[str, tuple[str, ...]]] = [
        ("no-certificate", ()),
        ("not-tls", ("-tls1_2", *web)),  # TLS 1.2 is not spoken at all
        (
            "unknown-issuer",
            ("-cert", str(walk.tmp / "web.pem"), "-key", str(walk.tmp / "web.key")),
        ),  # (its intermediate left out)
    ]
    rogue = Pki().leaf_json("web")  # another mesh's CA, the same service name
    write_leaf(walk.tmp, "rogue", rogue)
    for name, reason in (("rogue", "unknown-issuer"), (forged(walk, "expired"), "expired"),
                         (forged(walk, "https"), "foreign-trust-domain"),
                         (forged(walk, "not-spiffe"), "not-spiffe"),
                         (forged(walk, "foreign"), "foreign-trust-domain"),
                         (forged(walk, "agent"), "not-a-service"),
                         (forged(walk, "server"), "not-spiffe"),
                         (forged(walk, "server-only"), "wrong-purpose"),
                         ("api", "denied")):  # fmt: skip
        pem, key = str(walk.tmp / f"{name}.pem"), str(walk.tmp / f"{name}.key")
        cases.append((reason, ("-cert", pem, "-cert_chain", pem, "-key", key)))
    for reason, args in cases:
        before = refusals(walk, reason)
        assert "walking" not in s_client(walk, *args), reason
        counted(walk, reason, before)
    assert "walking" in s_client(walk, *web)  # and the good client still gets through


def test_plaintext_and_garbage_are_refused_as_not_tls(walk: Walk) -> None:
    for data in (b"GET / HTTP/1.1\r\nHost: db\r\n\r\n", b"\x16\x03\x01\x00\x05hello" + bytes(64)):
        before = refusals(walk, "not-tls")
        with socket.create_connection(walk.inbound, timeout=10) as s:
            s.sendall(data)
            with contextlib.suppress(ConnectionResetError):
                answer = read_all(s)  # nothing, or a TLS alert (0x15) to the garbage
                assert answer == b"" or answer.startswith(b"\x15"), answer
        counted(walk, "not-tls", before)


def test_a_resumed_session_is_decided_again(walk: Walk) -> None:
    """A ticket got while allowed, offered after the intention flips to deny: the resumed
    connection is refused (denied), then let in again once allowed."""
    web = context_of(walk, "web")
    got, session, _ = echo(walk, web)
    assert got == b"ping"
    try:
        set_intention(walk.agent, "web", "db", "deny")
        before = refusals(walk, "denied")

        def refused_resumed() -> bool:
            got, _, resumed = echo(walk, web, session)
            return got == b"" and resumed

        eventually(refused_resumed, 10, what="the resumed session refused")
        # (polled: the scrape is a connection of its own, which a loaded machine may serve
        # before the refusal's count lands; a refusal counted under another reason fails)
        eventually(lambda: refusals(walk, "denied") > before, 10, what="it counted as denied")
    finally:
        set_intention(walk.agent, "web", "db", "allow")
    eventually(lambda: echo(walk, web, session)[::2] == (b"ping", True), 10, what="let in again")


def test_a_connection_open_at_the_drain_timeout_is_cut_and_the_exit_is_0(walk: Walk) -> None:
    """SIGTERM: new connections refused, the open one served until the drain timeout, then
    cut; the exit code is still 0."""
    port = free_port(walk.agent.ip)
    proxy = ProxyProc(["--service", "db", "--listen", f"{walk.agent.ip}:{port}", "--local",
                       f"127.0.0.1:{walk.app.port}", "--drain-timeout", "2", "--http-addr",
                       walk.agent.http], walk.tmp / "drain.log").start()  # fmt: skip
    try:
        wait_listening(walk.agent.ip, port, proxy)
        web = context_of(walk, "web")
        with web.wrap_socket(socket.create_connection((walk.agent.ip, port), timeout=10)) as kept:
            kept.sendall(b"one")
            assert kept.recv(10) == b"one"
            proxy.signal(signal.SIGTERM)
            eventually(lambda: re.search(r"draining [1-9]\d* open", proxy.log()), 10,
                       what="the drain")  # fmt: skip
            with pytest.raises(OSError):
                socket.create_connection((walk.agent.ip, port), timeout=2).close()
            kept.sendall(b"two")
            assert kept.recv(10) == b"two"  # still served while the drain waits
            kept.settimeout(10)
            with contextlib.suppress(ssl.SSLError, ConnectionResetError):
                assert kept.recv(10) == b""  # cut at the drain timeout
        assert proxy.proc is not None and proxy.proc.wait(10) == 0
        assert "drain timeout: cutting 1 connection(s)" in proxy.log()
    finally:
        proxy.stop()


def test_a_client_that_refuses_the_sidecars_certificate_is_not_counted_as_not_tls(
    walk: Walk,
) -> None:
    """A client whose trust bundle lacks the sidecar's root (one behind two rotations, or
    another mesh's) ends the handshake with an alert. That peer spoke TLS: it is counted
    `peer-refused`, not `not-tls` (plaintext or garbage), which is what a burst of them
    after a rotation used to look like."""
    context = context_of(walk, "web")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=str(Pki().roots_json()["Roots"][0]["RootCert"]))  # type: ignore[index]
    before = {r: refusals(walk, r) for r in ("not-tls", "peer-refused")}
    with pytest.raises(ssl.SSLCertVerificationError):
        echo(walk, context)
    counted(walk, "peer-refused", before["peer-refused"])
    assert refusals(walk, "not-tls") == before["not-tls"]
    failures = series(walk.metrics, "gossamer_proxy_tls_handshake_failures_total",
                      direction="inbound", reason="peer-refused")  # fmt: skip
    assert failures >= 1


def test_a_client_with_nagles_algorithm_on_is_not_held_40_ms_per_connection(walk: Walk) -> None:
    """Python's `ssl` leaves Nagle's algorithm on, as most TLS clients do: its first bytes
    wait for the ACK of its Finished. The sidecar answers Finished with the session ticket
    at once, so that ACK is not delayed 40 ms (it was, on every new connection)."""
    web = context_of(walk, "web")
    spent = []
    for _ in range(7):
        started = time.monotonic()
        assert echo(walk, web)[0] == b"ping"
        spent.append(time.monotonic() - started)
    assert sorted(spent)[3] < 0.03, spent  # (a delayed ACK is 40 ms at least)
