"""A session ticket outlives its client's trust: resuming it must not bring the client back.

Two real agents: `wv1` holds `db` and its sidecar, `wv2` holds `web`
(no sidecar: its leaf, asked of wv2's CA API, is the client's, issued by
wv2's intermediate). A Python `ssl` client gets a ticket while allowed;
wv2 is revoked (`ca revoke-agent`); the ticket, still one the sidecar's
TLS context takes (a revocation builds no new context), resumes, and the
connection is refused as `revoked`, counted, nothing reaching the app.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    series,
    set_intention,
    sidecar,
    stop_mesh,
    wait_listening,
)


@dataclass
class Revoking:
    db_agent: AgentProc
    web_agent: AgentProc
    inbound: tuple[str, int]
    metrics: str
    tmp: Path
    app: App
    client: ssl.SSLContext  # web's, one for all (a session resumes only with its context)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Revoking]:
    tmp = tmp_path_factory.mktemp("walk-revoked")
    c = Cluster(tmp)
    apps: list[App] = []
    proxies: list[ProxyProc] = []
    try:
        db_agent, web_agent = c.start(2, prefix="wv")
        apps.append(app := App("127.0.0.1").start())
        db_in, metrics = free_port(db_agent.ip), free_port("127.0.0.1")
        db_agent.put("/v1/agent/service/register", {
            "Name": "db", "ID": "db", "Port": app.port, "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": db_in, "Address": db_agent.ip, "Proxy": {
                "Config": {"gossamer_metrics_bind_addr": f"127.0.0.1:{metrics}"}}}},
        })  # fmt: skip
        web_agent.put("/v1/agent/service/register",
                      {"Name": "web", "ID": "web", "Port": 1, "Address": "127.0.0.1"})  # fmt: skip
        leaf = web_agent.get("/v1/agent/connect/ca/leaf/web")
        (tmp / "web.pem").write_text(leaf["CertPEM"])
        (tmp / "web.key").write_text(leaf["PrivateKeyPEM"])
        set_intention(db_agent, "web", "db", "allow")
        proxies.append(db_proxy := sidecar(db_agent, tmp, "db"))
        wait_listening(db_agent.ip, db_in, db_proxy)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
        client.load_cert_chain(tmp / "web.pem", tmp / "web.key")
        yield Revoking(db_agent, web_agent, (db_agent.ip, db_in), f"127.0.0.1:{metrics}", tmp,
                       app, client)  # fmt: skip
    finally:
        leftovers = stop_mesh(c, proxies, apps)
    assert not leftovers, f"processes left behind: {leftovers}"


def echo(m: Revoking, session: ssl.SSLSession | None) -> tuple[bytes, ssl.SSLSession, bool]:
    raw = socket.create_connection(m.inbound, timeout=10)
    with raw, m.client.wrap_socket(raw, session=session) as tls:
        got = b""
        with contextlib.suppress(ssl.SSLError, ConnectionResetError):
            tls.sendall(b"ping")
            got = tls.recv(100)
        return got, tls.session, tls.session_reused


def revoked(m: Revoking) -> float:
    return series(m.metrics, "gossamer_proxy_refused_total", direction="inbound",
                  reason="revoked")  # fmt: skip


def test_a_ticket_resumed_after_its_clients_agent_is_revoked_is_refused(mesh: Revoking) -> None:
    def let_in() -> ssl.SSLSession | None:
        got, session, _ = echo(mesh, None)
        return session if got == b"ping" else None

    session = eventually(let_in, 20, what="web let in")
    assert session.has_ticket
    got, session2, resumed = echo(mesh, session)
    assert (got, resumed) == (b"ping", True)
    accepted = mesh.app.accepted
    mesh.db_agent.put(f"/v1/connect/ca/revoke-agent/{mesh.web_agent.name}", {"Reason": "walk"})

    log = mesh.tmp / "proxy-db.log"
    eventually(lambda: "1 revoked agent intermediate(s)" in log.read_text(), 10,
               what="the revocation known to db's sidecar")  # fmt: skip
    before = revoked(mesh)
    got, _, resumed = echo(mesh, session2)
    assert (got, resumed) == (b"", True)  # the ticket was taken, its client was not
    eventually(lambda: revoked(mesh) == before + 1, 10, what="counted as revoked")
    assert mesh.app.accepted == accepted  # nothing reached the app
    assert echo(mesh, None)[0] == b""  # nor does a full handshake with that leaf
