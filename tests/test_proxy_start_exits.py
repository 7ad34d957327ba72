"""`gossamer connect proxy` at start-up, with a real agent: what it cannot use or cannot have.

README (the proxy's start-up): a registration the proxy cannot use exits 2
naming it; a later change that is unusable is logged and the running config
stays; a port it cannot have exits 1 with one line naming it, not a
traceback. Convergence is polled with deadlines, never slept for.
"""

from __future__ import annotations

import contextlib
import re
import socket
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.cli import gossamer, one_error_line
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import App, ProxyProc, listening, sidecar, stop_mesh, wait_listening


@dataclass
class Agent:
    agent: AgentProc
    app: App
    tmp: Path


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    tmp = tmp_path_factory.mktemp("proxy-start")
    c = Cluster(tmp)
    apps: list[App] = []
    try:
        agent = c.new_agent("px1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        apps.append(app := App("127.0.0.1").start())
        yield Agent(agent, app, tmp)
    finally:
        leftovers = stop_mesh(c, [], apps)
    assert not leftovers, f"processes left behind: {leftovers}"


def register(one: Agent, name: str, port: int, config: dict[str, object], **proxy: object) -> None:
    one.agent.put("/v1/agent/service/register", {
        "Name": name, "ID": name, "Port": one.app.port, "Address": one.agent.ip,
        "Connect": {"SidecarService": {"Port": port, "Address": one.agent.ip,
                                       "Proxy": {"Config": config, **proxy}}},
    })  # fmt: skip


def test_an_address_that_is_no_address_is_refused_naming_it(one: Agent) -> None:
    """A bad `Proxy.Config` key is refused by the agent at registration (a 400 naming it);
    an address the agent takes as Consul does (free-form `LocalServiceAddress`) but the
    proxy cannot dial makes the proxy exit 2 naming it."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        register(one, "nowhere", free_port(one.agent.ip), {"bind_address": "not an address"})
    said = refused.value.read().decode()
    assert refused.value.code == 400 and "Proxy.Config.bind_address" in said, said
    register(one, "nowhere", free_port(one.agent.ip), {}, LocalServiceAddress="not an address")
    try:
        result = gossamer("connect", "proxy", "--sidecar-for", "nowhere",
                          "--http-addr", one.agent.http)  # fmt: skip
    finally:
        one.agent.put("/v1/agent/service/deregister/nowhere", None)
    line = one_error_line(result, 2)
    assert "Proxy.LocalServiceAddress" in line and "'not an address'" in line, line
    assert "Traceback" not in result.stderr


def test_an_upstream_in_another_datacenter_exits_2_naming_it(one: Agent) -> None:
    """Consul's `Datacenter` on an upstream: this mesh has one datacenter, and the proxy
    served such an upstream with the local service of that name (a misroute); it refuses."""
    upstream = {
        "DestinationName": "db",
        "Datacenter": "dc9",
        "LocalBindPort": free_port("127.0.0.1"),
    }
    register(one, "faraway", free_port(one.agent.ip), {}, Upstreams=[upstream])
    try:
        result = gossamer("connect", "proxy", "--sidecar-for", "faraway",
                          "--http-addr", one.agent.http)  # fmt: skip
    finally:
        one.agent.put("/v1/agent/service/deregister/faraway", None)
    line = one_error_line(result, 2)
    assert "Proxy.Upstreams[0].Datacenter" in line and "'dc9'" in line, line


def test_a_change_to_an_address_that_is_no_address_keeps_the_running_inbound(
    one: Agent,
) -> None:
    port = free_port(one.agent.ip)
    register(one, "kept", port, {})
    proxy = sidecar(one.agent, one.tmp, "kept")
    try:
        wait_listening(one.agent.ip, port, proxy)
        register(one, "kept", port, {}, LocalServiceAddress="not an address")
        eventually(lambda: re.search("Proxy.LocalServiceAddress|cannot be opened", proxy.log()),
                   20, what=f"the change taken; proxy log:\n{proxy.log()[-3000:]}")  # fmt: skip
        log = proxy.log()
        assert "cannot be used, keeping the last" in log
        assert "cannot be opened" not in log and "not an address:" not in log
        assert listening(one.agent.ip, port)
        assert proxy.proc is not None and proxy.proc.poll() is None
    finally:
        assert proxy.stop() == 0
        one.agent.put("/v1/agent/service/deregister/kept", None)


def test_a_second_proxy_on_a_taken_port_exits_1_naming_the_port(one: Agent) -> None:
    port = free_port(one.agent.ip)
    register(one, "twice", port, {})
    first = sidecar(one.agent, one.tmp, "twice")
    try:
        wait_listening(one.agent.ip, port, first)
        result = gossamer("connect", "proxy", "--sidecar-for", "twice", "--log-level", "warning",
                          "--http-addr", one.agent.http)  # fmt: skip
        assert "Traceback" not in result.stderr, result.stderr
        line = one_error_line(result, 1)
        assert line == f"gossamer proxy: inbound {one.agent.ip}:{port}: address already in use"
        assert listening(one.agent.ip, port)  # the first one serves on
    finally:
        assert first.stop() == 0
        one.agent.put("/v1/agent/service/deregister/twice", None)


def test_a_taken_port_at_the_default_log_level_is_one_error_line_among_the_logs(
    one: Agent,
) -> None:
    port = free_port(one.agent.ip)
    register(one, "held", port, {})
    try:
        with socket.create_server((one.agent.ip, port)):  # another program holds it
            result = gossamer("connect", "proxy", "--sidecar-for", "held",
                              "--http-addr", one.agent.http)  # fmt: skip
    finally:
        one.agent.put("/v1/agent/service/deregister/held", None)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"gossamer proxy: inbound {one.agent.ip}:{port}: address already in use"
    ), result.stderr


@pytest.mark.parametrize(
    "flags",
    [
        ["-sidecar-for", "absent", "-http-addr", "{agent}"],
        ["-sidecar-for=absent", "-http-addr={agent}", "-log-level", "warn"],
        ["-sidecar-for", "absent", "-log-level=err", "-token", "t", "-http-addr", "{agent}"],
    ],
)
def test_consuls_single_dash_flags_reach_the_agent(one: Agent, flags: list[str]) -> None:
    """`consul connect proxy -sidecar-for web -http-addr ...` as a Consul user types it: the
    agent's flags are single-dash too, and Consul's `warn`/`err` log levels are taken (it
    was "argument -h/--help: ignored explicit argument 'ttp-addr'", exit 2)."""
    argv = [flag.replace("{agent}", one.agent.http) for flag in flags]
    result = gossamer("connect", "proxy", *argv)
    line = one_error_line(result, 2)  # the agent was asked: it has no such registration
    assert "no sidecar registration 'absent-sidecar-proxy' on this agent" in line, line


def test_sidecar_for_finds_a_proxy_registered_on_its_own(one: Agent) -> None:
    """A connect-proxy registered by itself (not as a `SidecarService`, so not under
    `<id>-sidecar-proxy`) naming the service in `Proxy.DestinationServiceID`: Consul's
    `-sidecar-for` finds it by that, and so does ours (it said "no sidecar registration");
    two such proxies are refused naming both, as Consul does."""
    port = free_port(one.agent.ip)
    one.agent.put("/v1/agent/service/register",
                  {"Name": "solo", "ID": "solo", "Port": one.app.port})  # fmt: skip

    def proxy_for_solo(proxy_id: str, port: int) -> None:
        one.agent.put("/v1/agent/service/register", {
            "Kind": "connect-proxy", "Name": "solo-proxy", "ID": proxy_id, "Port": port,
            "Address": one.agent.ip,
            "Proxy": {"DestinationServiceName": "solo", "DestinationServiceID": "solo",
                      "LocalServicePort": one.app.port},
        })  # fmt: skip

    proxy_for_solo("solo-proxy", port)
    proxy = ProxyProc(["-sidecar-for", "solo", "-http-addr", one.agent.http],
                      one.tmp / "proxy-solo.log").start()  # fmt: skip
    try:
        wait_listening(one.agent.ip, port, proxy)
        assert proxy.stop() == 0
        proxy_for_solo("solo-proxy-2", free_port(one.agent.ip))
        result = gossamer("connect", "proxy", "--sidecar-for", "solo",
                          "--http-addr", one.agent.http)  # fmt: skip
        line = one_error_line(result, 2)
        assert "solo-proxy" in line and "solo-proxy-2" in line, line
    finally:
        proxy.stop()
        for gone in ("solo-proxy", "solo-proxy-2", "solo"):
            with contextlib.suppress(urllib.error.HTTPError):  # (one may not be there)
                one.agent.put(f"/v1/agent/service/deregister/{gone}", None)
