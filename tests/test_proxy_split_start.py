"""An upstream that is split opens its port only once the split can be served.

The mesh of tests/test_proxy_splits.py (tests/split_support.py), with a
`service-splitter` sending all of `api`'s traffic to `api-canary` and
`api` itself deregistered, so it has no instance: every request to web's
`api` upstream can only be served by the canary. After web's proxy
restarts, and after a change replaces its upstream listeners, the first
requests and connections are polled as they come (a refused connect is
tried again at once): each must reach the canary. Before the fix, the
listener opened on its own upstream's first health answer and applied the
split only after that, once the canary's instances were heard of, so the
first request or two were answered 503 (HTTP) or had their connection
closed (L4), in 2 runs of 3.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.harness.poll import eventually
from tests.split_support import Mesh, split_mesh

ROUNDS = 3  # restarts (and listener changes) per test: the window was hit in 2 runs of 3
FIRST = 3  # requests (connections) looked at after each
POLL_S = 0.002  # between refused connects


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with split_mesh(tmp_path_factory.mktemp("split-start")) as ready:
        split = [{"Weight": 0, "Service": "api"}, {"Weight": 100, "Service": "api-canary"}]
        assert ready.writer.config.set("service-splitter", "api", {"Splits": split})
        ready.writer.agent.service.deregister("api")  # its sidecar goes with it
        eventually(lambda: _get(ready.client_agent, "/v1/health/connect/api?passing") == [], 20,
                   what="api to have no instance on s2")  # fmt: skip
        eventually(lambda: all(_http(ready) == "200 api-canary" for _ in range(5)), 20,
                   what="every request to the canary")  # fmt: skip
        yield ready


def _request(agent: str, method: str, path: str, body: object = None) -> object:
    host, port = agent.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body))
        response = conn.getresponse()
        text = response.read()
        assert response.status == 200, text
        return json.loads(text) if text.strip() else None
    finally:
        conn.close()


def _get(agent: str, path: str) -> object:
    return _request(agent, "GET", path)


def _who(mesh: Mesh, send: Callable[[], str]) -> str:
    """What `send()` got, and which app took it ("none" when neither did)."""
    before = len(mesh.api.seen), len(mesh.canary.seen)
    got = send()
    grown = len(mesh.api.seen) - before[0], len(mesh.canary.seen) - before[1]
    return f"{got} {'api' if grown[0] else 'api-canary' if grown[1] else 'none'}"


def _http(mesh: Mesh) -> str:
    """One GET on a new connection to web's HTTP upstream: its status and who answered."""

    def send() -> str:
        conn = http.client.HTTPConnection(*mesh.http_up, timeout=10)
        try:
            conn.request("GET", "/echo/first")
            response = conn.getresponse()
            response.read()
            return str(response.status)
        finally:
            conn.close()

    return _who(mesh, send)


def _tcp(mesh: Mesh) -> str:
    """One request on its own connection to web-l4's TCP upstream: its status line's code (or
    "closed") and who answered."""

    def send() -> str:
        with socket.create_connection(mesh.tcp_up, timeout=10) as s:
            s.sendall(b"GET /echo/first HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            try:
                while chunk := s.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                pass
        return answer.split(b" ", 2)[1].decode() if answer else "closed"

    return _who(mesh, send)


def _first(attempt: Callable[[], str], answers: list[str], timeout: float = 30.0) -> None:
    """The first FIRST answers `attempt` gets, a refused connect (not listening yet) tried
    again at once."""
    deadline = time.monotonic() + timeout
    while len(answers) < FIRST:
        try:
            answers.append(attempt())
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "the upstream port never opened"
            time.sleep(POLL_S)


def _poll_both(mesh: Mesh, begin: Callable[[], None]) -> dict[str, list[str]]:
    """`begin()`, while the first answers of both upstreams are taken, each on its thread."""
    answers: dict[str, list[str]] = {"http": [], "tcp": []}
    threads = [
        threading.Thread(target=_first, args=(lambda: _http(mesh), answers["http"])),
        threading.Thread(target=_first, args=(lambda: _tcp(mesh), answers["tcp"])),
    ]
    begin()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


def test_after_a_restart_the_first_requests_reach_the_split_target(mesh: Mesh) -> None:
    for _ in range(ROUNDS):
        mesh.client_proxy.stop()
        answers = _poll_both(mesh, mesh.client_proxy.start)
        everyone = ["200 api-canary"] * FIRST
        assert answers == {"http": everyone, "tcp": everyone}, mesh.client_proxy.log()[-3000:]


def _sidecar_port(mesh: Mesh, service: str) -> int:
    body = _get(mesh.client_agent, f"/v1/agent/service/{service}-sidecar-proxy")
    assert isinstance(body, dict)
    return int(body["Port"])


def test_after_a_listener_change_the_first_requests_reach_the_split_target(mesh: Mesh) -> None:
    """Each round changes both upstreams (their connect timeout), which replaces their
    listeners on the same ports; requests go on from before the change until after both new
    listeners are in (their "listening" lines)."""
    ip = mesh.client_agent.removeprefix("http://").rsplit(":", 1)[0]
    ports = {"web": _sidecar_port(mesh, "web"), "web-l4": _sidecar_port(mesh, "web-l4")}
    lines = [f"upstream api listening on {host}:{port}" for host, port in (mesh.http_up,
                                                                        mesh.tcp_up)]  # fmt: skip
    for round_ in range(ROUNDS):
        before = [mesh.client_proxy.log().count(line) for line in lines]
        timeout_ms = 5000 + round_ + 1
        ups = {"web": {"DestinationName": "api", "LocalBindPort": mesh.http_up[1],
                       "Config": {"protocol": "http", "connect_timeout_ms": timeout_ms}},
               "web-l4": {"DestinationName": "api", "LocalBindPort": mesh.tcp_up[1],
                          "Config": {"connect_timeout_ms": timeout_ms}}}  # fmt: skip
        for name, up in ups.items():
            _request(mesh.client_agent, "PUT", "/v1/agent/service/register", {
                "Name": name, "ID": name, "Port": 1, "Address": ip,
                "Connect": {"SidecarService": {"Port": ports[name], "Address": ip,
                                               "Proxy": {"Upstreams": [up]}}},
            })  # fmt: skip
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while True:  # until both new listeners are in, then FIRST more of each
            replaced = all(mesh.client_proxy.log().count(line) > n
                           for line, n in zip(lines, before, strict=True))  # fmt: skip
            seen += [_http(mesh), _tcp(mesh)]
            if replaced:
                break
            assert time.monotonic() < deadline, mesh.client_proxy.log()[-3000:]
        seen += [answer for _ in range(FIRST) for answer in (_http(mesh), _tcp(mesh))]
        assert set(seen) == {"200 api-canary"}, (seen, mesh.client_proxy.log()[-3000:])
