"""The sidecar proxy with a real agent, real proxy processes, real TLS and real apps.

One agent (default policy deny) holds `web` and `db`, each with a sidecar
registration; `web`'s sidecar has the upstream `db` on a local port. Every
byte goes app client -> web's proxy (plain) -> mTLS -> db's proxy -> db's
app and back. Convergence is polled with deadlines, never slept for.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from gossamer.proxy.ca.keys import certificate_pem, load_private_key, private_key_pem
from gossamer.proxy.ca.leaf import issue_leaf
from gossamer.proxy.ca.profile import Issuer
from gossamer.proxy.identity import build_identity
from tests.ca_support import make_intermediate
from tests.harness.cli import gossamer, ok
from tests.harness.cluster import AgentProc, Cluster, exact, free_port, http_json
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    listening,
    read_all,
    refused,
    register_pair,
    roundtrip,
    set_intention,
    sidecar,
    stop_mesh,
    wait_listening,
    web_body,
)

DENIALS = "/v1/connect/intentions/denials"


@dataclass
class Mesh:
    agent: AgentProc
    db_app: App
    web_proxy: ProxyProc
    db_proxy: ProxyProc
    upstream: tuple[str, int]
    tmp: Path
    web_in: int


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("proxy")
    c = Cluster(tmp)
    apps: list[App] = []
    proxies: list[ProxyProc] = []
    try:
        config = tmp / "agent.yaml"
        config.write_text("test_leaf_cert_ttl: 10s\n")  # leaves renew every ~5 s under the tests
        agent = c.new_agent("px1", "--config-file", str(config)).start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        apps.append(db_app := App("127.0.0.1").start())  # the sidecar's default local address
        up_port = free_port("127.0.0.1")
        db_in, web_in = register_pair(agent, db_app.port, up_port)
        set_intention(agent, "web", "db", "allow")
        proxies += [db_proxy := sidecar(agent, tmp, "db"), web_proxy := sidecar(agent, tmp, "web")]
        wait_listening(agent.ip, db_in, db_proxy)
        wait_listening("127.0.0.1", up_port, web_proxy)
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        yield Mesh(agent, db_app, web_proxy, db_proxy, ("127.0.0.1", up_port), tmp, web_in)
    finally:
        leftovers = stop_mesh(c, proxies, apps)
    assert not leftovers, f"processes left behind: {leftovers}"


def through(mesh: Mesh, payload: bytes) -> bytes:
    def attempt() -> bytes:
        got = roundtrip(mesh.upstream, payload)
        assert got, "closed without an answer"
        return got

    return eventually(attempt, 20, what="a round trip through both proxies")


def test_small_and_large_payloads_round_trip_intact_with_half_close(mesh: Mesh) -> None:
    # the proxy reads the agent's default policy here (no --dev: deny)
    assert mesh.agent.get("/v1/agent/self")["DebugConfig"]["IntentionDefaultPolicy"] == "deny"
    assert through(mesh, b"ping") == b"ping<eof>"
    big = os.urandom(8 * 1024 * 1024 + 17)
    assert roundtrip(mesh.upstream, big, timeout=30) == big + b"<eof>"


def test_a_denied_pair_is_refused_then_allowed_then_cut_while_open(mesh: Mesh) -> None:
    through(mesh, b"warm")
    with socket.create_connection(mesh.upstream, timeout=10) as open_conn:
        open_conn.sendall(b"first")
        assert open_conn.recv(100) == b"first"
        set_intention(mesh.agent, "web", "db", "deny")
        started = time.monotonic()
        open_conn.settimeout(5)
        assert read_all(open_conn) == b""  # cut by the proxy, not answered
        assert time.monotonic() - started < 1.5
    assert "connection terminated due to policy change" in mesh.db_proxy.log()

    eventually(lambda: refused(mesh.upstream, b"x"), 5, what="new connections refused under deny")
    assert "denied by web => db (deny" in mesh.db_proxy.log()
    set_intention(mesh.agent, "web", "db", "allow")
    assert through(mesh, b"again") == b"again<eof>"


def denials_of(mesh: Mesh, rule: str) -> list[dict[str, Any]]:
    rows = mesh.agent.get(f"{DENIALS}?source=web&destination=db")
    return [r for r in rows if r["Rule"] == rule]


def test_denials_are_reported_to_the_agent_with_the_rule_that_decided(mesh: Mesh) -> None:
    through(mesh, b"warm")
    set_intention(mesh.agent, "web", "db", "deny")
    deny_id = exact(mesh.agent, "web", "db")["ID"]  # type: ignore[index]
    eventually(lambda: refused(mesh.upstream, b"x"), 5, what="web -> db refused")
    row = eventually(lambda: denials_of(mesh, "web => db (deny)"), 10, what="the deny reported")[0]
    assert (row["IntentionID"], row["Precedence"], row["Count"] >= 1) == (deny_id, 9, True)
    assert row["FirstSeen"] <= row["LastSeen"]
    http_json(f"{mesh.agent.http}/v1/connect/intentions/exact?source=web&destination=db",
              "DELETE")  # fmt: skip  # no intention left: the default policy (deny) decides
    eventually(lambda: refused(mesh.upstream, b"y") and
               denials_of(mesh, "default policy (deny)"), 10,
               what="the default policy's deny reported")  # fmt: skip
    row = denials_of(mesh, "default policy (deny)")[0]
    assert (row["IntentionID"], row["Precedence"]) == ("", 0)
    out = ok("intention", "denials", "--source", "web", "--http-addr", mesh.agent.http)
    assert "web => db  by default policy (deny)" in out and "web => db  by web => db (deny)" in out
    set_intention(mesh.agent, "web", "db", "allow")
    assert through(mesh, b"again") == b"again<eof>"


def test_the_server_half_closing_first_is_relayed_too(mesh: Mesh) -> None:
    greeter = App("127.0.0.1", manner="greeter").start()
    up_port = free_port("127.0.0.1")
    args = ["--service", "web", "--upstream", f"greeter:{up_port}", "--http-addr", mesh.agent.http]
    proxy = ProxyProc(args, mesh.tmp / "greeter-client.log").start()
    greeter_in = free_port(mesh.agent.ip)
    mesh.agent.put("/v1/agent/service/register", {
        "Name": "greeter", "ID": "greeter", "Port": greeter.port,
        "Connect": {"SidecarService": {"Port": greeter_in, "Address": mesh.agent.ip}},
    })  # fmt: skip
    set_intention(mesh.agent, "web", "greeter", "allow")
    server_proxy = sidecar(mesh.agent, mesh.tmp, "greeter")
    try:
        wait_listening(mesh.agent.ip, greeter_in, server_proxy)
        eventually(lambda: healthy_sidecars(mesh.agent, "greeter") == 1, 30, what="greeter up")

        def greeted() -> bool:
            with socket.create_connection(("127.0.0.1", up_port), timeout=10) as s:
                assert read_all(s) == b"hello"  # the server's end, relayed as an end
                s.sendall(b"still heard")  # our direction is still open
                s.shutdown(socket.SHUT_WR)
            return True

        eventually(greeted, 20, what="a greeting through both proxies")
        eventually(lambda: b"still heard" in greeter.received, 10, what="the reply after EOF")
    finally:
        assert proxy.stop() == 0 and server_proxy.stop() == 0
        greeter.stop()
        mesh.agent.put("/v1/agent/service/deregister/greeter")


def test_a_killed_instance_is_retried_on_the_other_without_a_client_error(mesh: Mesh) -> None:
    through(mesh, b"warm")
    db2_in = free_port(mesh.agent.ip)
    mesh.agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db2", "Port": mesh.db_app.port,
        "Connect": {"SidecarService": {"Port": db2_in, "Address": mesh.agent.ip}},
    })  # fmt: skip
    db2 = sidecar(mesh.agent, mesh.tmp, "db2")
    try:
        wait_listening(mesh.agent.ip, db2_in, db2)
        eventually(lambda: healthy_sidecars(mesh.agent, "db") == 2, 30, what="two db instances")
        assert db2.proc is not None
        db2.proc.kill()  # its health check still passes for up to 10 s
        db2.proc.wait(10)
        # Until web's sidecar has tried the dead one (it hears of db2 a moment after the agent
        # does: 30 connections in a row once all went to db1, in CI), each connection is
        # answered, and the failed attempt is counted.
        answers: list[bytes | str] = []

        def retried() -> bool:
            n = len(answers)
            try:
                answers.append(roundtrip(mesh.upstream, b"n%d" % n))
            except OSError as exc:  # (kept: a client error must fail the test, not wait)
                answers.append(repr(exc))
            mesh.web_proxy.signal(signal.SIGUSR1)
            return "outbound.attempt_failed.connect-failed=" in mesh.web_proxy.log()

        eventually(retried, 20, interval=0.1, what="a failed attempt at db2, counted")
        assert answers == [b"n%d<eof>" % n for n in range(len(answers))]
    finally:
        mesh.agent.put("/v1/agent/service/deregister/db2")


def test_an_upstream_added_to_the_registration_opens_without_a_restart(mesh: Mesh) -> None:
    up_port = mesh.upstream[1]
    cache_port = free_port("127.0.0.1")
    with socket.create_connection(mesh.upstream, timeout=10) as kept:
        kept.sendall(b"before")
        assert kept.recv(100) == b"before"
        both = [{"DestinationName": "db", "LocalBindPort": up_port},
                {"DestinationName": "cache", "LocalBindPort": cache_port}]  # fmt: skip
        mesh.agent.put("/v1/agent/service/register", web_body(mesh.agent, mesh.web_in, both))
        wait_listening("127.0.0.1", cache_port, mesh.web_proxy)
        started = time.monotonic()
        assert refused(("127.0.0.1", cache_port), b"x")  # no cache instance at all
        assert time.monotonic() - started < 1
        assert "upstream cache: client connection closed (no-healthy-instance)" in (
            mesh.web_proxy.log()
        )
        only_db = [{"DestinationName": "db", "LocalBindPort": up_port}]
        mesh.agent.put("/v1/agent/service/register", web_body(mesh.agent, mesh.web_in, only_db))
        eventually(
            lambda: not listening("127.0.0.1", cache_port), 10, what="cache's listener closed"
        )
        kept.sendall(b"after")  # the db connection was never disturbed
        assert kept.recv(100) == b"after"


def test_a_changed_upstream_hands_its_port_over_without_refusing_a_connect(mesh: Mesh) -> None:
    """A changed upstream is a new listener on the same port: it takes over the old one's
    socket once warm, so a client connecting all the while is never refused (the old one
    used to close first, refusing connects until the new one's health answer came)."""
    up_port = mesh.upstream[1]
    stop, refusals, connects = threading.Event(), [], [0]

    def probe() -> None:
        while not stop.wait(0.002):  # a connect every 2 ms: the old gap was several
            try:
                socket.create_connection(mesh.upstream, timeout=10).close()
                connects[0] += 1
            except OSError as exc:
                refusals.append(exc)

    def changed(config: dict[str, object]) -> None:
        said = mesh.web_proxy.log().count("upstream db listening")
        up = {"DestinationName": "db", "LocalBindPort": up_port, "Config": config}
        mesh.agent.put("/v1/agent/service/register", web_body(mesh.agent, mesh.web_in, [up]))
        eventually(lambda: mesh.web_proxy.log().count("upstream db listening") > said, 10,
                   what="its successor listening")  # fmt: skip

    prober = threading.Thread(target=probe, daemon=True)
    with socket.create_connection(mesh.upstream, timeout=10) as kept:
        kept.sendall(b"before")
        assert kept.recv(100) == b"before"
        prober.start()
        try:
            changed({"connect_timeout_ms": 3000})
            assert roundtrip(mesh.upstream, b"new") == b"new<eof>"
            changed({})  # back as it was
        finally:
            stop.set()
            prober.join(10)
        kept.sendall(b"after")  # a connection of the old listener goes on
        assert kept.recv(100) == b"after"
    assert connects[0] > 0 and refusals == []


def test_an_http_upstream_with_no_instance_answers_503_and_says_why(mesh: Mesh) -> None:
    agent, port = mesh.agent, free_port("127.0.0.1")
    up = {"DestinationName": "ghost", "LocalBindPort": port, "Config": {"protocol": "http"}}
    body = web_body(agent, free_port(agent.ip), [up])
    agent.put("/v1/agent/service/register", body | {"Name": "ghosty", "ID": "ghosty"})
    proxy = sidecar(agent, mesh.tmp, "ghosty")
    try:
        wait_listening("127.0.0.1", port, proxy)
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: ghost\r\nConnection: close\r\n\r\n")
                assert read_all(s).startswith(b"HTTP/1.1 503 ")
        said = "upstream ghost: request answered 503 (no-healthy-instance): 0 instance(s) tried"
        assert proxy.log().count(said) == 1  # once a minute
    finally:
        proxy.stop()
        agent.put("/v1/agent/service/deregister/ghosty", None)


def test_leaves_renew_under_load_with_no_failed_request(mesh: Mesh) -> None:
    def serials() -> set[str]:
        return set(re.findall(r"identity for db, leaf serial (\S+)", mesh.db_proxy.log()))

    before = serials()
    deadline = time.monotonic() + 30  # a bound in time: a reused tunnel makes requests fast
    with socket.create_connection(mesh.upstream, timeout=10) as kept:
        sent = 0
        while len(serials() - before) < 1:  # ~5 s: the 10 s leaves renew at half-life
            assert roundtrip(mesh.upstream, b"load") == b"load<eof>"
            kept.sendall(b"k")
            assert kept.recv(10) == b"k"
            sent += 1
            assert time.monotonic() < deadline, "no renewal seen"
        for _ in range(20):  # and after it, over tunnels made with the new leaf
            assert roundtrip(mesh.upstream, b"load") == b"load<eof>"
    assert sent > 0  # every request before, during and after the renewal succeeded


def test_a_root_rotation_under_load_fails_no_request(mesh: Mesh) -> None:
    def identities() -> int:
        return mesh.db_proxy.log().count("identity for db") + mesh.web_proxy.log().count(
            "identity for web"
        )

    before_root = mesh.agent.get("/v1/connect/ca/roots")["ActiveRootID"]
    mesh.agent.put("/v1/connect/ca/configuration", {"Provider": "consul", "ForceRotate": True})
    seen = identities()
    rounds = 0
    while rounds < 40 or identities() < seen + 2:  # both proxies rebuilt for the new root
        assert roundtrip(mesh.upstream, b"rot") == b"rot<eof>"
        rounds += 1
        assert rounds < 4000, "the proxies never took the new root"
    assert mesh.agent.get("/v1/connect/ca/roots")["ActiveRootID"] != before_root
    mesh.web_proxy.signal(signal.SIGHUP)  # re-reads everything; nothing breaks
    eventually(lambda: "SIGHUP" in mesh.web_proxy.log(), 10, what="the SIGHUP logged")
    for _ in range(20):
        assert roundtrip(mesh.upstream, b"hup") == b"hup<eof>"


def test_a_connection_whose_root_left_the_bundle_is_cut(mesh: Mesh) -> None:
    """A root rotated out (say, for being compromised) is no longer trusted by new
    handshakes, and no longer by open connections either: one opened with a leaf chained to
    it (made here with the root's key from the agent's data dir, valid an hour) is cut once
    that root leaves the bundle. It used to go on for as long as its leaf lived."""
    roots = mesh.agent.get("/v1/agent/connect/ca/roots")
    (active,) = [r for r in roots["Roots"] if r["Active"]]
    root = Issuer(x509.load_pem_x509_certificate(active["RootCert"].encode()), load_private_key(
        (mesh.agent.data_dir / "identity" / "root-key.pem").read_bytes(), "root"))  # fmt: skip
    issuer = make_intermediate(root, datetime.now(UTC))
    leaf = issue_leaf(issuer, "dc1", "web", datetime.now(UTC), ttl=timedelta(hours=1))
    forged = {"CertPEM": certificate_pem(leaf.certificate) + certificate_pem(issuer.certificate),
              "PrivateKeyPEM": private_key_pem(leaf.private_key)}  # fmt: skip
    context = build_identity(forged, roots).client
    context.verify_mode = ssl.CERT_NONE  # (db's leaf may chain to either root meanwhile)
    sidecar_of_db = mesh.agent.get("/v1/agent/service/db-sidecar-proxy")
    address = (sidecar_of_db["Address"], sidecar_of_db["Port"])
    with context.wrap_socket(socket.create_connection(address, timeout=10)) as held:
        held.sendall(b"held")
        assert held.recv(100) == b"held"
        mesh.agent.put("/v1/connect/ca/configuration", {"Provider": "consul", "ForceRotate": True})
        eventually(lambda: active["ID"] not in [r["ID"] for r in mesh.agent.get(
            "/v1/agent/connect/ca/roots")["Roots"]], 60, what="the old root retired")  # fmt: skip
        held.settimeout(10)
        with contextlib.suppress(ssl.SSLError, ConnectionResetError):  # (cut either way)
            assert held.recv(100) == b"", "the connection went on"
    assert "a root left the trust bundle; 1 open connection(s) cut" in mesh.db_proxy.log()


def test_a_drain_waits_for_a_connection_still_in_its_handshake(mesh: Mesh) -> None:
    """A client accepted before SIGTERM whose handshake is not done yet is an open
    connection too: the drain waits for it (it finishes its handshake and is served), where
    it used to count 0 connections, exit at once and cut that client."""
    db3_in = free_port(mesh.agent.ip)
    mesh.agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db3", "Port": mesh.db_app.port,
        "Connect": {"SidecarService": {"Port": db3_in, "Address": mesh.agent.ip}},
    })  # fmt: skip
    db3 = ProxyProc(["--sidecar-for", "db3", "--http-addr", mesh.agent.http, "--drain-timeout",
                     "20"], mesh.tmp / "proxy-db3.log").start()  # fmt: skip
    try:
        wait_listening(mesh.agent.ip, db3_in, db3)
        context = build_identity(mesh.agent.get("/v1/agent/connect/ca/leaf/web"),
                                 mesh.agent.get("/v1/agent/connect/ca/roots")).client  # fmt: skip
        context.verify_mode = ssl.CERT_NONE
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=False)
        with socket.create_connection((mesh.agent.ip, db3_in), timeout=10) as s:
            with contextlib.suppress(ssl.SSLWantReadError):
                tls.do_handshake()
            s.sendall(outgoing.read())
            while True:  # the server's flight read; the client's last one held back
                incoming.write(s.recv(65536))
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pass
            last_flight = outgoing.read()
            db3.signal(signal.SIGTERM)
            eventually(lambda: "draining 1 open connection(s)" in db3.log(), 10,
                       what="the drain counting the connection in its handshake")  # fmt: skip
            tls.write(b"late")
            s.sendall(last_flight + outgoing.read())
            got = b""
            while b"late" not in got:
                incoming.write(chunk := s.recv(65536))
                assert chunk, "cut before its answer"
                with contextlib.suppress(ssl.SSLWantReadError):
                    got += tls.read(100)
        assert db3.proc is not None and db3.proc.wait(15) == 0
    finally:
        db3.stop()
        mesh.agent.put("/v1/agent/service/deregister/db3")


