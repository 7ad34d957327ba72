"""service-resolver entries obeyed by real sidecars: subsets, splits between them, redirect,
failover, timeouts, live changes, and the agent's 400s.

Two agents. On s1, `api` has two instances, `api-1` (Meta version=v1) and
`api-2` (version=v2), each with a TTL check, and `api-backup` one; each is
an HTTP app behind a sidecar (`protocol: http`), served by one
`connect proxy --node`, which also serves `web-node`, an HTTP upstream of
api. On s2, `web` (an HTTP upstream of api) and `web-l4` (a TCP one) each run
as one `--sidecar-for` proxy. Which app took a request is read from the apps.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cli import expect, gossamer
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    read_all,
    set_intention,
    stop_mesh,
    wait_listening,
    web_body,
)

V1, V2 = "Service.Meta.version == v1", "Service.Meta.version == v2"
SUBSETS = {"v1": {"Filter": V1}, "v2": {"Filter": V2}}


@dataclass
class Mesh:
    s1: AgentProc
    s2: AgentProc
    s3: AgentProc  # holds nothing: revoked by the last test
    apps: dict[str, HttpApp]  # "v1", "v2", "backup"
    ups: dict[str, tuple[str, int]]  # "http" (web, one sidecar), "tcp" (web), "node" (web-node)
    proxies: list[ProxyProc]


def _app(agent: AgentProc, name: str, sid: str, app: HttpApp, meta: dict[str, str]) -> int:
    inbound = free_port(agent.ip)
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": sid, "Port": app.port, "Address": agent.ip, "Meta": meta,
        "Check": {"CheckID": f"{sid}-ttl", "Name": "app", "TTL": "10m", "Status": "passing"},
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                       "Proxy": {"Config": {"protocol": "http"}}}},
    })  # fmt: skip
    return inbound


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("resolver")
    c = Cluster(tmp)
    apps = {k: HttpApp().start() for k in ("v1", "v2", "backup")}
    proxies: list[ProxyProc] = []
    try:
        s1 = c.new_agent("s1").start()
        s2 = c.new_agent("s2", "--join", s1.serf_addr).start()
        s3 = c.new_agent("s3", "--join", s1.serf_addr).start()
        for agent in (s1, s2, s3):
            eventually(agent.enrolled, 20, what=f"{agent.name}'s certificate")
        ins = [_app(s1, "api", "api-1", apps["v1"], {"version": "v1"}),
               _app(s1, "api", "api-2", apps["v2"], {"version": "v2"}),
               _app(s1, "api-backup", "api-backup", apps["backup"], {})]  # fmt: skip
        ups = {k: free_port("127.0.0.1") for k in ("http", "tcp", "node")}
        http_up = {"DestinationName": "api", "LocalBindPort": ups["http"],
                   "Config": {"protocol": "http"}}  # fmt: skip
        tcp_up = {"DestinationName": "api", "LocalBindPort": ups["tcp"]}
        s2.put("/v1/agent/service/register", web_body(s2, free_port(s2.ip), [http_up]))
        s2.put(
            "/v1/agent/service/register",
            web_body(s2, free_port(s2.ip), [tcp_up]) | {"Name": "web-l4", "ID": "web-l4"},
        )
        node_up = {**http_up, "LocalBindPort": ups["node"]}
        s1.put(
            "/v1/agent/service/register",
            web_body(s1, free_port(s1.ip), [node_up]) | {"Name": "web-node", "ID": "web-node"},
        )
        for source in ("web", "web-l4", "web-node"):
            for destination in ("api", "api-backup"):
                set_intention(s1, source, destination, "allow")
        proxies.append(ProxyProc(["--node", "--drain-timeout", "1", "--http-addr", s1.http],
                                 tmp / "proxy-s1.log").start())  # fmt: skip
        proxies.append(
            ProxyProc(
                ["--sidecar-for", "web", "--drain-timeout", "1", "--http-addr", s2.http],
                tmp / "proxy-web.log",
            ).start()
        )
        proxies.append(
            ProxyProc(
                ["--sidecar-for", "web-l4", "--drain-timeout", "1", "--http-addr", s2.http],
                tmp / "proxy-web-l4.log",
            ).start()
        )
        for port in ins:
            wait_listening(s1.ip, port, proxies[0])
        wait_listening("127.0.0.1", ups["node"], proxies[0])
        wait_listening("127.0.0.1", ups["http"], proxies[1])
        wait_listening("127.0.0.1", ups["tcp"], proxies[2])
        eventually(lambda: healthy_sidecars(s2, "api") == 2, 30, what="both api instances")
        eventually(lambda: healthy_sidecars(s2, "api-backup") == 1, 30, what="api-backup")
        found = Mesh(s1, s2, s3, apps, {k: ("127.0.0.1", p) for k, p in ups.items()}, proxies)
        for kind in ups:
            eventually(lambda k=kind: served(found, k) in ("v1", "v2"), 20, what=f"{kind} serving")
        yield found
    finally:
        leftovers = stop_mesh(c, proxies, apps.values())
    assert not leftovers, f"processes left behind: {leftovers}"


def _config(mesh: Mesh, method: str, path: str, body: object = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection(mesh.s1.ip, mesh.s1.http_port, timeout=10)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body))
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def write(mesh: Mesh, kind: str, name: str, **fields: Any) -> None:
    status, text = _config(mesh, "PUT", "/v1/config", {"Kind": kind, "Name": name, **fields})
    assert (status, text) == (200, "true"), text


def delete(mesh: Mesh, kind: str, name: str) -> None:
    status, text = _config(mesh, "DELETE", f"/v1/config/{kind}/{name}")
    assert status == 200, text


@pytest.fixture(autouse=True)
def clean(mesh: Mesh) -> Iterator[None]:
    """Each test starts and ends with no splitter or resolver and every check passing."""
    yield
    for kind in ("service-splitter", "service-resolver"):
        for name in ("api", "api-backup"):
            _config(mesh, "DELETE", f"/v1/config/{kind}/{name}")
    for sid in ("api-1", "api-2", "api-backup"):
        mesh.s1.put(f"/v1/agent/check/pass/{sid}-ttl", {})
    for name, count in (("api", 2), ("api-backup", 1)):  # (as s2, where web asks, sees it)
        eventually(lambda n=name, c=count: healthy_sidecars(mesh.s2, n) == c, 20,
                   what=f"{name} passing again on s2")  # fmt: skip
    for proxy in mesh.proxies:  # (the apps' sidecars in the node proxy have no upstream)
        eventually(lambda p=proxy: _last_resolved(p) in ("", "as itself"), 20,
                   what=f"{proxy.log_path.name}: upstream api as itself again")  # fmt: skip


def _last_resolved(proxy: ProxyProc) -> str:
    said = [line for line in proxy.log().splitlines() if "upstream api resolved: " in line]
    return said[-1].split("resolved: ", 1)[1] if said else ""


def taken_by(mesh: Mesh, send: Callable[[], None]) -> str:
    before = {k: len(app.seen) for k, app in mesh.apps.items()}
    send()
    grown = [k for k, app in mesh.apps.items() if len(app.seen) > before[k]]
    assert len(grown) == 1, f"one request should reach one app, got {grown}"
    return grown[0]


def served(mesh: Mesh, kind: str, conn: http.client.HTTPConnection | None = None,
           path: str = "/echo/r") -> str:  # fmt: skip
    """Which app answered one request through upstream `kind` (`conn`: a kept connection)."""
    if kind == "tcp":

        def raw() -> None:
            with socket.create_connection(mesh.ups["tcp"], timeout=10) as s:
                s.sendall(
                    b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode()
                )
                got = read_all(s)
                assert got.startswith(b"HTTP/1.1 200"), got[:200]

        return taken_by(mesh, raw)
    own = conn is None
    c = conn or http.client.HTTPConnection(*mesh.ups[kind], timeout=10)

    def one() -> None:
        c.request("GET", path)
        response = c.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body)

    try:
        return taken_by(mesh, one)
    finally:
        if own:
            c.close()


def only(mesh: Mesh, app: str, kinds: tuple[str, ...] = ("http", "tcp", "node")) -> None:
    """Every upstream's next requests all go to `app` (polled: a change takes a moment)."""
    for kind in kinds:
        eventually(lambda k=kind: {served(mesh, k) for _ in range(12)} == {app}, 20,
                   what=f"{kind} only to {app}")  # fmt: skip


