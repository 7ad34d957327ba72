"""`gossamer k8s register|deregister` against a real agent, as the injected containers run them.

The environment is what the injector's downward-API env gives a pod
(POD_NAME, POD_NAMESPACE, POD_IP, GOSSAMER_HTTP_ADDR); the agent is real.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Iterator

import pytest

from gossamer.proxy.config_registration import config_from_registration
from tests.harness.cli import gossamer, one_error_line
from tests.harness.cluster import AgentProc, Cluster


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProc]:
    """One node's agent shared by the module (each test uses its own pod)."""
    cluster = Cluster(tmp_path_factory.mktemp("k8s-node"))
    try:
        yield cluster.new_agent("k8s-node").start()
    finally:
        leftovers = cluster.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def pod_env(agent: AgentProc) -> dict[str, str]:
    return {"POD_NAME": "web-5f7c", "POD_NAMESPACE": "shop", "POD_IP": agent.ip,
            "GOSSAMER_HTTP_ADDR": f"{agent.ip}:{agent.http_port}"}  # fmt: skip


def test_register_then_deregister_the_pod_and_its_sidecar(agent: AgentProc) -> None:
    env = pod_env(agent)
    done = gossamer("k8s", "register", "--service", "web", "--port", "8080",
                    "--upstreams", "db:5432,cache:6379", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    services = agent.get("/v1/agent/services")
    assert set(services) >= {"web-5f7c-shop-web", "web-5f7c-shop-web-sidecar-proxy"}
    web = services["web-5f7c-shop-web"]
    assert (web["Service"], web["Address"], web["Port"]) == ("web", agent.ip, 8080)
    assert web["Meta"] == {"k8s-pod": "web-5f7c", "k8s-namespace": "shop"}
    # what `gossamer connect proxy --sidecar-for web-5f7c-shop-web` will serve
    body = agent.get("/v1/agent/service/web-5f7c-shop-web-sidecar-proxy")
    proxy = config_from_registration(body, "web-5f7c-shop-web-sidecar-proxy")
    assert (proxy.service, proxy.bind_address, proxy.bind_port) == ("web", agent.ip, 21000)
    assert (proxy.local_address, proxy.local_port) == ("127.0.0.1", 8080)
    assert [(u.name, u.bind_port) for u in proxy.upstreams] == [("db", 5432), ("cache", 6379)]
    checks = agent.get("/v1/agent/checks")
    assert any(c["ServiceID"] == "web-5f7c-shop-web" and c["Name"] == "Kubernetes pod sidecar"
               for c in checks.values())  # fmt: skip

    gone = gossamer("k8s", "deregister", "--service", "web", env=env)
    assert gone.returncode == 0 and "Deregistered service: web-5f7c-shop-web" in gone.stdout
    assert not [s for s in agent.get("/v1/agent/services") if s.startswith("web-5f7c")]
    with pytest.raises(urllib.error.HTTPError):
        agent.get("/v1/agent/service/web-5f7c-shop-web-sidecar-proxy")
    again = gossamer("k8s", "deregister", "--service", "web", env=env)  # a repeated preStop
    assert again.returncode == 0 and "was not registered" in again.stdout


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--upstreams", "db"], "--upstreams: gossamer.io/connect-service-upstreams: 'db': "
                                "expected NAME:PORT"),
        (["--sidecar-port", "0"], "--sidecar-port: must be 1-65535, got 0"),
    ],
)  # fmt: skip
def test_bad_flags_exit_2_naming_them(agent: AgentProc, args: list[str], error: str) -> None:
    result = gossamer("k8s", "register", "--service", "web", "--port", "8080", *args,
                      env=pod_env(agent))  # fmt: skip
    assert one_error_line(result, 2) == f"gossamer k8s: error: {error}"
    assert not [s for s in agent.get("/v1/agent/services") if s.startswith("web-5f7c")]


def test_without_pod_identity_is_a_usage_error() -> None:
    result = gossamer("k8s", "deregister", "--service", "web", env={"POD_NAME": ""})
    assert "--pod and --namespace" in one_error_line(result, 2)
