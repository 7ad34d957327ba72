"""What deciding each HTTP/2 request costs the inbound sidecar: the h2c gate against a full
HTTP/2 stack, in process, on the same bytes.

Printed, not asserted. A gRPC-like client (python-hyper's `h2`, as grpcio
would send them: nine request headers, a 5-byte-framed message, trailers
from the app) makes `--requests` unary calls on one connection; their bytes
are cut as they would arrive (one read per call each way) and timed through:

- `gate`: `H2Gate` (proxy/h2_gate.py), what the sidecar runs: the client's
  bytes in (frames cut, the header block read with HPACK, the request
  decided by the real intentions core with an L7 permission, the caller's
  X-Forwarded-Client-Cert added), the app's answer out (frames cut);
- `gate without XFCC`: the same with no caller's certificate to name;
- `gate after a deny`: the same once one call was denied, so every later
  header block is encoded again for the app;
- `followed`: `H2Follower` (proxy/h2_follow.py), what the calling side's
  sidecar runs on an `http2`/`grpc` upstream to count each call: the
  client's frames cut, the answers' header blocks read, nothing decided;
- `h2 server` (the reference, ../shared/reference/proxy-levers.md's ~385 µs
  a request): python-hyper's `H2Connection` reading the same calls and
  sending the same answers, the least a full HTTP/2 stack does per request
  on one side of a proxy (a terminating proxy runs two).

µs of CPU per call (`process_time`, the best of `--repeats` batches). The gate
runs compiled when scripts/build_native.py has built it (proxy/native.py),
as the proxy process runs it; `GOSSAMER_NATIVE=0` runs it as Python.

    .venv/bin/python bench/h2_gate.py [--requests 5000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gossamer.proxy import native  # noqa: E402

STATE = native.use()

from gossamer.intentions.codec import intention_from_json  # noqa: E402
from gossamer.intentions.decide import IntentionSet, decide  # noqa: E402
from gossamer.intentions.model import Decision, HttpRequest  # noqa: E402
from gossamer.proxy.h2_follow import H2Follower  # noqa: E402
from gossamer.proxy.h2_gate import H2Gate  # noqa: E402
from gossamer.proxy.http_limits import Limits  # noqa: E402
from gossamer.proxy.protocol import CLIENT_IDLE_S, REQUEST_IDLE_S, REQUEST_TIMEOUT_S  # noqa: E402

# The calls' timeouts as a sidecar keeps them by default (h2_deadlines.py): every call stamped.
LIMITS = Limits(REQUEST_TIMEOUT_S, REQUEST_IDLE_S, CLIENT_IDLE_S)

HEADERS = [(":method", "POST"), (":scheme", "http"), (":path", "/echo.Echo/Unary"),
           (":authority", "127.0.0.1:50051"), ("te", "trailers"),
           ("content-type", "application/grpc"), ("user-agent", "grpc-python/1.60.0 grpc-c/37.0.0"),
           ("grpc-accept-encoding", "identity,deflate,gzip"), ("grpc-timeout", "5S")]  # fmt: skip
MESSAGE = b"\0\0\0\0\x04ping"
INTENTIONS = IntentionSet([intention_from_json({
    "SourceName": "web", "DestinationName": "rpc", "Precedence": 9,
    "Permissions": [{"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
                    {"Action": "allow", "HTTP": {"PathPrefix": "/echo.Echo/"}}],
})])  # fmt: skip


def conversation(calls: int, deny_first: bool) -> tuple[bytes, list[bytes], list[bytes]]:
    """(preface and settings, each call's request bytes, each call's answer bytes).

    The server gets the client's bytes as the gate passes them on (a gate records them), so
    its answers are what an app behind the gate sends: after a deny it never saw the denied
    call, and the gate's reader of its header blocks stays in step with its encoder. (Until
    5b43139 the server answered the denied call too, the gate's reader could not decode the
    answers that followed, and `gate after a deny` timed the app's blocks unread.)
    """
    client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    server = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
    gate = H2Gate(decide_web, xfcc=XFCC)
    client.initiate_connection()
    server.initiate_connection()
    start = client.data_to_send()

    def to_server(data: bytes) -> list[Any]:
        to_app, to_client = gate.from_client(data)
        for piece in to_client:  # the gate's own answers (the denied call's)
            client.receive_data(piece)
        return [event for piece in to_app for event in server.receive_data(piece)]

    to_server(start)
    for piece in gate.from_app(server.data_to_send()):
        client.receive_data(piece)
    requests, answers, owed = [], [], b""
    for n in range(calls + (1 if deny_first else 0)):
        stream = client.get_next_available_stream_id()
        path = "/admin/Wipe" if deny_first and n == 0 else "/echo.Echo/Unary"
        client.send_headers(stream, [*HEADERS[:2], (":path", path), *HEADERS[3:]])
        client.send_data(stream, MESSAGE, end_stream=True)
        request = owed + client.data_to_send()  # with the WINDOW_UPDATE the last answer earned
        events = to_server(request)
        _acknowledge(server, events)
        if any(isinstance(event, RequestReceived) for event in events):
            server.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc")])
            server.send_data(stream, b"\0\0\0\0\x0bunary:ping!")
            server.send_headers(stream, [("grpc-status", "0")], end_stream=True)
        answer = server.data_to_send()
        for piece in gate.from_app(answer):
            _acknowledge(client, client.receive_data(piece))
        owed = client.data_to_send()
        requests.append(request)
        answers.append(answer)
    if deny_first:  # the denied call goes with the start: the runs time the calls after it
        return start + requests[0], requests[1:], [answers[0] + answers[1], *answers[2:]]
    return start, requests, answers


def _acknowledge(end: H2Connection, events: list[Any]) -> None:
    """Give back the flow-control window of the DATA just read, as grpcio does."""
    for event in events:
        if isinstance(event, DataReceived):
            end.acknowledge_received_data(event.flow_controlled_length, event.stream_id)


XFCC = (
    b"By=spiffe://5d3c1a2b-0c4e-4f5a-9b6d-7e8f9a0b1c2d.consul/ns/default/dc/dc1/svc/rpc;"
    b"Hash=" + b"0123456789abcdef" * 4 + b";"
    b"URI=spiffe://5d3c1a2b-0c4e-4f5a-9b6d-7e8f9a0b1c2d.consul/ns/default/dc/dc1/svc/web"
)


def decide_web(request: HttpRequest) -> Decision:
    return decide(INTENTIONS, "web", "rpc", request=request, default_allow=False)


def gate_run(start: bytes, requests: list[bytes], answers: list[bytes],
             xfcc: bytes = XFCC) -> float:  # fmt: skip
    gate = H2Gate(decide_web, xfcc=xfcc, limits=LIMITS)
    gate.from_client(start)
    began = time.process_time()
    for request, answer in zip(requests, answers, strict=True):
        gate.from_client(request)
        gate.from_app(answer)
    took = time.process_time() - began
    if gate.app.reader is None:  # what 5b43139 and earlier timed after a deny
        raise SystemExit("the gate could not read the app's header blocks: not the path timed")
    return took


def followed_run(start: bytes, requests: list[bytes], answers: list[bytes]) -> float:
    follower = H2Follower(lambda status, route, seconds: None, LIMITS, grpc=True)
    follower.from_client(start, 0.0)
    began = time.process_time()
    for request, answer in zip(requests, answers, strict=True):
        follower.from_client(request, 0.0)
        follower.from_app(answer, 0.0)
    return time.process_time() - began


def h2_run(start: bytes, requests: list[bytes], answers: list[bytes]) -> float:
    server = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
    server.initiate_connection()
    server.receive_data(start)
    server.data_to_send()
    began = time.process_time()
    for request in requests:
        events = server.receive_data(request)
        _acknowledge(server, events)
        for event in events:
            stream = getattr(event, "stream_id", 0)
            if isinstance(event, RequestReceived):
                server.send_headers(stream, [(":status", "200"),
                                             ("content-type", "application/grpc")])  # fmt: skip
            elif isinstance(event, StreamEnded):
                server.send_data(stream, b"\0\0\0\0\x0bunary:ping!")
                server.send_headers(stream, [("grpc-status", "0")], end_stream=True)
        server.data_to_send()
    return time.process_time() - began


def best(run: Callable[[bytes, list[bytes], list[bytes]], float],
         talk: tuple[bytes, list[bytes], list[bytes]], repeats: int) -> float:  # fmt: skip
    return min(run(*talk) for _ in range(repeats)) / len(talk[1]) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"h2c gate per unary gRPC call ({args.requests} calls on one connection, best of "
          f"{args.repeats}); the gate {'compiled' if STATE == 'fresh' else 'in Python'} "
          f"({STATE})")  # fmt: skip
    plain = conversation(args.requests, deny_first=False)
    denied = conversation(args.requests, deny_first=True)
    gate, after, h2 = (best(gate_run, plain, args.repeats), best(gate_run, denied, args.repeats),
                       best(h2_run, plain, args.repeats))  # fmt: skip
    followed = best(followed_run, plain, args.repeats)
    bare = best(functools.partial(gate_run, xfcc=b""), plain, args.repeats)
    print(f"  gate                 {gate:7.1f} µs")
    print(f"  gate without XFCC    {bare:7.1f} µs")
    print(f"  gate after a deny    {after:7.1f} µs  (each header block written again as literals)")
    print(f"  followed             {followed:7.1f} µs  (nothing decided: the outbound side)")
    print(f"  h2 server            {h2:7.1f} µs  (reference; the gate is {h2 / gate:.1f}x cheaper)")


if __name__ == "__main__":
    main()