def test_sigterm_drains_open_connections_then_exits_0(mesh: Mesh) -> None:
    up_port = free_port("127.0.0.1")
    proxy = ProxyProc(["--service", "web", "--upstream", f"db:{up_port}", "--drain-timeout", "20",
                       "--http-addr", mesh.agent.http], mesh.tmp / "drain.log").start()  # fmt: skip
    wait_listening("127.0.0.1", up_port, proxy)
    # until the proxy knows db's instances a connection is turned away: a new one each try
    with eventually(lambda: _echoing(("127.0.0.1", up_port)), 20,
                    what="the ad-hoc proxy to reach db") as kept:  # fmt: skip
        proxy.signal(signal.SIGTERM)
        drain = eventually(lambda: re.search(r"draining (\d+) open connection", proxy.log()), 10,
                           what="the drain")  # fmt: skip
        # the kept one, and maybe wait_listening's probe: relayed too, its end still on its way
        assert int(drain.group(1)) >= 1
        assert not listening("127.0.0.1", up_port)  # new connections are refused
        assert _echoes(kept)  # the open one still works
        kept.shutdown(socket.SHUT_WR)
        assert read_all(kept) == b"<eof>"
    assert proxy.proc is not None
    assert proxy.proc.wait(10) == 0  # the drain ended with the last connection, long before 20 s


