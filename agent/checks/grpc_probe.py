"""gRPC health checks: one `grpc.health.v1.Health/Check` call over HTTP/2, as Consul's.

Consul's gRPC check (agent/checks/grpc.go) calls the standard health
service with the part of `GRPC` after the first "/" as the service name
("" for the server as a whole) and is passing only when the answer is
SERVING. Here the call is made with python-hyper's h2 (a sans-IO HTTP/2
state machine: bytes in, events out) over one asyncio connection per run,
plain or TLS (ALPN "h2") as `GRPCUseTLS` says. The probe never raises for
a failing target: refused, reset, timed out, a non-zero `grpc-status` or a
status other than SERVING are critical results whose output says which.

The two messages are tiny protobufs, written and read by hand: the request
`HealthCheckRequest{string service = 1}` and the answer
`HealthCheckResponse{ServingStatus status = 1}`, each in gRPC's 5-byte
length-prefixed frame.
"""

from __future__ import annotations

import asyncio
import ssl

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from gossamer.agent.checks.status import ProbeResult
from gossamer.catalog.check_definition import GrpcTarget
from gossamer.catalog.durations import format_seconds
from gossamer.gossip.addresses import split_host_port

PATH = "/grpc.health.v1.Health/Check"
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


class GrpcError(Exception):
    """The call failed: closed, reset, or answered with a non-zero grpc-status."""


def request_frame(service: str) -> bytes:
    """HealthCheckRequest{service} in a gRPC frame (uncompressed)."""
    name = service.encode()
    message = b"\x0a" + _varint(len(name)) + name if name else b""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def serving_status(body: bytes) -> int:
    """The status field of the HealthCheckResponse in a gRPC frame (0 when absent)."""
    if len(body) < 5 or body[0] != 0:
        raise GrpcError(f"not an uncompressed gRPC message ({len(body)} bytes)")
    message, status, i = body[5 : 5 + int.from_bytes(body[1:5], "big")], 0, 0
    while i < len(message):
        key, i = _read_varint(message, i)
        if key & 7 == 0:  # varint field
            value, i = _read_varint(message, i)
            if key >> 3 == 1:
                status = value
        elif key & 7 == 2:  # length-delimited: skip
            size, i = _read_varint(message, i)
            i += size
        else:
            raise GrpcError(f"unexpected protobuf wire type {key & 7}")
    return status


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while i < len(data):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i
    raise GrpcError("truncated protobuf varint")


def _tls(target: GrpcTarget) -> ssl.SSLContext | None:
    if not target.use_tls:
        return None
    ctx = ssl.create_default_context()
    if target.tls_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    return ctx


async def call_health(target: GrpcTarget) -> int:
    """One Health/Check call; the ServingStatus answered. GrpcError/OSError on failure."""
    host, port = split_host_port(target.address)
    ctx = _tls(target)
    server_name = (target.tls_server_name or host) if ctx else None
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=server_name)
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [
            (":method", "POST"), (":scheme", "https" if ctx else "http"), (":path", PATH),
            (":authority", target.address), ("content-type", "application/grpc"),
            ("te", "trailers"), ("user-agent", "Consul Health Check"),
        ])  # fmt: skip
        conn.send_data(stream, request_frame(target.service), end_stream=True)
        writer.write(conn.data_to_send())
        body, headers = await _answer(conn, stream, reader, writer)
    finally:
        # abort, not close: a TLS close waits for the server's close_notify, which a
        # gRPC server that has answered need not send soon
        writer.transport.abort()
    code = headers.get("grpc-status", "")
    if code != "0":
        message = headers.get("grpc-message", "")
        raise GrpcError(f"grpc-status {code or '(none)'}" + (f": {message}" if message else ""))
    return serving_status(body)


async def _answer(
    conn: h2.connection.H2Connection,
    stream: int,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> tuple[bytes, dict[str, str]]:
    """Feed the server's bytes to h2 until our stream ends: its body and headers+trailers."""
    body = b""
    headers: dict[str, str] = {}
    while True:
        await writer.drain()
        data = await reader.read(65536)
        if not data:
            raise GrpcError("connection closed before the answer")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                headers.update((_text(k), _text(v)) for k, v in event.headers or ())
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                body += event.data or b""
                conn.acknowledge_received_data(event.flow_controlled_length or 0, stream)
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                raise GrpcError(f"stream reset (error code {event.error_code})")
            elif isinstance(event, h2.events.ConnectionTerminated):
                raise GrpcError(f"connection terminated (error code {event.error_code})")
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                return body, headers
        writer.write(conn.data_to_send())


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


async def probe_grpc(target: GrpcTarget, *, timeout_s: float = 10.0) -> ProbeResult:
    """Passing when the health service answers SERVING within the timeout."""
    where = f"gRPC check {target.target}"
    try:
        async with asyncio.timeout(timeout_s):
            status = await call_health(target)
    except TimeoutError:
        return ProbeResult("critical", f"{where}: timed out after {format_seconds(timeout_s)}")
    except (GrpcError, OSError, ValueError, ssl.SSLError, h2.exceptions.H2Error) as exc:
        return ProbeResult("critical", f"{where}: failed: {exc or type(exc).__name__}")
    if status == 1:
        return ProbeResult("passing", f"{where}: success")
    name = STATUS_NAMES.get(status, str(status))
    return ProbeResult("critical", f"{where}: failed with status {name}")
