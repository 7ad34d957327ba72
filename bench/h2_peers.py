"""The HTTP/2 side of bench/h2_pair.py: nginx speaking h2c, and HAProxy and Envoy pairs that
carry HTTP/2 end to end and decide each request.

The same leaves and roots as bench/pair_peers.py's pairs (TLS 1.3, client
certificates required), one worker each. Both peers parse HTTP/2 on both
hops (h2c from the client, h2 with ALPN between the pair, h2c to nginx) and
decide each request on the server side, as gossamer's gate does: HAProxy
with an `http-request deny` on the path, Envoy with its RBAC filter allowing
the web service's SPIFFE ID on a path prefix.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bench.pair_peers import LOCAL, STARTED, envoy_pair, haproxy_pair, pinned, tls_socket
from tests.harness.cluster import free_port
from tests.harness.poll import eventually


def h2_status(port: int, path: str = "/small") -> str:
    """The status of a GET of `path` through `port` over h2c (curl)."""
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
            "--http2-prior-knowledge", f"http://{LOCAL}:{port}{path}"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()


def h2_ok(port: int) -> bool:
    return h2_status(port) == "200"


def start_h2_nginx(tmp: Path, cpu: str) -> tuple[subprocess.Popen[bytes], int]:
    """nginx serving /small (100 bytes) over h2c (prior knowledge)."""
    www = tmp / "www"
    www.mkdir(exist_ok=True)
    (www / "small").write_bytes(b"x" * 100)
    port = free_port(LOCAL)
    (tmp / "nginx-h2.conf").write_text(f"""
daemon off; master_process off; worker_processes 1; pid {tmp}/nginx-h2.pid;
error_log {tmp}/nginx-h2.err;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  http2_max_requests 10000000; http2_max_concurrent_streams 256;
  client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/pt; fastcgi_temp_path {tmp}/ft;
  uwsgi_temp_path {tmp}/ut; scgi_temp_path {tmp}/st;
  server {{ listen {LOCAL}:{port} http2; root {www}; }}
}}
""")
    proc = pinned(cpu, ["nginx", "-c", str(tmp / "nginx-h2.conf")], tmp / "nginx-h2.log")
    STARTED.append(proc)
    eventually(lambda: h2_ok(port), 10, what="nginx over h2c")
    return proc, port


def start_h2_haproxy(tmp: Path, cpu: str, nginx_port: int) -> tuple[list[int], int]:
    """An HAProxy pair in `mode http` speaking HTTP/2 on every hop, `/admin` denied at db's."""
    a_port, b_port = free_port(LOCAL), free_port(LOCAL)
    tls = f"ca-file {tmp}/roots.pem verify required ssl-min-ver TLSv1.3 alpn h2"
    configs = {
        "b": f"""frontend in
  bind {LOCAL}:{b_port} ssl crt {tmp}/db.pem {tls}
  http-request deny if {{ path_beg /admin }}
  default_backend app
backend app
  server nginx {LOCAL}:{nginx_port} proto h2
""",
        "a": f"""frontend in
  bind {LOCAL}:{a_port} proto h2
  default_backend mesh
backend mesh
  server b {LOCAL}:{b_port} ssl crt {tmp}/web.pem {tls}
""",
    }
    pids = haproxy_pair(tmp, cpu, configs, "http", "haproxy-h2")
    eventually(lambda: h2_ok(a_port), 20, what="a request through the HAProxy h2 pair")
    return pids, a_port


def _h2_cluster(port: int, tls: object) -> dict[str, object]:
    endpoint = {"endpoint": {"address": {"socket_address": {"address": LOCAL,
                                                             "port_value": port}}}}  # fmt: skip
    options = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    cluster: dict[str, object] = {
        "name": "next", "type": "STATIC", "connect_timeout": "10s",
        "load_assignment": {"cluster_name": "next", "endpoints": [{"lb_endpoints": [endpoint]}]},
        "typed_extension_protocol_options": {options: {
            "@type": f"type.googleapis.com/{options}",
            "explicit_http_config": {"http2_protocol_options": {}}}},
    }  # fmt: skip
    if tls:
        cluster["transport_socket"] = tls
    return cluster


def _h2_listener(port: int, tls: object, source_uri: str | None) -> dict[str, object]:
    route = {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "next"}}]}]}  # fmt: skip
    filters: list[object] = []
    if source_uri:  # the server side: RBAC, the web service on any path but /admin
        path = {"url_path": {"path": {"prefix": "/admin"}}}
        web = {"authenticated": {"principal_name": {"exact": source_uri}}}
        policy = {"permissions": [{"and_rules": {"rules": [
            {"url_path": {"path": {"prefix": "/"}}}, {"not_rule": path}]}}],
            "principals": [web]}  # fmt: skip
        rbac = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
        filters.append({"name": "envoy.filters.http.rbac", "typed_config": {
            "@type": rbac, "rules": {"action": "ALLOW", "policies": {"web": policy}}}})  # fmt: skip
    router = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    filters.append({"name": "envoy.filters.http.router", "typed_config": {"@type": router}})
    prefix = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    hcm = {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": prefix + "HttpConnectionManager", "stat_prefix": "pair", "codec_type": "AUTO",
        "route_config": route, "http_filters": filters}}  # fmt: skip
    chain: dict[str, object] = {"filters": [hcm]}
    if tls:
        chain["transport_socket"] = tls
    return {"name": "in", "address": {"socket_address": {"address": LOCAL, "port_value": port}},
            "filter_chains": [chain]}  # fmt: skip


def _alpn_h2(socket: dict[str, object]) -> dict[str, object]:
    config = socket["typed_config"]
    assert isinstance(config, dict)
    config["common_tls_context"]["alpn_protocols"] = ["h2"]
    return socket


def start_h2_envoy(
    tmp: Path, cpu: str, nginx_port: int, trust_domain: str
) -> tuple[list[int], int]:
    """An Envoy pair (`--concurrency 1`) speaking HTTP/2 on every hop, RBAC at db's."""
    a_port, b_port = free_port(LOCAL), free_port(LOCAL)
    base = f"spiffe://{trust_domain}/ns/default/dc/dc1/svc"
    server = _alpn_h2(tls_socket(tmp, "db", "server", None))
    client = _alpn_h2(tls_socket(tmp, "web", "client", f"{base}/db"))
    configs = {
        "b": (_h2_listener(b_port, server, f"{base}/web"), _h2_cluster(nginx_port, None)),
        "a": (_h2_listener(a_port, None, None), _h2_cluster(b_port, client)),
    }
    bodies = {name: json.dumps({"static_resources": {"listeners": [listener],
                                                      "clusters": [cluster]}})
              for name, (listener, cluster) in configs.items()}  # fmt: skip
    pids = envoy_pair(tmp, cpu, bodies, "envoy-h2")
    eventually(lambda: h2_ok(a_port), 30, what="a request through the Envoy h2 pair")
    return pids, a_port
