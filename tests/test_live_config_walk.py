"""A running sidecar's registration edited as an operator edits it, with traffic flowing.

Real agent, real sidecar processes, a real echo app (proxy_support.py); `web` calls `db`
through both sidecars while its registration changes under it. What the edits must not
do: leave a listener closed for a retry period when the port it wants was only being
given up by another listener of the same proxy, or leave a key read once at start.
Convergence is polled with deadlines (harness/poll.py), never slept for.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gossamer.proxy.config_error import ConfigError
from gossamer.proxy.config_flags import keep_pinned
from gossamer.proxy.config_metrics import with_metrics
from gossamer.proxy.config_registration import config_from_registration
from gossamer.proxy.config_unused import unused_keys
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    listening,
    register_pair,
    roundtrip,
    series,
    set_intention,
    sidecar,
    stop_mesh,
    wait_listening,
)


@dataclass
class Mesh:
    agent: AgentProc
    web_proxy: ProxyProc
    upstream: tuple[str, int]
    web_in: int


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    c = Cluster(tmp_path)
    apps: list[App] = []
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("lc1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        apps.append(db_app := App("127.0.0.1").start())
        up_port = free_port("127.0.0.1")
        db_in, web_in = register_pair(agent, db_app.port, up_port)
        set_intention(agent, "web", "db", "allow")
        proxies += [db := sidecar(agent, tmp_path, "db"), web := sidecar(agent, tmp_path, "web")]
        wait_listening(agent.ip, db_in, db)
        wait_listening("127.0.0.1", up_port, web)
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        # and a round trip made: db's sidecar may not have the allow yet (its first intentions)
        eventually(lambda: _through(("127.0.0.1", up_port)), 20, what="web -> db")
        yield Mesh(agent, web, ("127.0.0.1", up_port), web_in)
    finally:
        leftovers = stop_mesh(c, proxies, apps)
    assert not leftovers, f"processes left behind: {leftovers}"


def _through(address: tuple[str, int]) -> bool:
    try:
        return roundtrip(address, b"warm", timeout=5) == b"warm<eof>"
    except OSError:
        return False


def register_web(mesh: Mesh, inbound: int, upstreams: list[dict[str, object]],
                 config: dict[str, object] | None = None) -> None:  # fmt: skip
    """web's registration with its sidecar on `inbound`, these upstreams and `Proxy.Config`."""
    proxy: dict[str, object] = {"Upstreams": upstreams, "Config": config or {}}
    mesh.agent.put("/v1/agent/service/register", {
        "Name": "web", "ID": "web", "Port": 1, "Address": mesh.agent.ip,
        "Connect": {"SidecarService": {"Port": inbound, "Address": mesh.agent.ip,
                                       "Proxy": proxy}},
    })  # fmt: skip


def test_a_port_moved_to_another_listener_of_the_proxy_opens_at_once(mesh: Mesh) -> None:
    """One edit gives an upstream's port to the inbound listener, the next gives another
    upstream's port to the metrics listener, the next the metrics port to the inbound one:
    each new listener opens at once. It used to be opened before the old one was closed,
    fail with EADDRINUSE (an ERROR line) and wait out the 5 s retry."""
    agent, web = mesh.agent, mesh.web_proxy
    db = {"DestinationName": "db", "LocalBindPort": mesh.upstream[1]}
    ip, first, second = mesh.agent.ip, free_port(agent.ip), free_port(agent.ip)

    def cache(port: int) -> dict[str, object]:  # an upstream on the agent's address
        return {"DestinationName": "cache", "LocalBindPort": port, "LocalBindAddress": ip}

    def applied(edit: str, said: str) -> float:
        started = time.monotonic()
        eventually(lambda: said in web.log(), 15, what=f"{edit}; log:\n{web.log()[-2000:]}")
        return time.monotonic() - started

    register_web(mesh, mesh.web_in, [db, cache(first)])
    wait_listening(ip, first, web)
    register_web(mesh, first, [db])  # the upstream's port becomes the inbound one
    took = [applied("the inbound listener on the upstream's port", f"inbound {ip}:{first} ->")]
    register_web(mesh, first, [db, cache(second)])
    wait_listening(ip, second, web)
    metrics: dict[str, object] = {"gossamer_metrics_bind_addr": f"{ip}:{second}"}
    register_web(mesh, first, [db], metrics)  # the upstream's port becomes the metrics one
    took.append(applied("metrics on the upstream's port", f"metrics on http://{ip}:{second}"))
    register_web(mesh, second, [db])  # the metrics port becomes the inbound one
    took.append(applied("the inbound listener on the metrics port", f"inbound {ip}:{second} ->"))
    assert "cannot be opened" not in web.log() and "cannot serve metrics" not in web.log()
    assert max(took) < 2.5, took
    assert not listening(ip, mesh.web_in) and not listening(ip, first)  # ports given up
    assert roundtrip(mesh.upstream, b"still") == b"still<eof>"  # db's upstream untouched


