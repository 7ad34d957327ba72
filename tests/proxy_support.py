"""What the proxy's integration tests share: real apps, real proxy processes, real clients.

- `App`: a TCP app on a thread, in one of two manners: "echo" sends back
  every chunk and, once the client has half-closed, a final b"<eof>" then
  closes (so a client that shut down its sending side still gets its
  answer); "greeter" sends b"hello", half-closes at once, and records what
  the client sends afterwards (the other direction of half-close).
- `ProxyProc`: `gossamer connect proxy ...` as a subprocess, its log in a
  file, stopped with SIGTERM (its exit code asserted by the tests that care).
- `roundtrip`: connect, send, half-close, read to the end;
- `register_pair`: `db` and `web` with sidecars on one agent, `web`'s
  sidecar with the upstream `db`.
- `timed_request`, `status_of`: one HTTP request on a new client connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http.client
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tests.harness.cli import cli_env
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually


@dataclass
class App:
    ip: str
    manner: str = "echo"
    port: int = 0
    received: list[bytes] = field(default_factory=list)
    accepted: int = 0
    _sock: socket.socket | None = None

    def start(self) -> App:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.ip, self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._sock = sock
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None

    def _accept(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            serve = self._echo if self.manner == "echo" else self._greet
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                conn.sendall(chunk)
            conn.sendall(b"<eof>")

    def _greet(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.sendall(b"hello")
            conn.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := conn.recv(65536):
                got += chunk
            self.received.append(got)


@dataclass
class ProxyProc:
    args: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProxyProc:
        argv = [sys.executable, "-m", "gossamer.agent", "connect", "proxy", *self.args]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=cli_env(), start_new_session=True,
            )  # fmt: skip
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise


def sidecar(agent: AgentProc, tmp: Path, service_id: str) -> ProxyProc:
    log = tmp / f"proxy-{service_id}.log"
    return ProxyProc(["--sidecar-for", service_id, "--http-addr", agent.http], log).start()


def listening(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((ip, port)) == 0


def wait_listening(ip: str, port: int, proxy: ProxyProc, timeout: float = 20.0) -> None:
    eventually(lambda: listening(ip, port), timeout,
               what=f"{ip}:{port} to listen; proxy log:\n{proxy.log()[-3000:]}")  # fmt: skip


def roundtrip(address: tuple[str, int], payload: bytes, timeout: float = 10.0) -> bytes:
    """Send `payload`, half-close, read everything until the other end closes."""
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return read_all(s)


async def echo_until_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An asyncio app: echoes what it reads, then `<eof>` once the peer half-closed."""
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write(b"<eof>")
        await writer.drain()
    writer.close()


async def exchange(port: int, payload: bytes) -> bytes:
    """An asyncio client of 127.0.0.1:`port`: sends `payload`, half-closes, reads to the end
    (5 s at most)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def refused(address: tuple[str, int], payload: bytes, timeout: float = 10.0) -> bool:
    """The proxy closes the connection without an answer: `roundtrip` gives nothing back, or
    the close beat the payload (a socket closed with the payload unread answers with a reset,
    so the client's shutdown or read fails instead)."""
    try:
        return roundtrip(address, payload, timeout) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:  # the reset came before the client's half-close
            return True
        raise


def read_all(s: socket.socket) -> bytes:
    chunks = []
    while chunk := s.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def read_until(s: socket.socket, done: Callable[[bytes], bool]) -> bytes:
    """Read until `done(what came)`; a close before that fails the test."""
    got = b""
    while not done(got):
        chunk = s.recv(65536)
        assert chunk, f"closed after {len(got)} bytes"
        got += chunk
    return got


def set_intention(agent: AgentProc, source: str, destination: str, action: str) -> None:
    agent.put(f"/v1/connect/intentions/exact?source={source}&destination={destination}",
              {"Action": action})  # fmt: skip


def register_pair(agent: AgentProc, db_port: int, up_port: int) -> tuple[int, int]:
    db_in, web_in = free_port(agent.ip), free_port(agent.ip)
    agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db", "Port": db_port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip}},
    })  # fmt: skip
    upstreams: list[dict[str, object]] = [{"DestinationName": "db", "LocalBindPort": up_port}]
    agent.put("/v1/agent/service/register", web_body(agent, web_in, upstreams))
    return db_in, web_in


def web_body(
    agent: AgentProc, web_in: int, upstreams: list[dict[str, object]]
) -> dict[str, object]:
    return {
        "Name": "web", "ID": "web", "Port": 1, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": web_in, "Address": agent.ip,
                                       "Proxy": {"Upstreams": upstreams}}},
    }  # fmt: skip


def healthy_sidecars(agent: AgentProc, name: str) -> int:
    return len(agent.get(f"/v1/health/connect/{name}?passing"))


class Stoppable(Protocol):
    def stop(self) -> None: ...


def stop_mesh(
    cluster: Cluster, proxies: Iterable[ProxyProc], apps: Iterable[Stoppable] = ()
) -> list[str]:
    """A mesh fixture's teardown: proxies first (they hold connections to the apps and their
    agents), then the apps, then the agents; returns what the cluster left behind."""
    for proxy in proxies:
        proxy.stop()
    for app in apps:
        app.stop()
    return cluster.close()


def series(addr: str, name: str, **labels: str) -> float:
    """The sum of the samples of a Prometheus series, served at `addr`, whose labels include
    `labels`."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


def timed_request(port: int, method: str, path: str, timeout: float = 10.0) -> tuple[int, float]:
    """One request on a new client connection to 127.0.0.1:`port` (a POST carries the one
    byte b"x"), read to its end: its status and the seconds it took."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.monotonic()
    try:
        conn.request(method, path, body=b"x" if method == "POST" else None)
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        conn.close()


def http_instance(agent: AgentProc, name: str, sid: str, port: int,
                  meta: dict[str, str] | None = None) -> int:  # fmt: skip
    """Register instance `sid` of `name` (an app on `port`, `protocol: http`) with a sidecar;
    the sidecar's inbound port."""
    inbound = free_port(agent.ip)
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": sid, "Port": port, "Address": agent.ip, "Meta": meta or {},
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                       "Proxy": {"Config": {"protocol": "http"}}}},
    })  # fmt: skip
    return inbound


def status_of(port: int, method: str, path: str) -> int:
    """The status of `timed_request(port, method, path)`."""
    return timed_request(port, method, path)[0]
