"""The README's commands as a new user (often a Consul user) types them.

Found walking the README on a dev agent: `gossamer top` piped or run under
`timeout` printed nothing; Consul's documented `consul intention match db`
was a usage error; and Consul's one-dash spelling of the client flags
(`-http-addr`) was read by argparse as `-h ttp-addr`, exit 2 with an error
about `--help`, on every client command but `connect proxy`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cli import cli_env, expect, gossamer
from tests.harness.cluster import AgentProc, Cluster, http_json, put_exact

FRAME = "edges of this agent's proxies, last"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProc]:
    c = Cluster(tmp_path_factory.mktemp("readme-walk"))
    try:
        a = c.new_agent("rw1").start()
        put_exact(a, "web", "db", {"Action": "allow"})
        put_exact(a, "web", "cache", {"Action": "deny"})
        yield a
    finally:
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def _read_until(proc: subprocess.Popen[bytes], frames: int, timeout: float) -> str:
    """What `proc` wrote to its stdout pipe until it shows `frames` frames, or the deadline."""
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    while out.decode(errors="replace").count(FRAME) < frames:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            break
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace")


def test_top_piped_shows_each_frame_as_it_comes_and_ends_on_sigterm(agent: AgentProc) -> None:
    """Before: with no terminal, rich's Live kept every frame to itself until the loop ended,
    so `gossamer top | tee log` showed nothing for as long as it ran, and `timeout 10
    gossamer top` (SIGTERM) ended it with nothing printed at all and a signal's exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gossamer.agent", "top", "--interval", "0.2",
         "--http-addr", agent.http],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env=cli_env(),
    )  # fmt: skip
    try:
        shown = _read_until(proc, 2, timeout=5.0)
        assert shown.count(FRAME) >= 2, shown
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (proc.returncode, err)
    assert (shown + rest.decode()).endswith("\n"), repr(rest)


def test_intention_match_takes_the_service_as_consul_does(agent: AgentProc) -> None:
    """`consul intention match db` (Consul's docs' example) matches by destination; `-source`
    and `-destination` keep taking the name. Before: a positional name was a usage error."""
    by_destination = expect("intention", "match", "db", "--http-addr", agent.http)
    assert "web" in by_destination and "cache" not in by_destination, by_destination
    by_source = expect("intention", "match", "-source", "web", "--http-addr", agent.http)
    assert "db" in by_source and "cache" in by_source, by_source
    assert "db" in expect("intention", "match", "-destination", "db", "--http-addr", agent.http)
    both = gossamer("intention", "match", "--source", "web", "db", "--http-addr", agent.http)
    assert both.returncode == 2 and "not both" in both.stderr, both.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["intention", "check", "web", "db"],
        ["intention", "list"],
        ["members"],
        ["stat"],
        ["check", "--json"],
    ],
)
def test_client_commands_take_consuls_one_dash_http_addr(
    agent: AgentProc, command: list[str]
) -> None:
    """`consul intention check -http-addr=H web db`: the flag before, after, or with `=`."""
    for spelled in (["-http-addr", agent.http], [f"-http-addr={agent.http}"]):
        result = gossamer(*command, *spelled)
        assert result.returncode in (0, 1), (command, result.stdout, result.stderr)
        assert "--help" not in result.stderr, result.stderr
    result = gossamer(command[0], "-http-addr", agent.http, *command[1:])
    assert "--help" not in result.stderr, result.stderr