def test_the_default_subset_then_a_live_change_keeps_the_connection(mesh: Mesh) -> None:
    kept = http.client.HTTPConnection(*mesh.ups["http"], timeout=10)
    assert served(mesh, "http", kept) in ("v1", "v2")
    write(mesh, "service-resolver", "api", Subsets=SUBSETS, DefaultSubset="v1")
    only(mesh, "v1")
    eventually(lambda: served(mesh, "http", kept) == "v1", 10, what="the kept one on v1")
    tcp = http.client.HTTPConnection(*mesh.ups["tcp"], timeout=10)  # an L4 one, on v1

    def over_tcp() -> None:
        tcp.request("GET", "/echo/tcp")
        response = tcp.getresponse()
        assert (response.status, response.read()) == (200, b"GET /echo/tcp ")

    assert taken_by(mesh, over_tcp) == "v1"
    write(mesh, "service-resolver", "api", Subsets=SUBSETS, DefaultSubset="v2")
    only(mesh, "v2")
    # the client connection made before either change is served throughout, now on v2
    assert {served(mesh, "http", kept) for _ in range(10)} == {"v2"}
    # an open L4 connection goes on to the instance it reached: only new ones move
    assert taken_by(mesh, over_tcp) == "v1"
    kept.close()
    tcp.close()
    assert "resolved: api/v2" in (mesh.proxies[1].log_path.read_text())


