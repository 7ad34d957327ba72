"""The demo's mesh: three hosts, their agents, the app with sidecars, intentions; teardown.

`Demo` records everything brought up, so `teardown` removes exactly that.
Used by scripts/demo.py (see its docstring for the picture).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.harness.cluster import AgentProc, free_port
from tests.harness.netns import Hosts, cleanup_leftovers

ROOT = Path(__file__).resolve().parent.parent
ROLES = {"web": 1, "emoji": 2, "voting": 3}  # service -> host
T = TypeVar("T")


class DemoError(RuntimeError):
    """One line saying why the demo cannot go on."""


@dataclass
class Demo:
    """What the demo made, so that teardown removes exactly that."""

    root: Path
    front_port: int
    hosts: Hosts | None = None
    agents: dict[str, AgentProc] = field(default_factory=dict)  # by service
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def prefix(self, service: str) -> list[str]:
        return self.hosts.host(ROLES[service]).prefix if self.hosts else []

    @property
    def front(self) -> str:
        return f"http://{self.agents['web'].ip}:{self.front_port}"

    def local_ip(self, service: str) -> str:
        """Where apps and upstream listeners bind: loopback of their own host."""
        return "127.0.0.1" if self.hosts else self.agents[service].ip

    def port(self, service: str, fixed: int) -> int:
        """A fixed port inside a namespace; a free one when hosts share loopback."""
        return fixed if self.hosts else free_port(self.local_ip(service))


def http(url: str, method: str = "GET", body: Any = None, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 90.0) -> T:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            if (got := check()) is not None:
                return got
        except (OSError, ValueError, KeyError) as exc:
            last = f" (last: {exc})"
        time.sleep(0.3)
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}{last}")


def start(demo: Demo, argv: list[str], log: str) -> None:
    with (demo.root / log).open("ab") as out:
        demo.procs.append(subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
        ))  # fmt: skip


def bring_up_agents(demo: Demo, loopback: bool) -> None:
    if not loopback:
        cleanup_leftovers()
        demo.hosts = Hosts(3, demo.root)
        first = demo.hosts.agent(1, name="web-host")
        rest = [demo.hosts.agent(i, "--retry-join", first.serf_addr, name=f"{s}-host")
                for s, i in ROLES.items() if i > 1]  # fmt: skip
    else:
        net = f"127.{os.getpid() % 200 + 20}.{int(time.time()) % 250 + 1}"
        first, *rest = (_loopback_agent(demo, f"{net}.{i}", f"{s}-host") for s, i in ROLES.items())
        for agent in rest:
            agent.extra = ["--retry-join", first.serf_addr]
    for service, agent in zip(ROLES, (first, *rest), strict=True):
        demo.agents[service] = agent
    first.log_level = rest[0].log_level = rest[1].log_level = "info"
    for agent in (first, *rest):  # all at once: the others retry until the first answers
        agent.start(wait=False)
    for agent in (first, *rest):
        agent.wait_ready()
    wait_for(lambda: len(first.members()) == 3 or None, "all three agents to see each other")


def _loopback_agent(demo: Demo, ip: str, name: str) -> AgentProc:
    ports = [free_port(ip) for _ in range(4)]
    return AgentProc(name=name, ip=ip, data_dir=demo.root / name, http_port=ports[0],
                     dns_port=ports[1], serf_port=ports[2], rpc_port=ports[3],
                     log_path=demo.root / f"{name}.log")  # fmt: skip


def register_app(demo: Demo) -> dict[str, int]:
    """Register the three services with sidecars, start apps and proxies; app ports by service."""
    apps = {"web": demo.front_port, "emoji": demo.port("emoji", 8081),
            "voting": demo.port("voting", 8082)}  # fmt: skip
    ups = {"emoji": demo.port("web", 9001), "voting": demo.port("web", 9002)}
    for service, agent in demo.agents.items():
        local = agent.ip if service == "web" else demo.local_ip(service)
        metrics = f"{demo.local_ip(service)}:{demo.port(service, 9102)}"  # for gossamer stat
        proxy: dict[str, Any] = {"LocalServiceAddress": local,
                                 "Config": {"gossamer_metrics_bind_addr": metrics}}  # fmt: skip
        if service == "web":
            proxy["Upstreams"] = [
                {"DestinationName": name, "LocalBindAddress": demo.local_ip("web"),
                 "LocalBindPort": port, "Config": {"connect_timeout_ms": 1000}}
                for name, port in ups.items()
            ]  # fmt: skip
        port = demo.port(service, 21000) if demo.hosts else free_port(agent.ip)
        # Consul's two sidecar checks, probed every second instead of every 10 s, so
        # the demo is usable as soon as its proxies listen.
        checks = [
            {"Name": "Connect Sidecar Listening", "TCP": f"{agent.ip}:{port}", "Interval": "1s"},
            {"Name": f"Connect Sidecar Aliasing {service}", "AliasService": service},
        ]
        sidecar = {"Port": port, "Address": agent.ip, "Proxy": proxy, "Checks": checks}  # fmt: skip
        agent.put("/v1/agent/service/register", {"Name": service, "ID": service,
                  "Port": apps[service], "Address": agent.ip,
                  "Connect": {"SidecarService": sidecar}})  # fmt: skip
    set_intention(demo, "*", "*", "deny")
    for backend in ups:
        set_intention(demo, "web", backend, "allow")
    for service, agent in demo.agents.items():
        listen = f"{agent.ip if service == 'web' else demo.local_ip(service)}:{apps[service]}"
        extra = (
            [f"--{b}={demo.local_ip('web')}:{p}" for b, p in ups.items()]
            if service == "web"
            else []
        )
        start(demo, [*demo.prefix(service), sys.executable, "-m", "scripts.demo_app", service,
                     "--listen", listen, *extra], f"app-{service}.log")  # fmt: skip
        start(demo, [*demo.prefix(service), sys.executable, "-m", "gossamer.agent", "connect",
                     "proxy", "--sidecar-for", service, "--http-addr", agent.http],
              f"proxy-{service}.log")  # fmt: skip
    return apps


def set_intention(demo: Demo, source: str, destination: str, action: str) -> None:
    query = urllib.parse.urlencode({"source": source, "destination": destination})
    url = f"{demo.agents['web'].http}/v1/connect/intentions/exact?{query}"
    http(url, "PUT", {"Action": action, "Description": "scripts/demo.sh"})


def status(demo: Demo) -> dict[str, bool]:
    got = http(demo.front + "/api/status")
    return {name: bool(row["ok"]) for name, row in got.items()}


def teardown(demo: Demo) -> list[str]:
    """Stop everything the demo started and remove what it made; what was left behind."""
    for proc in demo.procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    left = []
    for proc in demo.procs:
        try:
            proc.wait(25)
        except subprocess.TimeoutExpired:
            proc.kill()
            left.append(f"pid {proc.pid} ignored SIGTERM")
    if demo.hosts is not None:
        left += demo.hosts.close()
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        left += [h.netns for h in demo.hosts.hosts if h.netns in names]
    else:
        for agent in demo.agents.values():
            agent.stop()
            left += [f"serf pid {p}" for p in agent.serf_pids()]
    shutil.rmtree(demo.root, ignore_errors=True)
    return left


def check(demo: Demo) -> None:
    """Deny, degrade, see the denial, allow, recover (each step raises DemoError if it fails)."""
    both = {"emoji": True, "voting": True}
    wait_for(lambda: status(demo) == both or None, "the front end to reach both backends")
    print("check: the front end reaches emoji and voting through the mesh", flush=True)
    set_intention(demo, "web", "voting", "deny")
    wait_for(lambda: status(demo) == {"emoji": True, "voting": False} or None,
             "the front end to degrade (voting denied, emoji still there)", 30)  # fmt: skip
    print("check: deny web -> voting: the front end degrades, emoji still served", flush=True)
    denials = f"{demo.agents['voting'].http}/v1/connect/intentions/denials?destination=voting"
    row = wait_for(lambda: next((r for r in http(denials) if r["Source"] == "web"), None),
                   "voting's agent to report the denial", 30)  # fmt: skip
    print(f"check: voting's agent reports the denial ({row['Count']}x, {row['Rule']})", flush=True)
    rows = stat_denied(demo)
    print(f"check: gossamer stat at voting's agent counts {rows} denied from web", flush=True)
    set_intention(demo, "web", "voting", "allow")
    wait_for(lambda: status(demo) == both or None, "the front end to recover", 30)
    print("check: allow web -> voting again: the front end recovers", flush=True)


def stat_denied(demo: Demo) -> int:
    """Connections from web that `gossamer stat` counts as denied at voting."""
    argv = [sys.executable, "-m", "gossamer.agent", "stat", "--json",
            "--http-addr", demo.agents["voting"].http]  # fmt: skip

    def denied() -> int | None:
        rows = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
        edge = [r for r in rows if (r["source"], r["destination"]) == ("web", "voting")]
        return edge[0]["denied"] if edge and edge[0]["denied"] > 0 else None

    return wait_for(denied, "gossamer stat to count the denials", 30)