def test_a_drain_waits_for_the_connections_of_a_listener_a_change_replaced(mesh: Mesh) -> None:
    """An upstream moved to another port: its old listener closes, its connection goes on,
    and SIGTERM's drain still counts it, waits for it and exits once it has ended."""
    agent, old_port, new_port = mesh.agent, free_port("127.0.0.1"), free_port("127.0.0.1")

    def register(port: int) -> None:
        body = web_body(agent, free_port(agent.ip), [{"DestinationName": "db",
                                                       "LocalBindPort": port}])  # fmt: skip
        agent.put("/v1/agent/service/register", body | {"Name": "drainy", "ID": "drainy"})

    register(old_port)
    set_intention(agent, "drainy", "db", "allow")
    proxy = ProxyProc(["--sidecar-for", "drainy", "--drain-timeout", "20", "--http-addr",
                       agent.http], mesh.tmp / "drainy.log").start()  # fmt: skip
    try:
        wait_listening("127.0.0.1", old_port, proxy)
        with eventually(lambda: _echoing(("127.0.0.1", old_port)), 20,
                        what="drainy's proxy to reach db") as kept:  # fmt: skip
            register(new_port)
            wait_listening("127.0.0.1", new_port, proxy)
            eventually(lambda: not listening("127.0.0.1", old_port), 10, what="the old closed")
            assert _echoes(kept)  # its connection goes on
            proxy.signal(signal.SIGTERM)
            drain = eventually(lambda: re.search(r"draining (\d+) open connection", proxy.log()),
                               10, what="the drain")  # fmt: skip
            assert int(drain.group(1)) >= 1
            assert _echoes(kept)  # still relayed while the drain waits for it
            late_port = free_port("127.0.0.1")
            register(late_port)  # a change while draining opens nothing
            eventually(lambda: "nothing more is opened" in proxy.log(), 10, what="the change")
            assert not listening("127.0.0.1", late_port)
            kept.shutdown(socket.SHUT_WR)
            assert read_all(kept) == b"<eof>"
        assert proxy.proc is not None
        assert proxy.proc.wait(10) == 0
    finally:
        proxy.stop()
        agent.put("/v1/agent/service/deregister/drainy", None)


