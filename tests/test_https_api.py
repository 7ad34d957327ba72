"""The HTTP API over TLS (`https:`), with and without client verification, through curl,
py-consul and the CLI. Certificates are made here with openssl (a CA, a server
certificate for the agent's IP, a client certificate)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import consul
import pytest

from tests.harness.binaries import require
from tests.harness.cli import gossamer
from tests.harness.cluster import AgentProc, Cluster, free_port


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(root: Path, ip: str) -> None:
    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        cwd=root,
    )
    for name, ext in (
        ("server", f"subjectAltName=IP:{ip}"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        openssl(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=root,
        )
        (root / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "1", "-out", f"{name}.pem",
                "-extfile", f"{name}.ext", cwd=root)  # fmt: skip


@pytest.fixture
def tls_agent(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[AgentProc, int, Path]]:
    verify = getattr(request, "param", True)
    require("openssl")
    c = Cluster(tmp_path)
    agent = c.new_agent("tls1")
    make_pki(tmp_path, agent.ip)
    port = free_port(agent.ip)
    config = tmp_path / "https.yaml"
    config.write_text(
        f"https:\n  port: {port}\n  cert_file: {tmp_path / 'server.pem'}\n"
        f"  key_file: {tmp_path / 'server.key'}\n  ca_file: {tmp_path / 'ca.pem'}\n"
        f"  verify_incoming: {'true' if verify else 'false'}\n"
    )
    agent.extra += ["--config-file", str(config)]
    try:
        yield agent.start(), port, tmp_path
    finally:
        assert not c.close()


def curl(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *args, url],
                          capture_output=True, text=True, timeout=20)  # fmt: skip


def test_https_with_client_verification(tls_agent: tuple[AgentProc, int, Path]) -> None:
    require("curl")
    agent, port, pki = tls_agent
    url = f"https://{agent.ip}:{port}/v1/status/leader"
    ca, cert, key = str(pki / "ca.pem"), str(pki / "client.pem"), str(pki / "client.key")
    assert curl(url, "--cacert", ca, "--cert", cert, "--key", key).stdout == "200"
    refused = curl(url, "--cacert", ca)  # no client certificate
    assert refused.returncode != 0 and refused.stdout == "000"
    assert curl(url, "--cert", cert, "--key", key).returncode != 0  # server not trusted
    assert curl(f"http://{agent.ip}:{agent.http_port}/v1/status/leader").stdout == "200"
    client = consul.Consul(host=agent.ip, port=port, scheme="https", verify=ca, cert=(cert, key))
    assert client.agent.self()["Config"]["NodeName"] == "tls1"
    env = {"CONSUL_HTTP_SSL": "true", "CONSUL_CACERT": ca}
    listed = gossamer("members", "--http-addr", f"{agent.ip}:{port}",
                      "--client-cert", cert, "--client-key", key, env=env)  # fmt: skip
    assert listed.returncode == 0 and "tls1" in listed.stdout, listed.stderr
    bad = gossamer("members", "--http-addr", f"https://{agent.ip}:{port}", "--ca-file", "/nope")
    assert bad.returncode == 2 and "/nope" in bad.stderr


@pytest.mark.parametrize("tls_agent", [False], indirect=True)
def test_https_without_client_verification(tls_agent: tuple[AgentProc, int, Path]) -> None:
    require("curl")
    agent, port, pki = tls_agent
    url = f"https://{agent.ip}:{port}/v1/status/leader"
    assert curl(url, "--cacert", str(pki / "ca.pem")).stdout == "200"
    client = consul.Consul(host=agent.ip, port=port, scheme="https", verify=str(pki / "ca.pem"))
    assert client.status.leader()
