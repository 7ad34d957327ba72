"""Traffic splitting (service-splitter) through real agents, real proxies and two real apps.

The mesh (tests/split_support.py): two agents; `api` and `api-canary`
apps behind their sidecars on s1; on s2, `web` with an HTTP upstream of
`api` (split per request) and `web-l4` with a TCP one (per connection).
The splitter is written on s1 with py-consul (and with the CLI on s2) and
reaches web's proxy on s2 by replication and a blocking watch; which app
served is read from the apps themselves.

Tolerance: a request goes to the canary with p = 0.1, independently, so
over n = 1,000 requests the count is Binomial(n, p): mean 100, sd
sqrt(n p (1-p)) = 9.5. The test allows 4 sd (62-138): a correct proxy
fails it about once in 16,000 runs, while a proxy that ignored the split
(0), split per connection on the pooled path (0 or 1,000), or weighted it
wrongly by 5 points or more (50 / 150) fails it.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cli import expect
from tests.harness.cluster import free_port
from tests.harness.poll import eventually
from tests.split_support import Mesh, one, served_by, split_mesh

N, P, SIGMAS = 1000, 0.10, 4.0


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with split_mesh(tmp_path_factory.mktemp("splits")) as ready:
        yield ready


def _tcp(mesh: Mesh) -> str:
    """One request on its own connection through the TCP upstream (decided per connection)."""

    def send() -> None:
        with socket.create_connection(mesh.tcp_up, timeout=10) as s:
            s.sendall(b"GET /echo/l4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")

    return served_by(mesh, send)


def _splits(api: float, canary: float) -> list[dict[str, object]]:
    return [{"Weight": api, "Service": "api"}, {"Weight": canary, "Service": "api-canary"}]


def _split(mesh: Mesh, api: float, canary: float) -> None:
    assert mesh.writer.config.set("service-splitter", "api", {"Splits": _splits(api, canary)})


def _all_canary(mesh: Mesh, conn: http.client.HTTPConnection, n: int) -> bool:
    return all(one(mesh, conn) == "api-canary" for _ in range(n))


def test_a_90_10_split_over_1000_requests_then_0_100_moves_every_request(
    mesh: Mesh, tmp_path: Path
) -> None:
    conn = http.client.HTTPConnection(*mesh.http_up, timeout=10)
    _split(mesh, 90, 10)
    # Applied once a run of 30 requests is not all api (probability 0.9**30 = 4 % per try).
    eventually(lambda: any(one(mesh, conn) == "api-canary" for _ in range(30)), 20,
               what="the 90/10 split to reach web's proxy")  # fmt: skip
    to_canary = sum(one(mesh, conn) == "api-canary" for _ in range(N))  # one keep-alive conn
    sd = math.sqrt(N * P * (1 - P))
    low, high = N * P - SIGMAS * sd, N * P + SIGMAS * sd
    print(f"\n90/10 split: {to_canary} of {N} requests to api-canary "
          f"(expected {N * P:.0f} ± {SIGMAS:g} sd = {low:.0f}-{high:.0f})")  # fmt: skip
    assert low <= to_canary <= high

    entry = {"Kind": "service-splitter", "Name": "api", "Splits": _splits(0, 100)}
    (tmp_path / "all-canary.json").write_text(json.dumps(entry))
    said = expect(
        "config", "write", str(tmp_path / "all-canary.json"), "--http-addr", mesh.client_agent
    )
    assert "Config entry written: service-splitter/api" in said
    # 20 in a row to the canary under the old split: 1e-20; then every following one must go.
    eventually(lambda: _all_canary(mesh, conn, 20), 20, what="0/100 to reach web's proxy")
    assert _all_canary(mesh, conn, 200)
    conn.close()


def test_a_request_that_fails_on_its_target_is_retried_there_not_elsewhere(mesh: Mesh) -> None:
    """A failing canary's GETs are retried (idempotent), but on the canary: a retry that drew
    the target again would hide the canary's failures behind the stable service's answers,
    the very thing a canary split is there to show."""
    _split(mesh, 50, 50)
    eventually(lambda: any(one(mesh) == "api-canary" for _ in range(20)), 20,
               what="the 50/50 split to reach web's proxy")  # fmt: skip
    mesh.canary.broken = True  # it hangs up on every request: its sidecar answers 502
    statuses: dict[str, int] = {}
    try:
        for i in range(40):
            conn = http.client.HTTPConnection(*mesh.http_up, timeout=10)
            try:
                conn.request("GET", f"/echo/sticky{i}")
                response = conn.getresponse()
                response.read()
                statuses[f"GET /echo/sticky{i}"] = response.status
            finally:
                conn.close()
    finally:
        mesh.canary.broken = False
        _split(mesh, 100, 0)
    on_canary = {path for path in mesh.canary.seen if path in statuses}
    assert on_canary, "no request drew the canary"
    assert all(statuses[path] != 200 for path in on_canary), statuses
    assert all(statuses[path] == 200 for path in statuses.keys() - on_canary), statuses


def test_l4_upstream_splits_per_connection(mesh: Mesh) -> None:
    """0/100, then 100/0, each applied to every new connection. (The split the test before
    left, 50/50 then 100/0, may still be on its way: one canary draw is no sign of 0/100, a
    run of ten is: 0.5**10 under 50/50. Waiting for one made the check after it flaky.)"""
    _split(mesh, 0, 100)
    eventually(lambda: all(_tcp(mesh) == "api-canary" for _ in range(10)), 20,
               what="0/100 at L4")  # fmt: skip
    assert all(_tcp(mesh) == "api-canary" for _ in range(20))
    _split(mesh, 100, 0)
    eventually(lambda: _tcp(mesh) == "api", 20, what="100/0 at L4")
    assert all(_tcp(mesh) == "api" for _ in range(20))


def test_cli_reads_lists_and_deletes_an_entry_written_on_the_other_agent(mesh: Mesh) -> None:
    s2 = mesh.client_agent
    assert mesh.writer.config.set("service-defaults", "api-canary", {"Protocol": "http"})

    def replicated() -> dict[str, object]:
        text = expect("config", "read", "-kind", "service-defaults", "-name", "api-canary",
                      "--http-addr", s2)  # fmt: skip
        return dict(json.loads(text))

    got = eventually(replicated, 15, what="the entry written on s1 to be read on s2")
    assert got["Protocol"] == "http" and isinstance(got["ModifyIndex"], int)
    assert expect("config", "list", "-kind", "service-defaults", "--http-addr", s2).split() == [
        "api-canary"
    ]
    stale = str(int(str(got["ModifyIndex"])) + 1000)
    said = expect("config", "delete", "-kind", "service-defaults", "-name", "api-canary", "-cas",
                  "-modify-index", stale, "--http-addr", s2, code=1)  # fmt: skip
    assert "not deleted" in said
    expect("config", "delete", "-kind", "service-defaults", "-name", "api-canary",
           "--http-addr", s2)  # fmt: skip
    eventually(lambda: mesh.writer.config.list("service-defaults") == [], 15,
               what="the delete on s2 to reach s1")  # fmt: skip


def _put(mesh: Mesh, path: str, body: object) -> None:
    """A PUT to s1's HTTP API (the agent the apps' sidecars run on)."""
    host, port = mesh.writer.http.base_uri.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("PUT", path, body=json.dumps(body))
        response = conn.getresponse()
        assert response.status == 200, response.read()
        response.read()
    finally:
        conn.close()


def test_a_split_to_a_service_with_a_splitter_of_its_own_follows_it(mesh: Mesh) -> None:
    """As Consul's discovery chain: `api` all to `api-canary`, whose own splitter sends all of
    its traffic to `api-v2` (here the stable app behind a sidecar of its own), sends `api`'s
    requests to `api-v2`, not to `api-canary`'s instances."""
    host = mesh.writer.http.base_uri.removeprefix("http://").rsplit(":", 1)[0]
    _put(mesh, "/v1/agent/service/register", {
        "Name": "api-v2", "ID": "api-v2", "Port": mesh.api.port, "Address": host,
        "Connect": {"SidecarService": {"Port": free_port(host), "Address": host,
                                       "Proxy": {"Config": {"protocol": "http"}}}},
    })  # fmt: skip
    _put(mesh, "/v1/connect/intentions/exact?source=web&destination=api-v2", {"Action": "allow"})
    api, canary = [{"Weight": 100, "Service": "api-canary"}], [{"Weight": 100, "Service": "api-v2"}]
    try:
        assert mesh.writer.config.set("service-splitter", "api-canary", {"Splits": canary})
        assert mesh.writer.config.set("service-splitter", "api", {"Splits": api})
        eventually(lambda: "upstream api split: api-v2 100%" in mesh.client_proxy.log(), 20,
                   what="web's proxy to follow api-canary's splitter")  # fmt: skip
        eventually(lambda: one(mesh) == "api", 20, what="a request answered through api-v2")
        assert all(one(mesh) == "api" for _ in range(20))
    finally:
        mesh.writer.config.delete("service-splitter", "api")
        mesh.writer.config.delete("service-splitter", "api-canary")


