"""A client sidecar (a valid leaf of this mesh) that abuses the mux on the inbound port.

In process, a real inbound listener and a real TLS client speaking the mux's
ALPN from a thread, writing raw frames: what the inbound side holds for it
must stay bounded, and the wire is closed when it cannot be.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
from gossamer.proxy import tally
from gossamer.proxy.config import ProxyConfig, Timeouts
from gossamer.proxy.inbound import Inbound, Policy
from gossamer.proxy.mux_frames import CUT, OPEN, control, reset
from gossamer.proxy.mux_pool import MAX_STREAMS
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async
from tests.proxy_pki import Pki


@dataclass
class Served:
    inbound: Inbound
    tunnel: ssl.SSLContext  # web's client context, offering the mux


async def _served(action: str, app_port: int) -> Served:
    pki = Pki()
    identity = pki.identity("db")
    policy = Policy()
    policy.intentions, policy.known = IntentionSet([Intention("web", "db", action=action)]), True
    config = ProxyConfig(service="db", bind_address="127.0.0.1", bind_port=free_port("127.0.0.1"),
                         local_port=app_port, timeouts=Timeouts(local_connect_s=5.0))  # fmt: skip
    inbound = Inbound(config, lambda: identity, policy, tally.Tally())
    await inbound.start()
    return Served(inbound, pki.identity("web").client_tunnel)


def _client(served: Served, frames: bytes, hold: threading.Event, *, rcvbuf: int = 0) -> None:
    """From a thread: connect, write `frames`, read nothing until `hold` is set."""
    with socket.socket() as raw:
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.connect(("127.0.0.1", served.inbound.config.bind_port))
        with served.tunnel.wrap_socket(raw, server_hostname=None) as tls:
            with contextlib.suppress(OSError):  # the sidecar closed the wire: what some wait for
                tls.sendall(frames)
            hold.wait(30)


def _start(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


@pytest.fixture
async def slow_app() -> AsyncIterator[int]:
    """An app whose listen queue is full and never taken: connections to it hang."""
    with socket.socket() as app:
        app.bind(("127.0.0.1", 0))
        app.listen(0)
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(app.getsockname())
            fillers.append(filler)
        yield app.getsockname()[1]
        for filler in fillers:
            filler.close()


async def test_streams_opened_and_reset_at_once_hold_at_most_the_limit_of_connections(
    slow_app: int,
) -> None:
    """OPEN then RESET, thousands of times: each stream leaves the mux at once, but its app
    connection is still being made (up to local_connect_s); those attempts count against
    the wire's stream limit too, so one peer cannot have the sidecar hold sockets without
    end (and run it out of descriptors for everyone)."""
    served = await _served("allow", slow_app)
    count = 3 * MAX_STREAMS
    frames = b"".join(control(OPEN, i) + reset(i, CUT) for i in range(1, count + 1))
    hold = threading.Event()
    thread = _start(lambda: _client(served, frames, hold))
    try:
        await eventually_async(lambda: any(m._last_id >= count for m in served.inbound.tunnels
                                           .muxes), timeout=20)  # fmt: skip
        fds = len(os.listdir("/proc/self/fd"))
        assert len(served.inbound._tasks) <= MAX_STREAMS
        assert fds < 2 * MAX_STREAMS, fds
    finally:
        hold.set()
        served.inbound.stop_listening()
        served.inbound.terminate_all()
        thread.join(10)


async def test_a_peer_that_opens_streams_and_reads_no_answer_loses_its_wire() -> None:
    """Each OPEN is answered (here RESET: denied). A peer that sends OPENs and reads nothing
    would have those answers pile up in the sidecar's write buffer as fast as it sends;
    past OPENS_WHILE_FULL of them while the wire takes no more writes, the wire is closed."""
    app = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    served = await _served("deny", app.sockets[0].getsockname()[1])
    count = 600_000  # the kernel's buffers take the first few hundred thousand answers
    frames = b"".join(control(OPEN, i) for i in range(1, count + 1))
    hold = threading.Event()
    thread = _start(lambda: _client(served, frames, hold, rcvbuf=4096))
    try:
        await eventually_async(lambda: served.inbound.tunnels.muxes, timeout=20)
        mux = next(iter(served.inbound.tunnels.muxes))
        await eventually_async(lambda: mux.lost or mux._last_id >= count, timeout=120)
        assert mux.lost, f"still open after {mux._last_id} streams"
        assert mux._last_id < count
    finally:
        hold.set()
        served.inbound.stop_listening()
        served.inbound.terminate_all()
        app.close()
        thread.join(10)