def test_check_pre_takes_the_agents_flags_with_one_dash() -> None:
    """`consul agent -dev -http-port 8501` is how a Consul user writes the agent's flags; the
    same spelling works for `gossamer agent` and `check --pre`, which reads them."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = gossamer("check", "--pre", "-dev", "-http-port", str(port), "--json")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"http port 127.0.0.1:{port}/tcp" in result.stdout, result.stdout
    assert '"Status": "fail"' in result.stdout, result.stdout


CONSUL_HCL = """
service {
  name = "web"
  port = 8080
  connect {
    sidecar_service {
      proxy {
        upstreams = [{ destination_name = "db", local_bind_port = 9191 }]
      }
    }
  }
}
service {
  name = "db"
  port = 5432
  check { tcp = "127.0.0.1:5432", interval = "10s" }
}
"""


def test_services_register_reads_consuls_hcl_definitions(agent: AgentProc, tmp_path: Path) -> None:
    """`consul services register web.hcl` reads HCL, Consul's usual spelling of a service
    definition (two `service` blocks are two services, as in HCL1). Before: the file was
    read as YAML and refused, "expected a mapping with a service definition"."""
    path = tmp_path / "web.hcl"
    path.write_text(CONSUL_HCL)
    said = expect("services", "register", str(path), "--http-addr", agent.http)
    assert "web" in said and "db" in said, said
    sidecar = agent.get("/v1/agent/service/web-sidecar-proxy")
    (upstream,) = sidecar["Proxy"]["Upstreams"]
    assert (upstream["DestinationName"], upstream["LocalBindPort"]) == ("db", 9191), sidecar
    checks = agent.get("/v1/agent/checks")
    assert any(c["ServiceID"] == "db" and c["Type"] == "tcp" for c in checks.values()), checks
    expect("services", "deregister", str(path), "--http-addr", agent.http)
    path.write_text('service {\n  name = "web"\n  port = = 1\n}\n')
    bad = gossamer("services", "register", str(path), "--http-addr", agent.http)
    assert bad.returncode == 2 and "line 3, column 10" in bad.stderr, bad.stderr


def test_check_hint_names_the_service_id_sidecar_for_takes(agent: AgentProc) -> None:
    """A service registered with an ID other than its name (`"ID": "web-1"`, as the README's
    own registration example has it): `gossamer check` told the user to run `connect proxy
    --sidecar-for web`, which exits 2 (no registration `web-sidecar-proxy`); `--sidecar-for`
    takes the service's ID."""
    agent.put("/v1/agent/service/register", {
        "Name": "pay", "ID": "pay-1", "Port": 3, "Connect": {"SidecarService": {}}})  # fmt: skip
    try:
        result = gossamer("check", "--json", "--http-addr", agent.http)
    finally:
        agent.put("/v1/agent/service/deregister/pay-1")
    (up,) = [c for c in json.loads(result.stdout)["Checks"]
             if c["Name"].startswith("proxy pay-1-sidecar-proxy up")]  # fmt: skip
    assert up["Status"] == "fail", up
    assert "gossamer connect proxy --sidecar-for pay-1" in up["Hint"], up


def test_check_fails_an_upstream_whose_split_target_has_no_instance(agent: AgentProc) -> None:
    """The README's canary (`api` 90, `api-canary` 10) with the canary down: every tenth
    request to the upstream fails (503), by design, as Envoy's weighted clusters do. `gossamer
    check` said ✔ for the upstream, counting only `api`'s own instances."""
    agent.put(
        "/v1/agent/service/register", {"Name": "shopapi", "Port": 4, "Connect": {"Native": True}}
    )
    agent.put("/v1/agent/service/register", {
        "Name": "shop", "Port": 3, "Connect": {"SidecarService": {"Proxy": {"Upstreams": [
            {"DestinationName": "shopapi", "LocalBindPort": 9}]}}}})  # fmt: skip

    def upstreams() -> dict[str, str]:
        result = gossamer("check", "--json", "--http-addr", agent.http)
        (line,) = [c for c in json.loads(result.stdout)["Checks"]
                   if c["Name"] == "upstreams of shop-sidecar-proxy"]  # fmt: skip
        return dict(line)

    try:
        assert upstreams()["Status"] == "ok"
        splits = [{"Weight": 90, "Service": "shopapi"},
                  {"Weight": 10, "Service": "shopapi-canary"}]  # fmt: skip
        agent.put("/v1/config", {"Kind": "service-splitter", "Name": "shopapi", "Splits": splits})
        line = upstreams()
        assert line["Status"] == "fail", line
        assert "shopapi-canary" in line["Detail"] and "10%" in line["Detail"], line
        assert "shopapi-canary" in line["Hint"], line
    finally:
        agent.put("/v1/agent/service/deregister/shop")
        agent.put("/v1/agent/service/deregister/shopapi")
        http_json(agent.http + "/v1/config/service-splitter/shopapi", "DELETE")