def test_an_inbound_port_a_change_cannot_open_is_tried_again_and_the_rest_applies(
    mesh: Mesh,
) -> None:
    """The inbound listener moves to a port something else holds: the upstream the same
    change adds opens all the same, and the inbound port opens once it is free."""
    agent = mesh.agent
    first, second, up = free_port(agent.ip), free_port(agent.ip), free_port("127.0.0.1")

    def register(inbound: int, upstreams: list[dict[str, object]]) -> None:
        body = web_body(agent, inbound, upstreams)
        agent.put("/v1/agent/service/register", body | {"Name": "busy", "ID": "busy"})

    register(first, [])
    proxy = sidecar(agent, mesh.tmp, "busy")
    try:
        wait_listening(agent.ip, first, proxy)
        with socket.create_server((agent.ip, second)):  # taken
            register(second, [{"DestinationName": "db", "LocalBindPort": up}])
            wait_listening("127.0.0.1", up, proxy)  # the rest of the change applied
            eventually(lambda: "cannot be opened" in proxy.log(), 10, what="the busy port")
        wait_listening(agent.ip, second, proxy, timeout=20)  # free now: opened on a retry
        assert not listening(agent.ip, first)
    finally:
        proxy.stop()
        agent.put("/v1/agent/service/deregister/busy", None)


def _echoing(address: tuple[str, int]) -> socket.socket | None:
    """A connection through which db echoes, or None (it was turned away)."""
    s = socket.create_connection(address, timeout=10)
    try:
        if _echoes(s):
            return s
    except (AssertionError, OSError):
        pass
    s.close()
    return None


def _echoes(s: socket.socket) -> bool:
    s.sendall(b"echo?")
    got = s.recv(100)
    assert got == b"echo?", got
    return True


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--service", "web", "--upstream", "db"], "--upstream 'db': expected NAME:PORT"),
        (["--service", "web", "--upstream", "db:99999"], "--upstream 'db:99999': port must be"),
        (["--sidecar-for", "nope"], "no sidecar registration 'nope-sidecar-proxy'"),
        (["--sidecar-for", "web", "--upstream", "x:1"], "go with --service"),
    ],
)
def test_bad_flags_exit_2_naming_them(mesh: Mesh, args: list[str], says: str) -> None:
    result = gossamer("connect", "proxy", *args, "--http-addr", mesh.agent.http)
    assert result.returncode == 2 and says in result.stderr, result.stderr
