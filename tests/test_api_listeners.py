"""HTTP and HTTPS switched on and off on their own (`http_port: -1`, `https.port`, Consul's
`ports { http = -1, https = 8501 }`): the config rules, then an agent serving HTTPS only,
reached by curl, py-consul, the CLI (its default address falls back to HTTPS), the
proxy's agent client, the TUI's client and `gossamer check`."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import consul
import pytest

from gossamer.agent.cli.client import AgentClient, AgentUnreachable, client_from_args
from gossamer.agent.config.api_address import api_listeners
from gossamer.agent.lifecycle.listeners import BACKLOG
from gossamer.intentions.tui.client import AgentApi
from gossamer.proxy.agent_http import AgentHttp
from tests.harness.binaries import require
from tests.harness.cli import gossamer
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.test_config import errors, load, write
from tests.test_https_api import curl, make_pki


def test_consul_ports_spelling_turns_http_off_and_https_on(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "ports: {http: -1, https: 8555, dns: 8653}\n"
                 "https: {cert_file: /c.pem, key_file: /k.pem}\n")  # fmt: skip
    config = load(["--dev", "--config-file", path])
    assert (config.http_port, config.https.listen_port, config.dns_port) == (-1, 8555, 8653)
    assert [(a.scheme, a.port) for a in api_listeners(config)] == [("https", 8555)]


def test_https_defaults_to_8501_once_files_are_given_and_minus_one_turns_it_off(
    tmp_path: Path,
) -> None:
    files = "https: {cert_file: /c.pem, key_file: /k.pem"
    on = load(["--dev", "--config-file", write(tmp_path, "on.yaml", files + "}\n")])
    assert [(a.scheme, a.port) for a in api_listeners(on)] == [("http", 8500), ("https", 8501)]
    off = load(["--dev", "--config-file", write(tmp_path, "off.yaml", files + ", port: -1}\n")])
    assert off.https.listen_port is None and [a.scheme for a in api_listeners(off)] == ["http"]


def test_https_without_files_takes_the_mesh_ca_but_half_a_pair_is_refused(tmp_path: Path) -> None:
    mesh = load(["--dev", "--config-file", write(tmp_path, "m.yaml", "https: {port: 8501}\n")])
    assert mesh.https.listen_port == 8501 and mesh.https.cert_file is None
    (line,) = errors(["--dev", "--config-file", write(tmp_path, "h.yaml",
                                                      "https: {cert_file: /c.pem}\n")])  # fmt: skip
    assert "cert_file and key_file go together" in line


def test_neither_http_nor_https_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "ports: {http: -1}\n")
    (line,) = errors(["--dev", "--config-file", path])
    assert line.startswith(f"{path}: http_port: -1 turns plain HTTP off, and HTTPS is not on")
    (flag,) = errors(["--dev", "--http-port", "-1"])
    assert flag.startswith("flag --http-port: http_port: -1 turns plain HTTP off")


def test_bad_ports_entries_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "ports: {grpc: 8502, http: 0}\n")
    lines = errors(["--dev", "--config-file", path])
    assert f"{path}: ports.grpc: unknown port (known: http, https, dns, serf_lan, server)" in lines
    assert any(line.startswith(f"{path}: http_port: must be an integer") for line in lines)


def test_https_port_clashing_with_dns_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "https: {port: 8600, cert_file: /c, key_file: /k}\n")
    (line,) = errors(["--dev", "--config-file", path])
    assert line == f"{path}: https.port: 8600 is also the dns_port (both listen on 127.0.0.1)"


@pytest.fixture
def https_only(tmp_path: Path) -> Iterator[tuple[AgentProc, Path]]:
    require("openssl")
    c = Cluster(tmp_path)
    agent = c.new_agent("tlsonly")
    make_pki(tmp_path, agent.ip)
    agent.https_port, agent.cafile = free_port(agent.ip), str(tmp_path / "ca.pem")
    config = tmp_path / "https.yaml"
    config.write_text(
        f"ports: {{http: -1, https: {agent.https_port}}}\n"
        f"https: {{cert_file: {tmp_path / 'server.pem'}, key_file: {tmp_path / 'server.key'}}}\n"
    )
    plain_port, agent.http_port = agent.http_port, -1  # the harness then speaks HTTPS
    agent.extra += ["--config-file", str(config)]
    try:
        yield agent.start(), tmp_path / str(plain_port)
    finally:
        assert not c.close()


def test_an_agent_serving_only_https_is_reached_by_every_client(
    https_only: tuple[AgentProc, Path],
) -> None:
    require("curl")
    agent, plain = https_only
    ca = str(agent.cafile)
    url = f"https://{agent.ip}:{agent.https_port}"
    assert curl(url + "/v1/status/leader", "--cacert", ca).stdout == "200"
    assert curl(f"http://{agent.ip}:{plain.name}/v1/status/leader").stdout == "000"  # not bound
    debug = agent.get("/v1/agent/self")["DebugConfig"]
    assert (debug["HTTPPort"], debug["HTTPSPort"]) == (-1, agent.https_port)
    py = consul.Consul(host=agent.ip, port=agent.https_port, scheme="https", verify=ca)
    assert py.agent.self()["Config"]["NodeName"] == "tlsonly"
    listed = gossamer("members", "--http-addr", url, "--ca-file", ca)
    assert listed.returncode == 0 and "tlsonly" in listed.stdout, listed.stderr
    checked = gossamer("check", "--json", "--http-addr", url, env={"CONSUL_CACERT": ca})
    ports = {r["Name"].split()[0]: r["Status"] for r in json.loads(checked.stdout)["Checks"]
             if " port " in r["Name"]}  # fmt: skip
    assert ports.get("https") == "ok" and "http" not in ports, checked.stdout

    async def proxy_client() -> object:
        return await AgentHttp(url).get_json("/v1/agent/self")

    async def tui_client() -> object:
        api = AgentApi(url, ssl_context=ssl.create_default_context(cafile=ca))
        try:
            return (await api.call("GET", "/v1/agent/self"))[0]
        finally:
            await api.close()

    assert asyncio.run(tui_client())["Config"]["NodeName"] == "tlsonly"  # type: ignore[index]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONSUL_CACERT", ca)
        assert asyncio.run(proxy_client())["Config"]["NodeName"] == "tlsonly"  # type: ignore[index]


def test_the_cli_default_falls_back_to_https_when_plain_http_refuses(
    https_only: tuple[AgentProc, Path],
) -> None:
    agent, plain = https_only
    args = type(
        "Args",
        (),
        {
            "http_addr": None,
            "token": None,
            "token_file": None,
            "ca_file": agent.cafile,
            "client_cert": None,
            "client_key": None,
        },
    )
    client = client_from_args(args, env={})  # type: ignore[arg-type]
    assert client.base_url == "http://127.0.0.1:8500" and client.fallback is not None
    # Point both at this agent's addresses (8500/8501 on 127.0.0.1 may belong to others).
    client.base_url = f"http://{agent.ip}:{plain.name}"
    client.fallback = (f"https://{agent.ip}:{agent.https_port}", client.fallback[1])
    assert client.get("/v1/agent/self")["Config"]["NodeName"] == "tlsonly"
    assert client.base_url.startswith("https://") and client.fallback is None
    named = AgentClient(f"http://{agent.ip}:{plain.name}")  # an address was given: no fallback
    with pytest.raises(AgentUnreachable, match="cannot reach the gossamer agent"):
        named.get("/v1/agent/self")


def test_every_listener_queues_as_many_connections_as_the_kernel_allows(tmp_path: Path) -> None:
    """A burst of connections past a listener's backlog is dropped and retried by TCP a
    second later: HTTP, DNS over TCP and agent RPC listen with BACKLOG (aiohttp and asyncio
    would listen again with 128 and 100), capped by the kernel at net.core.somaxconn."""
    require("ss")
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    c = Cluster(tmp_path)
    agent = c.new_agent("backlog").start()
    try:
        for port in (agent.http_port, agent.dns_port, agent.rpc_port):
            listing = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                                     text=True, check=True).stdout.split()  # fmt: skip
            assert listing[0] == "LISTEN", listing
            assert int(listing[2]) == min(BACKLOG, somaxconn), (port, listing)  # its Send-Q
    finally:
        assert not c.close()