def test_gossamer_metrics_turned_on_and_off_live_applies(mesh: Mesh) -> None:
    """`Proxy.Config.gossamer_metrics` changed in the registration: on, the next connections
    are counted; off, the figures go and nothing more is counted, as in a proxy started so.
    It was read once at start: a change (SIGHUP too) never applied."""
    db = {"DestinationName": "db", "LocalBindPort": mesh.upstream[1]}
    port = free_port("127.0.0.1")
    addr = f"127.0.0.1:{port}"
    keys: dict[str, object] = {"gossamer_metrics_bind_addr": addr, "gossamer_metrics": False}
    register_web(mesh, mesh.web_in, [db], keys)
    eventually(lambda: listening("127.0.0.1", port), 15, what="the metrics listener")
    opened = "gossamer_proxy_tcp_open_total"

    def counted() -> float:
        assert roundtrip(mesh.upstream, b"c") == b"c<eof>"
        return series(addr, opened, direction="outbound")

    assert counted() == 0  # turned off: the figures counted so far are gone
    register_web(mesh, mesh.web_in, [db], {**keys, "gossamer_metrics": True})
    eventually(lambda: counted() > 0, 15, what=f"counting; log:\n{mesh.web_proxy.log()[-2000:]}")
    register_web(mesh, mesh.web_in, [db], keys)
    eventually(lambda: counted() == 0, 15, what="the figures dropped")
    assert counted() == 0  # and nothing counted since
    with socket.create_connection(mesh.upstream, timeout=10) as kept:  # the proxy serves on
        kept.sendall(b"x")
        assert kept.recv(10) == b"x"


def _registration(config: dict[str, object], upstream_port: int = 9191) -> dict[str, object]:
    return {"Kind": "connect-proxy", "Port": 21000, "Address": "10.0.0.5", "Proxy": {
        "DestinationServiceName": "web", "LocalServicePort": 8080, "Config": config,
        "Upstreams": [{"DestinationName": "db", "LocalBindPort": upstream_port}]}}  # fmt: skip


@pytest.mark.parametrize(("config", "says"), [
    ({"gossamer_metrics_bind_addr": "127.0.0.1:9191"},
     "Proxy.Config.gossamer_metrics_bind_addr: 127.0.0.1:9191 clashes with upstream 'db' on "
     "127.0.0.1:9191"),
    ({"envoy_prometheus_bind_addr": "0.0.0.0:9191"},
     "Proxy.Config.envoy_prometheus_bind_addr: 0.0.0.0:9191 clashes with upstream 'db'"),
    ({"gossamer_metrics_bind_addr": "10.0.0.5:21000"},
     "Proxy.Config.gossamer_metrics_bind_addr: 10.0.0.5:21000 clashes with the inbound "
     "listener on 10.0.0.5:21000"),
    ({"gossamer_metrics_bind_addr": "10.0.0.5:9191"}, None),  # another address: apart
    ({"gossamer_metrics_bind_addr": ":9102"}, None),
])  # fmt: skip
def test_a_metrics_address_on_a_port_of_the_proxy_is_refused_naming_the_key(
    config: dict[str, object], says: str | None
) -> None:
    """Both were opened, and one lost: an upstream on the metrics port was tried again every
    5 s for good with a bare "address already in use" (at start, and live)."""
    body = _registration(config)
    if says is None:
        assert config_from_registration(body, "web-sidecar-proxy").metrics_addr
        return
    with pytest.raises(ConfigError) as raised:
        config_from_registration(body, "web-sidecar-proxy")
    assert str(raised.value).startswith(says), str(raised.value)


