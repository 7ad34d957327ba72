"""Live policy, SIGHUP and drain on the pooled HTTP/1 path, under steady keep-alive load.

tests/test_proxy_http.py's mesh: `web2`'s sidecar has `db` as an HTTP upstream (requests go
over pooled mTLS mux streams to `db`'s sidecar), `web` has it as a plain upstream. Several
keep-alive client connections send requests in a loop while an intention is flipped or a
sidecar is signalled; each answer is recorded with the connection it came on and when.
"""

from __future__ import annotations

import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.harness.cluster import put_exact
from tests.harness.poll import eventually
from tests.test_proxy_http import Mesh, mesh

__all__ = ["mesh"]  # the fixture, imported for pytest


def _request(s: socket.socket, path: str, method: str = "GET") -> tuple[int, bool, bytes]:
    """One GET on the kept connection `s`: (status, whether it said Connection: close, body)."""
    sent = "" if method == "GET" else "x"
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: db\r\nContent-Length: {len(sent)}\r\n\r\n{sent}"
              .encode())  # fmt: skip
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {got!r}")
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines[1:])}
    length = int(fields.get(b"content-length", b"0"))
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    close = fields.get(b"connection", b"").lower() == b"close"
    return int(lines[0].split()[1]), close, body


@dataclass
class Loader:
    """`n` keep-alive connections to `address`, each sending requests in a loop."""

    address: tuple[str, int]
    n: int = 4
    path: str = "/echo/live"
    method: str = "GET"
    answers: list[tuple[int, float, int]] = field(default_factory=list)  # (conn, time, status)
    bodies: list[tuple[float, bytes]] = field(default_factory=list)
    errors: list[tuple[int, float, str]] = field(default_factory=list)
    reconnects: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def _run(self, i: int) -> None:
        s: socket.socket | None = None
        first = True
        try:
            while not self.stop.is_set():
                if s is None:
                    try:
                        s = socket.create_connection(self.address, timeout=5)
                    except OSError as e:  # (a stopped listener: that client is done)
                        self.errors.append((i, time.monotonic(), repr(e)))
                        return
                    if not first:
                        self.reconnects.append(i)
                    first = False
                try:
                    status, close, body = _request(s, self.path, self.method)
                except OSError as e:
                    self.errors.append((i, time.monotonic(), repr(e)))
                    s.close()
                    s = None
                    continue
                self.answers.append((i, time.monotonic(), status))
                self.bodies.append((time.monotonic(), body))
                if close:
                    s.close()
                    s = None
                time.sleep(0.01)
        finally:
            if s is not None:
                s.close()

    @contextmanager
    def running(self) -> Iterator[Loader]:
        threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                   for i in range(self.n)]  # fmt: skip
        for t in threads:
            t.start()
        try:
            yield self
        finally:
            self.stop.set()
            for t in threads:
                t.join(10)

    def seen(self, status: int, after: float) -> set[int]:
        return {i for i, t, s in self.answers if s == status and t > after}


def test_a_deny_reaches_the_next_request_of_every_pooled_connection(mesh: Mesh) -> None:
    put_exact(mesh.agent, "web2", "db", {"Action": "allow"})
    with Loader(mesh.pooled).running() as pooled, Loader(mesh.upstream, n=2).running() as other:
        eventually(lambda: pooled.seen(200, 0) == set(range(4)), 10, what="all allowed")
        flipped = time.monotonic()
        put_exact(mesh.agent, "web2", "db", {"Action": "deny"})
        eventually(lambda: pooled.seen(403, flipped) == set(range(4)), 5, what="all denied")
        first = min(t for _, t, s in pooled.answers if s == 403 and t > flipped)
        last_ok = max(t for _, t, s in pooled.answers if s == 200)
        assert last_ok - first < 1.0, "a connection kept its allowed answers for a second"
        again = time.monotonic()
        put_exact(mesh.agent, "web2", "db", {"Action": "allow"})
        eventually(lambda: pooled.seen(200, again) == set(range(4)), 5, what="all allowed again")
    assert not pooled.errors and not pooled.reconnects, (pooled.errors, pooled.reconnects)
    assert not other.errors and {s for _, _, s in other.answers} == {200}, other.errors


