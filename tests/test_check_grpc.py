"""gRPC health checks against a real gRPC server (grpcio with the standard health service).

The probe speaks HTTP/2 itself (h2); the server here is Google's grpcio, so
the two only agree if the probe follows the protocol. Then a check with
`GRPC` registered on a real agent follows the server's status, as Nomad's
`check { type = "grpc" }` registration would.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gossamer.agent.checks.grpc_probe import probe_grpc, request_frame, serving_status
from gossamer.catalog.check_definition import GrpcTarget
from tests.harness.cluster import Cluster
from tests.harness.http_app import self_signed_tls
from tests.harness.poll import eventually

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Server:
    def __init__(self, tls_dir: Path | None = None) -> None:
        self.health = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if tls_dir is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            key, cert = (tls_dir / "key.pem").read_bytes(), (tls_dir / "cert.pem").read_bytes()
            creds = grpc.ssl_server_credentials([(key, cert)])
            self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.health.set("", SERVING)
        self.health.set("api", SERVING)
        self.health.set("db", NOT_SERVING)
        self.server.start()

    def target(self, service: str = "", **tls: bool | str) -> GrpcTarget:
        return GrpcTarget(f"127.0.0.1:{self.port}", service, **tls)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.server.stop(0)


def test_the_messages_round_trip_as_protobuf_reads_them() -> None:
    request = health_pb2.HealthCheckRequest()
    request.ParseFromString(request_frame("api")[5:])
    assert request.service == "api" and request_frame("") == b"\x00\x00\x00\x00\x00"
    for status in (0, 1, 2, 3):
        message = health_pb2.HealthCheckResponse(status=status).SerializeToString()  # type: ignore[arg-type]
        assert serving_status(b"\x00" + len(message).to_bytes(4, "big") + message) == status


async def test_serving_passes_and_anything_else_is_critical(server: Server) -> None:
    assert (await probe_grpc(server.target())).status == "passing"
    ok = await probe_grpc(server.target("api"))
    assert (ok.status, ok.output) == ("passing", f"gRPC check 127.0.0.1:{server.port}/api: success")
    down = await probe_grpc(server.target("db"))
    assert down.status == "critical" and down.output.endswith("failed with status NOT_SERVING")
    unknown = await probe_grpc(server.target("nope"))  # the health service answers NOT_FOUND
    assert unknown.status == "critical" and "grpc-status 5" in unknown.output


async def test_a_dead_or_silent_target_is_critical_with_why() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        refused = await probe_grpc(GrpcTarget(f"127.0.0.1:{port}"))
        s.listen()  # accepts, never answers
        silent = await probe_grpc(GrpcTarget(f"127.0.0.1:{port}"), timeout_s=0.3)
    assert refused.status == "critical" and "failed" in refused.output
    assert silent.status == "critical" and "timed out after" in silent.output


async def test_tls_with_skip_verify_and_verification_failing_without(tmp_path: Path) -> None:
    self_signed_tls(tmp_path, host="grpc.test")
    tls = Server(tmp_path)
    try:
        ok = await probe_grpc(tls.target("api", use_tls=True, tls_skip_verify=True))
        assert ok.status == "passing", ok.output
        bad = await probe_grpc(tls.target("api", use_tls=True, tls_server_name="grpc.test"))
        assert bad.status == "critical" and "CERTIFICATE_VERIFY_FAILED" in bad.output
    finally:
        tls.server.stop(0)


def test_a_registered_grpc_check_follows_the_server(cluster: Cluster, server: Server) -> None:
    [agent] = cluster.start(1)
    agent.put("/v1/agent/service/register", {"Name": "api", "ID": "api", "Port": server.port,
              "Checks": [{"CheckID": "api-grpc", "Name": "api grpc", "Interval": "1s",
                          "GRPC": f"127.0.0.1:{server.port}/api"}]})  # fmt: skip

    def status() -> str:
        return str(agent.get("/v1/agent/checks")["api-grpc"]["Status"])

    eventually(lambda: status() == "passing", 15, what="the gRPC check passing")
    assert agent.get("/v1/agent/checks")["api-grpc"]["Type"] == "grpc"
    server.health.set("api", NOT_SERVING)
    eventually(lambda: status() == "critical", 15, what="the gRPC check critical")
