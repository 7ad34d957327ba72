"""The HTTPS API's certificate from the mesh CA: what it names, that only it may name hosts,
and an agent serving it — verified by curl and py-consul against the mesh root, renewed with
the agent certificate and re-signed under a new root without the listener restarting."""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import consul
import pytest
from cryptography import x509

from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca.agent_server import server_names, sign_agent_server_certificate
from gossamer.proxy.ca.errors import LeafRequestError, NotSpiffeCertificate
from gossamer.proxy.ca.keys import generate_key
from gossamer.proxy.ca.leaf import sign_leaf_csr
from gossamer.proxy.ca.profile import common_name, end_entity_builder, sign
from gossamer.proxy.ca.verify import SERVER_AUTH, verify_chain
from tests.ca_support import DC, NODE_ID, NOW, TD, make_mesh
from tests.harness.binaries import require
from tests.harness.cli import gossamer
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.test_ca_issue import _csr, _uri
from tests.test_https_api import curl


def test_server_names_are_consuls_auto_tls_names_without_wildcards() -> None:
    names = server_names("Web-1", "dc1", "consul.", ["10.0.0.5", "0.0.0.0", "fd00::5"])
    assert names.dns == ("localhost", "server.dc1.consul", "web-1")
    assert names.ips == ("10.0.0.5", "127.0.0.1", "::1", "fd00::5")
    assert server_names("my node", "dc1", "consul", []).dns == ("localhost", "server.dc1.consul")


def test_the_agent_server_certificate_names_hosts_and_verifies_as_the_agent() -> None:
    mesh = make_mesh()
    names = server_names("node-1", DC, "consul", ["10.0.0.5"])
    cert = sign_agent_server_certificate(
        mesh.intermediate, generate_key().public_key(), AgentId(TD, DC, NODE_ID), names, NOW,
        node_name="node-1",
    )  # fmt: skip
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == list(names.dns)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == list(names.ips)
    verified = verify_chain(cert, [mesh.intermediate.certificate], mesh.bundle, NOW,
                            purpose=SERVER_AUTH)  # fmt: skip
    assert verified.identity == AgentId(TD, DC, NODE_ID)


def test_a_service_leaf_may_never_name_a_host() -> None:
    mesh = make_mesh()
    with pytest.raises(LeafRequestError, match="exactly one SubjectAltName"):
        sign_leaf_csr(mesh.intermediate, _csr(_uri(), x509.DNSName("localhost")), DC, "web", NOW)
    forged = sign(
        end_entity_builder(common_name("web"), generate_key().public_key(), _uri().value,
                           hosts=[x509.DNSName("localhost")]),
        mesh.intermediate, NOW, timedelta(hours=24),
    )  # fmt: skip
    with pytest.raises(NotSpiffeCertificate, match="a service certificate may not name hosts"):
        verify_chain(forged, [mesh.intermediate.certificate], mesh.bundle, NOW)


def served_certificate(ip: str, port: int) -> x509.Certificate:
    """The certificate the agent presents now (a fresh handshake, unverified)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((ip, port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@pytest.fixture
def mesh_https(tmp_path: Path) -> Iterator[AgentProc]:
    c = Cluster(tmp_path)
    agent = c.new_agent("meshtls")
    agent.https_port = free_port(agent.ip)
    config = tmp_path / "https.yaml"
    config.write_text(f"https: {{port: {agent.https_port}}}\ntest_leaf_cert_ttl: 10s\n")
    agent.extra += ["--config-file", str(config)]
    try:
        yield agent.start()
    finally:
        assert not c.close()


def test_https_serves_a_mesh_ca_certificate_renewed_and_rotated_in_place(
    mesh_https: AgentProc, tmp_path: Path
) -> None:
    require("curl")
    agent, port = mesh_https, mesh_https.https_port
    assert port is not None
    roots = tmp_path / "roots.pem"

    def first() -> x509.Certificate:
        roots.write_text(agent.get("/v1/connect/ca/roots")["Roots"][0]["RootCert"])
        return served_certificate(agent.ip, port)

    cert = eventually(first, 15, what="a certificate on the HTTPS port")
    url = f"https://{agent.ip}:{port}/v1/status/leader"
    assert curl(url, "--cacert", str(roots)).stdout == "200"
    by_name = f"https://server.dc1.consul:{port}/v1/status/leader"
    resolve = f"server.dc1.consul:{port}:{agent.ip}"
    assert curl(by_name, "--cacert", str(roots), "--resolve", resolve).stdout == "200"
    wrong = curl(f"https://evil.example:{port}/", "--cacert", str(roots),
                 "--resolve", f"evil.example:{port}:{agent.ip}")  # fmt: skip
    assert wrong.returncode != 0  # the name is checked, not only the chain
    py = consul.Consul(host=agent.ip, port=port, scheme="https", verify=str(roots))
    assert py.agent.self()["Config"]["NodeName"] == "meshtls"
    local_copy = agent.data_dir / "identity" / "https-ca.pem"
    assert local_copy.read_text() == roots.read_text()
    pem = gossamer("ca", "roots", "--pem", "--http-addr", f"https://{agent.ip}:{port}",
                   "--ca-file", str(local_copy))  # fmt: skip
    assert pem.returncode == 0 and pem.stdout == roots.read_text(), pem.stderr

    def renewal() -> x509.Certificate:
        now = served_certificate(agent.ip, port)
        assert now.serial_number != cert.serial_number
        return now

    renewed = eventually(renewal, 20, interval=0.3, what="a renewal")
    assert renewed.not_valid_after_utc > cert.not_valid_after_utc

    held = http.client.HTTPSConnection(
        agent.ip, port, timeout=10, context=ssl.create_default_context(cafile=str(roots))
    )
    held.request("GET", "/v1/status/leader")
    assert held.getresponse().read()  # a keep-alive connection opened before the rotation
    config = agent.get("/v1/connect/ca/configuration")
    assert agent.put("/v1/connect/ca/configuration", {**config, "ForceRotate": True}) is True
    active = agent.get("/v1/connect/ca/roots")
    new_root = next(r for r in active["Roots"] if r["ID"] == active["ActiveRootID"])
    (tmp_path / "new-root.pem").write_text(new_root["RootCert"])

    def under_new_root() -> bool:
        return curl(url, "--cacert", str(tmp_path / "new-root.pem")).stdout == "200"

    eventually(under_new_root, 15, interval=0.3, what="the HTTPS chain under the new root")
    held.request("GET", "/v1/status/leader")  # the listener was never restarted: still open
    assert held.getresponse().status == 200
    held.close()
