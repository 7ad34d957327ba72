"""A running sidecar keeps up with its agent: registration keys changed live, a sidecar
deregistered and registered again, an agent away for a while.

Real agent, real proxy processes, real apps (proxy_support.py); `web` calls
`db` through both sidecars. Convergence is polled with deadlines, never
slept for; the agent's absence is the only wait, and it is an agent stopped
for that long, as a restart or an upgrade does (the one `sleep`: the absence itself).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    listening,
    register_pair,
    set_intention,
    sidecar,
    stop_mesh,
    wait_listening,
    web_body,
)


@dataclass
class Pair:
    agent: AgentProc
    db_app: App
    db_proxy: ProxyProc
    web_proxy: ProxyProc
    upstream: tuple[str, int]
    db_in: int
    web_in: int


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    c = Cluster(tmp_path)
    apps: list[App] = []
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("lr1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        apps.append(db_app := App("127.0.0.1").start())
        up_port = free_port("127.0.0.1")
        db_in, web_in = register_pair(agent, db_app.port, up_port)
        set_intention(agent, "web", "db", "allow")
        proxies += [db := sidecar(agent, tmp_path, "db"), web := sidecar(agent, tmp_path, "web")]
        wait_listening(agent.ip, db_in, db)
        wait_listening("127.0.0.1", up_port, web)
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        yield Pair(agent, db_app, db, web, ("127.0.0.1", up_port), db_in, web_in)
    finally:
        leftovers = stop_mesh(c, proxies, apps)
    assert not leftovers, f"processes left behind: {leftovers}"


def echoing(address: tuple[str, int]) -> socket.socket:
    """A connection through both sidecars that has echoed once (kept open)."""
    s = socket.create_connection(address, timeout=10)
    s.sendall(b"ping")
    if s.recv(100) != b"ping":
        s.close()
        raise AssertionError("no echo")
    return s


def cut(s: socket.socket) -> bool:
    """The connection was closed under us (one byte sent, nothing echoed)."""
    try:
        s.sendall(b"x")
        return s.recv(10) != b"x"
    except OSError:
        return True


def test_a_changed_handshake_timeout_applies_to_the_running_inbound(pair: Pair) -> None:
    """`handshake_timeout_ms` changed in the registration: the next connection gets the new
    timeout (the inbound listener kept the one it was opened with until a restart)."""
    agent = pair.agent
    agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db", "Port": pair.db_app.port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": pair.db_in, "Address": agent.ip,
                                       "Proxy": {"Config": {"handshake_timeout_ms": 300}}}},
    })  # fmt: skip

    def silent_client_cut_soon() -> bool:
        with socket.create_connection((agent.ip, pair.db_in), timeout=10) as s:
            started = time.monotonic()
            assert s.recv(10) == b""  # no handshake: the proxy closes it at its timeout
            return time.monotonic() - started < 3

    log = pair.db_proxy.log
    eventually(silent_client_cut_soon, 25, what=f"the 300 ms timeout; log:\n{log()[-2000:]}")
    assert listening(agent.ip, pair.db_in)  # the listener itself was not restarted
    assert pair.db_proxy.log().count(f"inbound {agent.ip}:{pair.db_in} ->") == 1


def test_a_new_local_app_is_taken_on_without_refusing_a_connect(pair: Pair) -> None:
    """The app moves to another port: the inbound listener is replaced on the same port, and
    the new one takes over the old one's socket (the old one used to close first, so callers'
    connects were refused until the new one listened)."""
    agent, moved = pair.agent, App("127.0.0.1").start()
    stop, refusals, connects = threading.Event(), [], [0]

    def probe() -> None:
        while not stop.is_set():  # connect after connect: the gap was a few hundred us
            try:
                socket.create_connection((agent.ip, pair.db_in), timeout=10).close()
                connects[0] += 1
            except OSError as exc:
                refusals.append(exc)

    def app_on(port: int) -> None:
        said = pair.db_proxy.log().count(f"inbound {agent.ip}:{pair.db_in} ->")
        agent.put("/v1/agent/service/register", {
            "Name": "db", "ID": "db", "Port": port, "Address": agent.ip,
            "Connect": {"SidecarService": {"Port": pair.db_in, "Address": agent.ip}},
        })  # fmt: skip
        eventually(lambda: pair.db_proxy.log().count(f"inbound {agent.ip}:{pair.db_in} ->")
                   > said, 10, what="the new inbound listener")  # fmt: skip

    prober = threading.Thread(target=probe, daemon=True)
    try:
        with eventually(lambda: echoing(pair.upstream), 20, what="web -> db") as kept:
            prober.start()
            for _ in range(5):
                app_on(moved.port)
                app_on(pair.db_app.port)
            stop.set()
            prober.join(10)
            assert not cut(kept)  # a connection of the old listener goes on
        assert refusals == [] and connects[0] > 0, f"{len(refusals)} of {connects[0]} refused"
        before = moved.accepted
        app_on(moved.port)  # and the new listener leads to the new app
        eventually(lambda: echoing(pair.upstream).close() or moved.accepted > before, 10,
                   what="a connection to the moved app")  # fmt: skip
    finally:
        stop.set()
        moved.stop()


def test_a_sidecar_registered_again_after_a_while_applies_at_once(pair: Pair) -> None:
    """Deregistered, the sidecar serves on with what it had; registered again (as an
    orchestrator does on an update), the new registration applies within a second or two,
    not after the watch's backoff has grown to 10 s."""
    agent = pair.agent
    agent.put("/v1/agent/service/deregister/web-sidecar-proxy")
    eventually(lambda: "Unknown service ID" in pair.web_proxy.log(), 10,
               what="the proxy told its registration is gone")  # fmt: skip
    assert listening(*pair.upstream)  # it serves on with the last registration
    time.sleep(12)  # the absence itself (long enough for a backoff from 0.1 s to reach 10 s)
    new_port = free_port("127.0.0.1")
    upstreams: list[dict[str, object]] = [{"DestinationName": "db", "LocalBindPort": new_port}]
    agent.put("/v1/agent/service/register", web_body(agent, pair.web_in, upstreams))
    started = time.monotonic()
    wait_listening("127.0.0.1", new_port, pair.web_proxy, timeout=20)
    assert time.monotonic() - started < 2.5, pair.web_proxy.log()[-2000:]


def test_a_deny_after_the_agent_was_away_cuts_within_about_a_second(pair: Pair) -> None:
    """The agent stopped for a while, then back: a deny made on it reaches the proxy and
    cuts the open connection at once (it waited for the intentions watch's backoff, up to
    15 s, when the agent came back)."""
    agent = pair.agent
    with eventually(lambda: echoing(pair.upstream), 20, what="web -> db") as kept:
        agent.stop()
        eventually(lambda: "intentions/match?by=destination&name=db failed" in
                   pair.db_proxy.log(), 10, what="db's proxy to lose its agent")  # fmt: skip
        time.sleep(12)  # the absence itself (long enough for a backoff to reach its top)
        agent.start()
        assert not cut(kept)  # the agent's absence cut nothing
        set_intention(agent, "web", "db", "deny")
        changed = time.monotonic()
        eventually(lambda: cut(kept), 20, what="the open connection cut")
        took = time.monotonic() - changed
    assert took < 2.5, f"cut {took:.1f} s after the deny; log:\n{pair.db_proxy.log()[-2000:]}"