def test_a_target_with_no_instance_is_named_where_its_requests_fail(mesh: Mesh) -> None:
    """Half of `api` to `api-ghost`, which has no instance: its share fails (503 over HTTP, a
    closed connection at L4), and the log says it is `api-ghost` that has none, not `api`
    (which has a healthy one)."""
    ghost = [{"Weight": 50, "Service": "api"}, {"Weight": 50, "Service": "api-ghost"}]
    assert mesh.writer.config.set("service-splitter", "api", {"Splits": ghost})
    try:
        eventually(lambda: "upstream api split: api 50%, api-ghost 50%" in mesh.client_proxy.log(),
                   20, what="the split to reach web's proxy")  # fmt: skip

        def failed() -> bool:
            conn = http.client.HTTPConnection(*mesh.http_up, timeout=10)
            try:
                conn.request("GET", "/echo/ghost")
                response = conn.getresponse()
                response.read()
                return response.status == 503
            finally:
                conn.close()

        def closed() -> bool:
            with socket.create_connection(mesh.tcp_up, timeout=10) as s:
                s.sendall(b"GET /echo/ghost HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                try:
                    return s.recv(65536) == b""
                except ConnectionResetError:
                    return True

        eventually(failed, 20, what="a request drawn to api-ghost")
        eventually(closed, 20, what="a connection drawn to api-ghost")
        lines = [line for line in mesh.client_proxy.log().splitlines()
                 if "no-healthy-instance" in line and "upstream api:" in line]  # fmt: skip
        assert any("request answered 503" in line and "of api-ghost" in line for line in lines)
        assert any("connection closed" in line and "of api-ghost" in line for line in lines)
    finally:
        mesh.writer.config.delete("service-splitter", "api")