def test_an_upstream_moved_onto_the_metrics_port_is_refused_and_the_last_config_serves(
    mesh: Mesh,
) -> None:
    db = {"DestinationName": "db", "LocalBindPort": mesh.upstream[1]}
    port = free_port("127.0.0.1")
    metrics: dict[str, object] = {"gossamer_metrics_bind_addr": f"127.0.0.1:{port}"}
    register_web(mesh, mesh.web_in, [db], metrics)
    eventually(lambda: listening("127.0.0.1", port), 15, what="the metrics listener")
    register_web(mesh, mesh.web_in, [{**db, "LocalBindPort": port}], metrics)
    said = (f"cannot be used, keeping the last: Proxy.Config.gossamer_metrics_bind_addr: "
            f"127.0.0.1:{port} clashes with upstream 'db' on 127.0.0.1:{port}")  # fmt: skip
    eventually(lambda: said in mesh.web_proxy.log(), 15,
               what=f"the refusal; log:\n{mesh.web_proxy.log()[-2000:]}")  # fmt: skip
    assert roundtrip(mesh.upstream, b"kept") == b"kept<eof>"  # the last good config serves
    assert "cannot listen" not in mesh.web_proxy.log()


def test_a_metrics_flag_on_a_port_of_the_proxy_is_refused_at_start_and_on_a_change() -> None:
    """`--metrics-addr` is checked the same way, at start and against each changed
    registration it is pinned over (the change is refused, the last config kept)."""
    start = config_from_registration(_registration({}), "web-sidecar-proxy")
    with pytest.raises(ConfigError, match=r"^--metrics-addr: 127.0.0.1:9191 clashes with up"):
        with_metrics(start, "127.0.0.1:9191")
    pinned = with_metrics(start, "127.0.0.1:9102")
    moved = config_from_registration(_registration({}, upstream_port=9102), "web-sidecar-proxy")
    with pytest.raises(ConfigError, match=r"^--metrics-addr: 127.0.0.1:9102 clashes with up"):
        keep_pinned(moved, pinned)


def _echoes(s: socket.socket, payload: bytes) -> bool:
    try:
        s.sendall(payload)
        return s.recv(100) == payload
    except OSError:
        return False


def test_an_upstream_whose_service_changed_has_its_connections_cut_after_the_drain(
    mesh: Mesh,
) -> None:
    """A removed upstream's TCP connections went on for good (a client's pooled connections
    reached the old service for as long as they lived); Envoy cuts a draining listener's
    after its drain time. Now: after the drain timeout when the port no longer leads to
    that service, never when a change keeps the service (here its connect timeout)."""
    web = mesh.web_proxy
    db = {"DestinationName": "db", "LocalBindPort": mesh.upstream[1]}
    kept = socket.create_connection(mesh.upstream, timeout=10)
    try:
        assert _echoes(kept, b"first")
        slower = db | {"Config": {"connect_timeout_ms": 5000}}
        register_web(mesh, mesh.web_in, [slower], {"drain_timeout_s": 1})
        eventually(lambda: "upstream db changed" in web.log(), 15, what="the change applied")
        time.sleep(1.5)  # past the drain timeout: what is tested is that nothing cuts it
        assert _echoes(kept, b"kept"), web.log()[-2000:]
        register_web(mesh, mesh.web_in, [], {"drain_timeout_s": 1})
        eventually(lambda: "upstream db removed" in web.log(), 15, what="the removal applied")
        removed = time.monotonic()
        assert _echoes(kept, b"within the drain")  # it goes on for the drain timeout
        eventually(lambda: not _echoes(kept, b"x"), 10, what="the connection cut")
        assert time.monotonic() - removed >= 0.5
        assert "cutting its 1 connection(s) left" in web.log(), web.log()[-2000:]
    finally:
        kept.close()


