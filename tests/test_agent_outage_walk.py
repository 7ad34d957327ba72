"""Sidecars whose agent goes away and comes back: SIGKILLed and restarted on its data dir,
or restarted on an empty one (a new CA, no registrations).

Real agent, real `gossamer connect proxy --sidecar-for` processes, real apps
(proxy_support.py); `web` calls `db` through both sidecars, `api` is denied
`db`. The data plane is expected to serve on its last known state while the
agent is away (as Linkerd's and Envoy's do while their control plane is),
quietly and without spinning, and to pick up whatever the agent says once
it is back, even when the agent's indexes started over. The only sleep is
the outage itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.cluster import AgentProc, Cluster, free_port, pid_alive
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    register_pair,
    roundtrip,
    set_intention,
    sidecar,
    stop_mesh,
    wait_listening,
    web_body,
)


@dataclass
class Mesh:
    agent: AgentProc
    app: App
    proxies: dict[str, ProxyProc]
    db_in: int
    web_in: int
    api_in: int
    web_db: tuple[str, int]  # web's upstream listener for db
    api_db: tuple[str, int]  # api's (denied)


def _register(agent: AgentProc, mesh_ports: tuple[int, int, int, int, int, int]) -> None:
    """db, web (upstream db) and api (upstream db) with sidecars, as an orchestrator does."""
    app_port, db_in, web_in, api_in, web_db, api_db = mesh_ports
    agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db", "Port": app_port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip}},
    })  # fmt: skip
    for name, port, up in (("web", web_in, web_db), ("api", api_in, api_db)):
        body = web_body(agent, port, [{"DestinationName": "db", "LocalBindPort": up}])
        body |= {"Name": name, "ID": name}
        agent.put("/v1/agent/service/register", body)
    set_intention(agent, "web", "db", "allow")
    set_intention(agent, "api", "db", "deny")


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    c = Cluster(tmp_path)
    apps: list[App] = []
    proxies: dict[str, ProxyProc] = {}
    try:
        agent = c.new_agent("out1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        apps.append(app := App("127.0.0.1").start())
        web_db, api_db = free_port("127.0.0.1"), free_port("127.0.0.1")
        db_in, web_in = register_pair(agent, app.port, web_db)
        api_in = free_port(agent.ip)
        _register(agent, (app.port, db_in, web_in, api_in, web_db, api_db))
        for name in ("db", "web", "api"):
            proxies[name] = sidecar(agent, tmp_path, name)
        wait_listening("127.0.0.1", web_db, proxies["web"])
        wait_listening("127.0.0.1", api_db, proxies["api"])
        mesh = Mesh(agent, app, proxies, db_in, web_in, api_in, ("127.0.0.1", web_db),
                    ("127.0.0.1", api_db))  # fmt: skip
        eventually(lambda: through(mesh.web_db, b"a"), 20, what="web -> db")
        yield mesh
    finally:
        leftovers = stop_mesh(c, proxies.values(), apps)
    assert not leftovers, f"processes left behind: {leftovers}"


def through(address: tuple[str, int], payload: bytes) -> bool:
    """One connection through the sidecars was answered (echoed) in full."""
    try:
        return roundtrip(address, payload, timeout=5) == payload + b"<eof>"
    except OSError:
        return False


def echoing(address: tuple[str, int]) -> socket.socket:
    s = socket.create_connection(address, timeout=10)
    s.sendall(b"ping")
    assert s.recv(100) == b"ping", "no echo"
    return s


def still_echoes(s: socket.socket, payload: bytes) -> bool:
    try:
        s.sendall(payload)
        return s.recv(100) == payload
    except OSError:
        return False


def kill(agent: AgentProc) -> None:
    """SIGKILL: no leave, no clean close of the held queries; wait for its serf to follow."""
    assert agent.proc is not None
    agent.proc.kill()
    agent.proc.wait(10)
    eventually(lambda: not any(pid_alive(p) for p in agent.serf_pids()), 10,
               what="the agent's serf to exit")  # fmt: skip


def cpu_s(proxy: ProxyProc) -> float:
    assert proxy.proc is not None
    fields = Path(f"/proc/{proxy.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_agent_killed_the_sidecars_serve_on_quietly_then_follow_it(mesh: Mesh) -> None:
    """SIGKILL for a few seconds: the open connection goes on, new ones are routed, api is
    still refused; each sidecar says once per watch that the agent is gone and spends
    little CPU meanwhile (no retry loop); back on its data dir, a deny made then cuts the
    open connection within a couple of seconds."""
    agent, proxies = mesh.agent, mesh.proxies
    kept = echoing(mesh.web_db)
    logged = {name: len(p.log()) for name, p in proxies.items()}
    kill(agent)
    before = {name: cpu_s(p) for name, p in proxies.items()}
    time.sleep(6)  # the outage itself
    spent = {name: cpu_s(p) - before[name] for name, p in proxies.items()}
    assert max(spent.values()) < 1.0, spent  # (~0.03 s: 7 watches asking every 0.5 s)
    assert still_echoes(kept, b"during")
    assert through(mesh.web_db, b"new")
    assert not through(mesh.api_db, b"denied")
    for name, proxy in proxies.items():
        lines = proxy.log()[logged[name] :].splitlines()
        failed = [line for line in lines if "failed (" in line]
        assert len(failed) == len({line.split("watching ")[1].split(" ")[0] for line in failed})
        assert "Traceback" not in proxy.log(), proxy.log()[-3000:]
        assert len(lines) <= 12, "\n".join(lines)  # one per watch (and a denial report's)
    agent.start()
    assert still_echoes(kept, b"after")
    set_intention(agent, "web", "db", "deny")
    denied = time.monotonic()
    eventually(lambda: not still_echoes(kept, b"x"), 20, what="the open connection cut")
    assert time.monotonic() - denied < 3, proxies["db"].log()[-2000:]


def test_an_agent_back_on_an_empty_data_dir_is_followed(mesh: Mesh) -> None:
    """Found by the walk: the agent restarted on an empty data dir (a new CA; the sidecars'
    registrations gone, then registered again by the orchestrator). Its indexes start over,
    and its roots came under the same X-Consul-Index as the old CA's: the sidecars' roots
    watch, asking from the old index, was held as "nothing new" for good, so the new leaves
    were checked against the old root and every connection failed ("unknown-issuer").
    Now a watch asks afresh after any failure, and web -> db works again at once."""
    agent, proxies = mesh.agent, mesh.proxies
    roots = agent.get("/v1/agent/connect/ca/roots")["Roots"]
    kill(agent)
    shutil.rmtree(agent.data_dir)
    agent.start()
    eventually(agent.enrolled, 20, what="the new agent's certificate")
    assert agent.get("/v1/agent/connect/ca/roots")["Roots"] != roots  # a new CA
    _register(agent, (mesh.app.port, mesh.db_in, mesh.web_in, mesh.api_in, mesh.web_db[1],
                      mesh.api_db[1]))  # fmt: skip
    try:
        eventually(lambda: through(mesh.web_db, b"again"), 20, what="web -> db on the new CA")
    except AssertionError:
        raise AssertionError(f"web's log:\n{proxies['web'].log()[-2500:]}") from None
    assert not through(mesh.api_db, b"denied")
    for proxy in proxies.values():
        assert "Traceback" not in proxy.log(), proxy.log()[-3000:]