def test_a_path_rule_applies_to_the_next_pooled_request_and_spares_other_paths(
    mesh: Mesh,
) -> None:
    put_exact(mesh.agent, "web2", "db", {"Action": "allow"})
    with Loader(mesh.pooled, n=2, path="/echo/k").running() as k, \
            Loader(mesh.pooled, n=2, path="/echo/other").running() as other:  # fmt: skip
        eventually(lambda: k.seen(200, 0) == {0, 1}, 10, what="all allowed")
        changed = time.monotonic()
        put_exact(mesh.agent, "web2", "db", {"Permissions": [
            {"Action": "deny", "HTTP": {"PathPrefix": "/echo/k"}},
            {"Action": "allow", "HTTP": {"PathPrefix": "/"}}]})  # fmt: skip
        eventually(lambda: k.seen(403, changed) == {0, 1}, 5, what="the path denied")
        assert max(t for _, t, s in k.answers if s == 200) - changed < 1.0
        later = time.monotonic()
        eventually(lambda: other.seen(200, later) == {0, 1}, 5, what="other paths going on")
        put_exact(mesh.agent, "web2", "db", {"Action": "allow"})
        back = time.monotonic()
        eventually(lambda: k.seen(200, back) == {0, 1}, 5, what="the path allowed again")
    assert not k.errors and not k.reconnects and not other.errors and not other.reconnects
    assert {s for _, _, s in other.answers} == {200}


def test_sighup_under_load_changes_nothing(mesh: Mesh) -> None:
    put_exact(mesh.agent, "web2", "db", {"Action": "allow"})
    with Loader(mesh.pooled).running() as pooled:
        eventually(lambda: pooled.seen(200, 0) == set(range(4)), 10, what="all allowed")
        for proxy in (mesh.web2_proxy, mesh.db_proxy):
            proxy.signal(signal.SIGHUP)
        hupped = time.monotonic()
        eventually(lambda: len(pooled.seen(200, hupped + 1.0)) == 4, 10, what="a second later")
    assert not pooled.errors and not pooled.reconnects, (pooled.errors, pooled.reconnects)
    assert {s for _, _, s in pooled.answers} == {200}
    assert mesh.web2_proxy.proc is not None and mesh.web2_proxy.proc.poll() is None


def test_sigterm_closes_idle_keep_alive_clients_cleanly(mesh: Mesh) -> None:
    """Runs last: it stops web2's sidecar. Idle kept connections see a FIN, never a reset;
    a request in flight finishes; the sidecar exits 0."""
    put_exact(mesh.agent, "web2", "db", {"Action": "allow"})
    idle = [socket.create_connection(mesh.pooled, timeout=5) for _ in range(3)]
    for s in idle:
        assert _request(s, "/echo/idle")[0] == 200
    busy = socket.create_connection(mesh.pooled, timeout=5)
    asked = mesh.app.seen.count("GET /sleep/800")
    busy.sendall(b"GET /sleep/800 HTTP/1.1\r\nHost: db\r\n\r\n")
    eventually(lambda: mesh.app.seen.count("GET /sleep/800") > asked, 5,
               what="the request at the app before the signal")  # fmt: skip
    assert mesh.web2_proxy.proc is not None
    mesh.web2_proxy.signal(signal.SIGTERM)
    got = b""
    while b"slept" not in got:
        chunk = busy.recv(65536)
        assert chunk, f"in-flight request cut: {got!r}"
        got += chunk
    assert got.startswith(b"HTTP/1.1 200"), got
    for s in idle:
        s.settimeout(10)
        try:
            assert s.recv(1) == b"", "an idle kept connection got bytes, not a FIN"
        except ConnectionResetError:
            raise AssertionError("an idle kept connection was reset") from None
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    busy.close()
    assert mesh.web2_proxy.proc.wait(20) == 0