def test_a_90_10_split_between_subsets(mesh: Mesh) -> None:
    write(mesh, "service-resolver", "api", Subsets=SUBSETS)
    write(
        mesh,
        "service-splitter",
        "api",
        Splits=[{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}],
    )
    eventually(lambda: "api/v1 90%, api/v2 10%" in mesh.proxies[1].log(), 20, what="the split")
    conn = http.client.HTTPConnection(*mesh.ups["http"], timeout=10)
    counts = Counter(served(mesh, "http", conn) for _ in range(400))
    conn.close()
    # binomial(400, 0.1): mean 40, sd 6; 4 sd either way
    assert counts.keys() <= {"v1", "v2"} and 16 <= counts["v2"] <= 64, counts
    tcp = Counter(served(mesh, "tcp") for _ in range(100))  # per connection at L4
    assert tcp.keys() <= {"v1", "v2"} and tcp["v1"] >= 70, tcp


def test_redirect_to_another_service(mesh: Mesh) -> None:
    write(mesh, "service-resolver", "api", Redirect={"Service": "api-backup"})
    only(mesh, "backup")


def test_failover_when_the_primary_s_instances_fail_their_check(mesh: Mesh) -> None:
    write(
        mesh,
        "service-resolver",
        "api",
        Subsets=SUBSETS,
        DefaultSubset="v1",
        Failover={"*": {"Targets": [{"ServiceSubset": "v2"}, {"Service": "api-backup"}]}},
    )
    only(mesh, "v1")
    mesh.s1.put("/v1/agent/check/fail/api-1-ttl", {})
    only(mesh, "v2")
    mesh.s1.put("/v1/agent/check/fail/api-2-ttl", {})
    only(mesh, "backup")
    mesh.s1.put("/v1/agent/check/pass/api-1-ttl", {})
    only(mesh, "v1")