def test_the_keys_the_proxy_does_not_read_are_found() -> None:
    """Consul takes any key in `Proxy.Config` (its Envoy reads `limits`,
    `passive_health_check`, ...); gossamer's proxy ignored them without a word."""
    body = _registration({"limits": {"max_connections": 10}, "drain_timeout_s": 5})
    body["Proxy"]["Upstreams"][0]["Config"] = {  # type: ignore[index]
        "passive_health_check": {"max_failures": 3},
        "connect_timeout_ms": 500,
    }
    assert unused_keys(body) == ["Proxy.Config.limits",
                                 "Proxy.Upstreams[0].Config.passive_health_check"]  # fmt: skip
    assert unused_keys(_registration({"protocol": "http", "drain_timeout_s": 5})) == []
    assert unused_keys({"Proxy": "not a map"}) == []  # (the config checks refuse it)


def test_a_running_sidecar_says_which_keys_it_ignores_once(mesh: Mesh) -> None:
    web = mesh.web_proxy
    db = {"DestinationName": "db", "LocalBindPort": mesh.upstream[1],
          "Config": {"passive_health_check": {"max_failures": 3}}}  # fmt: skip
    said = "registration sets keys this proxy does not use, ignored: Proxy.Config.limits, " \
           "Proxy.Upstreams[0].Config.passive_health_check"  # fmt: skip
    register_web(mesh, mesh.web_in, [db], {"limits": {"max_connections": 10}})
    eventually(lambda: said in web.log(), 15, what=f"the ignored keys named:\n{web.log()[-2000:]}")
    slower = db | {"Config": {"passive_health_check": {"max_failures": 3},
                              "connect_timeout_ms": 5000}}  # fmt: skip
    register_web(mesh, mesh.web_in, [slower], {"limits": {"max_connections": 10}})
    eventually(lambda: "upstream db changed" in web.log(), 15, what="the next change applied")
    assert web.log().count(said) == 1, web.log()[-2000:]
    assert roundtrip(mesh.upstream, b"still") == b"still<eof>"


def _closed_by_peer(s: socket.socket) -> bool:
    """Whether `s` (non-blocking) was closed or reset by the other end."""
    try:
        return s.recv(100) == b""
    except BlockingIOError:  # open, nothing to read
        return False
    except OSError:  # (a reset)
        return True


def test_a_silent_tcp_connection_is_closed_at_the_idle_limit_a_talking_one_is_not(
    mesh: Mesh,
) -> None:
    """A TCP connection had no idle limit at all (found by the flow walk): one whose peer
    vanished without a FIN, or a reader stalled for good, held its connections and ~350 KiB
    of the proxy for as long as it lived. Envoy's tcp_proxy closes one idle for an hour;
    here the proxy's `idle_timeout_ms` bounds it (1 s in this test)."""
    web = mesh.web_proxy
    db = {"DestinationName": "db", "LocalBindPort": mesh.upstream[1]}
    register_web(mesh, mesh.web_in, [db], {"idle_timeout_ms": 1000})
    eventually(lambda: "upstream db changed" in web.log(), 15, what="the limit applied")
    talking = socket.create_connection(mesh.upstream, timeout=10)
    silent = socket.create_connection(mesh.upstream, timeout=10)
    try:
        assert _echoes(talking, b"hi") and _echoes(silent, b"hi")
        quiet, closed_after = time.monotonic(), None
        silent.setblocking(False)
        for _ in range(14):  # 2.8 s, past twice the limit: a byte each way every 0.2 s
            time.sleep(0.2)  # (the pace of a talking client: time is the point)
            assert _echoes(talking, b"."), web.log()[-2000:]
            if closed_after is None and _closed_by_peer(silent):
                closed_after = time.monotonic() - quiet
        # 1x to 1.5x the limit, and the slack of a loaded 2-core machine's timers
        assert closed_after is not None and 0.9 <= closed_after <= 1.5 + 1.0, closed_after
    finally:
        talking.close()
        silent.close()
