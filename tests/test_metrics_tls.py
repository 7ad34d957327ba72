"""A sidecar's metrics listener on a host's network address: mTLS for anyone not on the host.

One host (a network namespace on a bridge, `-m netns`) runs an agent and
db's sidecar with its metrics on `0.0.0.0:9102`. The test process and a
real Prometheus sit in the root namespace, so to the sidecar they are
peers from elsewhere: plain HTTP, no client certificate, or one from
another cluster's CA (tests/proxy_pki.py) get no figures; a leaf the agent issued
(for a `prometheus` service registered there) does, and Prometheus scrapes
with it (`tls_config`). On the host itself the listener still answers plain
HTTP, so the agent gathers the figures for `gossamer stat` as before.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.binaries import cannot_run
from tests.harness.cluster import AgentProc
from tests.harness.netns import Hosts, cleanup_leftovers, netns_available
from tests.harness.poll import eventually
from tests.harness.prometheus import query
from tests.harness.prometheus import start as start_prometheus
from tests.proxy_pki import CLUSTER_B, Pki
from tests.proxy_support import read_all
from tests.test_proxy_netns import sidecar

pytestmark = [pytest.mark.netns]

METRICS_PORT, SIDECAR_PORT = 9102, 21000


@dataclass
class Host:
    hosts: Hosts
    agent: AgentProc
    metrics: tuple[str, int]  # the sidecar's metrics listener, by the host's address
    leaf: tuple[Path, Path]  # a leaf the agent issued (for `prometheus`): certificate, key
    roots: Path
    tmp: Path


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    ok, why = netns_available()
    if not ok:
        cannot_run(why)
    cleanup_leftovers()
    tmp = tmp_path_factory.mktemp("metrics-tls")
    hosts = Hosts(1, root=tmp)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        agent = hosts.agent(1).start()
        eventually(agent.enrolled, 30, what="the agent's certificate")
        agent.put("/v1/agent/service/register", {
            "Name": "db", "ID": "db", "Port": 8080,
            "Connect": {"SidecarService": {"Port": SIDECAR_PORT, "Proxy": {"Config": {
                "gossamer_metrics_bind_addr": f"0.0.0.0:{METRICS_PORT}"}}}},
        })  # fmt: skip
        agent.put("/v1/agent/service/register", {"Name": "prometheus", "Port": 9090})
        leaf = agent.get("/v1/agent/connect/ca/leaf/prometheus")
        cert, key, roots = tmp / "prom.crt", tmp / "prom.key", tmp / "roots.pem"
        cert.write_text(leaf["CertPEM"])
        key.write_text(leaf["PrivateKeyPEM"])
        roots.write_text("".join(r["RootCert"] for r in agent.get("/v1/agent/connect/ca/roots")
                                 ["Roots"]))  # fmt: skip
        proxy = sidecar(hosts, 1, agent, "db", tmp, "proxy.log")
        assert proxy.proc is not None
        procs.append(proxy.proc)
        eventually(lambda: "metrics on" in proxy.log(), 30, what="the metrics listener")
        yield Host(hosts, agent, (hosts.host(1).ip, METRICS_PORT), (cert, key), roots, tmp)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(20)
        leftovers = hosts.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def _client(roots: Path, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(roots))
    context.check_hostname = False  # the sidecar's leaf names a SPIFFE ID, not a host
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


def _scrape(host: Host, context: ssl.SSLContext | None) -> bytes:
    """What a GET /metrics gets back (b"" when the connection ended without an answer)."""
    with socket.create_connection(host.metrics, timeout=10) as raw:
        sock = raw if context is None else context.wrap_socket(raw)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: db\r\n\r\n")
        try:
            return read_all(sock)
        except (ssl.SSLError, ConnectionResetError):
            return b""


def test_a_peer_with_a_leaf_of_this_mesh_gets_the_figures(host: Host) -> None:
    answer = _scrape(host, _client(host.roots, host.leaf))
    assert answer.startswith(b"HTTP/1.1 200 ") and b"gossamer_proxy_" in answer


def test_plain_http_from_elsewhere_gets_nothing(host: Host) -> None:
    assert _scrape(host, None) == b""


def test_no_certificate_or_another_cas_gets_nothing(host: Host) -> None:
    rogue = Pki(CLUSTER_B).leaf_json("prometheus")  # another cluster's CA, same shape of leaf
    pem = host.tmp / "rogue.pem"
    pem.write_text(rogue["CertPEM"] + rogue["PrivateKeyPEM"])
    for context in (_client(host.roots, None), _client(host.roots, (pem, pem))):
        try:
            answer = _scrape(host, context)
        except (ssl.SSLError, ConnectionResetError):
            answer = b""  # refused during the handshake (TLS 1.3: maybe only on the read)
        assert answer == b""
    assert "metrics listener refused" in (host.tmp / "proxy.log").read_text()


def test_on_the_host_itself_plain_http_still_serves(host: Host) -> None:
    fetch = (
        "import urllib.request; print(urllib.request.urlopen("
        f"'http://127.0.0.1:{METRICS_PORT}/metrics', timeout=10).read().decode())"
    )
    local = host.hosts.run(1, sys.executable, "-c", fetch)
    assert local.returncode == 0 and "gossamer_proxy_" in local.stdout, local.stderr
    (db,) = host.agent.get("/v1/agent/metrics/proxies?service=db")  # the agent dials loopback
    assert "Stats" in db, db


def test_prometheus_scrapes_with_a_leaf_the_agent_issued(host: Host) -> None:
    cert, key = host.leaf
    job = {"job_name": "db-sidecar", "scheme": "https",
           "static_configs": [{"targets": [f"{host.metrics[0]}:{host.metrics[1]}"]}],
           "tls_config": {"ca_file": str(host.roots), "cert_file": str(cert),
                          "key_file": str(key), "insecure_skip_verify": True}}  # fmt: skip
    prom, base = start_prometheus(host.tmp, [job])
    try:
        eventually(lambda: [r["value"][1] for r in query(base, 'up{job="db-sidecar"}')] == ["1"],
                   30, what="Prometheus scraping db's sidecar over mTLS")  # fmt: skip
    finally:
        prom.terminate()
        prom.wait(20)