def test_request_timeout_of_the_resolver_binds_the_upstream(mesh: Mesh) -> None:
    write(mesh, "service-resolver", "api", RequestTimeout="300ms")
    eventually(lambda: "requests 0.3s" in mesh.proxies[1].log(), 20, what="the timeout applied")

    def timed_out() -> float:
        conn = http.client.HTTPConnection(*mesh.ups["http"], timeout=10)
        started = time.monotonic()
        conn.request("GET", "/sleep/3000")
        response = conn.getresponse()
        response.read()
        conn.close()
        assert response.status == 504, response.status
        return time.monotonic() - started

    assert timed_out() < 2.0


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"Kind": "service-resolver", "Name": "api", "DefaultSubset": "v3", "Subsets": SUBSETS},
         "DefaultSubset", "not one of Subsets"),
        ({"Kind": "service-resolver", "Name": "api",
          "Subsets": {"v1": {"Filter": "Service.Meta ="}}},
         'Subsets["v1"].Filter', "not a valid filter"),
        ({"Kind": "service-resolver", "Name": "api",
          "Failover": {"*": {"Datacenters": ["dc2"]}}}, 'Failover["*"].Datacenters', "datacenter"),
        ({"Kind": "service-resolver", "Name": "api", "Redirect": {"Service": "x", "Peer": "p"}},
         "Redirect.Peer", "datacenter"),
        ({"Kind": "service-resolver", "Name": "api", "ConnectTimeout": "soon"},
         "ConnectTimeout", "not a duration"),
        ({"Kind": "service-splitter", "Name": "api",
          "Splits": [{"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "ServiceSubset": "v2"}]},
         "Splits[0].ServiceSubset", "does not have a subset named 'v1'"),
    ],
)  # fmt: skip
def test_each_bad_entry_is_a_400_naming_the_field(mesh: Mesh, body: dict[str, Any], field: str,
                                                   words: str) -> None:  # fmt: skip
    status, text = _config(mesh, "PUT", "/v1/config", body)
    assert status == 400 and f"{field}: " in text and words in text, text


def test_changes_that_would_break_a_chain_are_400s(mesh: Mesh) -> None:
    write(mesh, "service-resolver", "api", Subsets=SUBSETS)
    write(mesh, "service-splitter", "api", Splits=[{"Weight": 100, "ServiceSubset": "v2"}])
    status, text = _config(mesh, "DELETE", "/v1/config/service-resolver/api")
    assert status == 400 and "service-splitter/api.Splits[0]" in text, text
    status, text = _config(
        mesh,
        "PUT",
        "/v1/config",
        {"Kind": "service-resolver", "Name": "api", "Subsets": {"v1": {"Filter": V1}}},
    )
    assert status == 400 and text.startswith("Subsets: "), text
    write(mesh, "service-resolver", "api-backup", Redirect={"Service": "api"})
    delete(mesh, "service-splitter", "api")
    status, text = _config(
        mesh,
        "PUT",
        "/v1/config",
        {"Kind": "service-resolver", "Name": "api", "Redirect": {"Service": "api-backup"}},
    )
    assert status == 400 and "circular resolver redirect" in text, text


def test_only_passing_decides_whether_a_warning_instance_serves(mesh: Mesh) -> None:
    """OnlyPassing false (Consul's default): an instance whose check warns still serves its
    subset; true: it does not, and the subset fails over."""
    subsets = {"v1": {"Filter": V1}, "v2": {"Filter": V2, "OnlyPassing": True}}
    failover = {"*": {"Service": "api-backup"}}
    write(mesh, "service-resolver", "api", Subsets=subsets, DefaultSubset="v1", Failover=failover)
    only(mesh, "v1")
    mesh.s1.put("/v1/agent/check/warn/api-1-ttl", {})
    eventually(lambda: healthy_sidecars(mesh.s1, "api") == 1, 10, what="api-1 warning")
    assert {served(mesh, "http") for _ in range(10)} == {"v1"}
    write(mesh, "service-resolver", "api", Subsets=subsets, DefaultSubset="v2", Failover=failover)
    only(mesh, "v2")
    mesh.s1.put("/v1/agent/check/warn/api-2-ttl", {})
    only(mesh, "backup")


def test_gossamer_check_counts_a_subset_split_target_s_instances(mesh: Mesh) -> None:
    """`gossamer check` names each split target's passing instances; a target that is a
    subset (`api/v2`) was asked of the agent as a service of that name: none, so the upstream
    line failed on a mesh serving fine."""
    write(mesh, "service-resolver", "api", Subsets=SUBSETS)
    write(
        mesh,
        "service-splitter",
        "api",
        Splits=[{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}],
    )
    result = gossamer("check", "--http-addr", mesh.s2.http)
    line = next(x for x in result.stdout.splitlines() if "upstreams of web-sidecar-proxy" in x)
    assert line.startswith("✔"), result.stdout
    assert "split: api/v1 90% (1 healthy), api/v2 10% (1 healthy)" in line, line


def test_gossamer_check_counts_what_the_resolver_leaves(mesh: Mesh) -> None:
    """With DefaultSubset v1 and v1's one instance failing, the sidecar has no instance to
    send to; the check counted all of api's passing instances and said the upstream was
    fine. It counts the resolved subset now, and a failover target's when it has some."""
    write(mesh, "service-resolver", "api", Subsets=SUBSETS, DefaultSubset="v1")
    mesh.s1.put("/v1/agent/check/fail/api-1-ttl", {})
    eventually(lambda: healthy_sidecars(mesh.s2, "api") == 1, 10, what="api-1 failing")

    def line() -> str:
        out = gossamer("check", "--http-addr", mesh.s2.http).stdout
        return next(x for x in out.splitlines() if "upstreams of web-sidecar-proxy" in x)

    assert line().startswith("✘ upstreams of web-sidecar-proxy: api (0 healthy)"), line()
    write(mesh, "service-resolver", "api", Subsets=SUBSETS, DefaultSubset="v1",
          Failover={"*": {"Service": "api-backup"}})  # fmt: skip
    assert line().startswith("✔ upstreams of web-sidecar-proxy: api (1 healthy)"), line()


HCL = """
Kind           = "service-resolver"
Name           = "api"
DefaultSubset  = "v2"
ConnectTimeout = "3s"
Subsets = {
  v1 = { Filter = "Service.Meta.version == v1" }
  v2 = {
    Filter      = "Service.Meta.version == v2"
    OnlyPassing = true
  }
}
Failover = {
  "*" = { Targets = [{ ServiceSubset = "v1" }, { Service = "api-backup" }] }
}
"""


def test_the_cli_writes_an_hcl_resolver_then_reads_and_deletes_it(
    mesh: Mesh, tmp_path: Path
) -> None:
    """`gossamer config write` of Consul's HCL on s1; read, list, delete on s2; the bad one's
    field named before anything is sent (exit 2)."""
    (tmp_path / "api.hcl").write_text(HCL)
    said = expect("config", "write", str(tmp_path / "api.hcl"), "--http-addr", mesh.s1.http)
    assert "Config entry written: service-resolver/api" in said
    only(mesh, "v2")

    def read() -> dict[str, Any]:
        text = expect("config", "read", "-kind", "service-resolver", "-name", "api",
                      "--http-addr", mesh.s2.http)  # fmt: skip
        return dict(json.loads(text))

    got = eventually(read, 15, what="the entry written on s1 to be read on s2")
    assert got["ConnectTimeout"] == "3s" and got["Subsets"]["v2"]["OnlyPassing"] is True
    assert got["Failover"] == {"*": {"Targets": [{"ServiceSubset": "v1"},
                                                 {"Service": "api-backup"}]}}  # fmt: skip
    listed = expect("config", "list", "-kind", "service-resolver", "--http-addr", mesh.s2.http)
    assert listed.split() == ["api"]
    (tmp_path / "bad.hcl").write_text(HCL.replace('"v2"', '"v3"', 1))
    said = expect("config", "write", str(tmp_path / "bad.hcl"), "--http-addr", mesh.s1.http,
                  code=2)  # fmt: skip
    assert "DefaultSubset" in said and "v3" in said
    expect("config", "delete", "-kind", "service-resolver", "-name", "api",
           "--http-addr", mesh.s2.http)  # fmt: skip
    eventually(lambda: _config(mesh, "GET", "/v1/config/service-resolver/api")[0] == 404, 15,
               what="the delete on s2 to reach s1")  # fmt: skip


def test_a_revocation_elsewhere_leaves_connections_to_a_redirect_target_open(mesh: Mesh) -> None:
    """Revoking an agent makes each sidecar check its open connections' servers again. That
    check asked for the upstream's own service, so every connection to another service (a
    redirect, a failover, a split target) was cut as untrusted, its server trusted as ever.
    Near the end of the module: s3, revoked here, holds nothing."""
    write(mesh, "service-resolver", "api", Redirect={"Service": "api-backup"})
    only(mesh, "backup")
    kept = http.client.HTTPConnection(*mesh.ups["http"], timeout=10)
    kept_tcp = http.client.HTTPConnection(*mesh.ups["tcp"], timeout=10)
    assert served(mesh, "http", kept) == "backup"

    def over_tcp() -> None:
        kept_tcp.request("GET", "/echo/tcp")
        response = kept_tcp.getresponse()
        assert (response.status, response.read()) == (200, b"GET /echo/tcp ")

    assert taken_by(mesh, over_tcp) == "backup"
    mesh.s1.put(f"/v1/connect/ca/revoke-agent/{mesh.s3.name}")
    for proxy in mesh.proxies[1:]:  # web's and web-l4's sidecars: they heard of it
        eventually(lambda p=proxy: "revoked agent intermediate" in p.log(), 20,
                   what=f"{proxy.log_path.name} to hear of the revocation")  # fmt: skip
        assert "no longer trusted" not in proxy.log()
    assert served(mesh, "http", kept) == "backup"
    assert taken_by(mesh, over_tcp) == "backup"
    kept.close()
    kept_tcp.close()


def test_failover_when_the_primary_s_instances_are_set_aside(mesh: Mesh) -> None:
    """v1's app answers 503 while its check passes: outlier detection sets api-1 aside, and
    requests fail over to api-backup, as Envoy's priority failover counts an ejected host as
    unhealthy (they kept going to the ejected instance, and failing, before). Last in the
    module: the ejection outlives the test (10 s)."""
    write(mesh, "service-resolver", "api", Subsets=SUBSETS, DefaultSubset="v1",
          Failover={"*": {"Service": "api-backup"}})  # fmt: skip
    only(mesh, "v1", ("http",))
    mesh.apps["v1"].status = 503
    try:

        def backup_now() -> bool:
            conn = http.client.HTTPConnection(*mesh.ups["http"], timeout=10)
            try:
                conn.request("GET", "/echo/r")
                response = conn.getresponse()
                response.read()
                return response.status == 200
            finally:
                conn.close()

        eventually(backup_now, 20, what="a request answered by the failover target")
        assert "set aside after repeated failures" in mesh.proxies[1].log()
        assert {served(mesh, "http") for _ in range(10)} == {"backup"}
    finally:
        mesh.apps["v1"].status = 200
