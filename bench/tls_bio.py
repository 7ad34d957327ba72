"""TLS over memory BIOs (the proxy's `TlsSide`) against a socket BIO (`ssl.SSLSocket`).

Printed, not asserted. The proxy drives OpenSSL over memory BIOs
(proxy/tls_pipe.py): ciphertext is copied into OpenSSL's input BIO and out
of its output BIO, four copies per byte across a sidecar pair that a socket
BIO, which reads and writes the socket itself as Envoy's does, would not
make. This measures whether that is worth a different wire: one mTLS
connection between two processes pinned to the same core (as a pair is),
its two ends as
- `bio`: the proxy's own `TlsSide` (a `TlsPipe` over a uvloop transport),
  joined to the load where the proxy joins a relay;
- `socket`: a non-blocking `SSLSocket` driven by `add_reader` /
  `add_writer` (what a socket BIO in Python, and kTLS, would need).
Two loads: `bulk` sends 512 MiB one way in 64 KiB writes (CPU of both ends
per MiB), `rt` makes 20,000 round trips of 100 bytes (CPU of both ends per
round trip). The proxy's certificates (tests/proxy_pki.py): P-256, TLS 1.3.
Rounds interleave the two ends; medians.

    .venv/bin/python bench/tls_bio.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import ssl
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gossamer.proxy.side import Joint, Side  # noqa: E402
from gossamer.proxy.tls_side import TlsSide  # noqa: E402
from tests.proxy_pki import Pki  # noqa: E402

BULK_MIB, ROUND_TRIPS, CHUNK, CPU = 512, 20_000, 64 * 1024, 1
Received = Callable[["End", bytes], None]


class End:
    """One end of the connection: `send`, `ready` once handshaken, `writable` to pace."""

    ready: asyncio.Future[None]
    writable: asyncio.Event

    def send(self, data: bytes) -> None:
        raise NotImplementedError


class BioEnd(Joint, End):
    """The proxy's own TLS side (tls_side.py: a TlsPipe over a plain uvloop transport),
    joined to this end where the proxy joins a relay."""

    def __init__(self, context: ssl.SSLContext, server: bool, received: Received) -> None:
        self.side = TlsSide(context, server_side=server)
        self.side.relay = self
        self.received = received
        self.ready = self.side.handshake
        self.writable = asyncio.Event()
        self.writable.set()
        self._pacer = _Pacer(self.writable)

    def send(self, data: bytes) -> None:
        self.side.send(data)

    def peer_of(self, side: Side) -> Side:
        return self._pacer  # the TLS side's full or drained write buffer paces the sender

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        for chunk in chunks:
            self.received(self, chunk)

    def side_lost(self, side: Side) -> None:
        pass


class _Pacer(Side):
    """What a BioEnd's flow control reaches: whether the sender may write."""

    def __init__(self, writable: asyncio.Event) -> None:
        super().__init__()
        self._writable = writable

    def pause_reading(self) -> None:
        self._writable.clear()

    def resume_reading(self) -> None:
        self._writable.set()


class SocketEnd(End):
    """A socket BIO: a non-blocking SSLSocket that reads and writes the socket itself."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server: bool,
                 received: Received) -> None:  # fmt: skip
        self.loop = asyncio.get_running_loop()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as uvloop's transports
        self.tls = context.wrap_socket(sock, server_side=server, do_handshake_on_connect=False)
        self.fd, self.received = self.tls.fileno(), received
        self.view = memoryview(bytearray(CHUNK))
        self.ready = self.loop.create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.waiting: list[bytes] = []
        self._handshake()

    def _handshake(self) -> None:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self.loop.add_reader(self.fd, self._handshake)
            return
        except ssl.SSLWantWriteError:
            self.loop.add_writer(self.fd, self._handshake)
            return
        self.loop.remove_writer(self.fd)
        self.loop.add_reader(self.fd, self._read)
        self.ready.set_result(None)

    def _read(self) -> None:
        while True:
            try:
                count = self.tls.read(CHUNK, self.view)  # one wrapper (recv_into: three)
            except ssl.SSLWantReadError:
                return
            if not count:
                self.loop.remove_reader(self.fd)
                return
            self.received(self, bytes(self.view[:count]))

    def send(self, data: bytes) -> None:
        if not self.waiting:
            try:
                self.tls.send(data)
                return
            except ssl.SSLWantWriteError:
                self.writable.clear()
                self.loop.add_writer(self.fd, self._drain)
        self.waiting.append(data)

    def _drain(self) -> None:
        while self.waiting:
            try:
                self.tls.send(self.waiting[0])
            except ssl.SSLWantWriteError:
                return
            self.waiting.pop(0)
        self.loop.remove_writer(self.fd)
        self.writable.set()


async def _serve(kind: str, load: str, context: ssl.SSLContext, report: int) -> None:
    """Accept one connection; echo (rt) or count (bulk); write own CPU seconds when done."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    seen = [0, 0.0]  # bytes or round trips, CPU at the first

    def received(end: End, data: bytes) -> None:
        if not seen[0]:
            seen[1] = _cpu()
        seen[0] += len(data) if load == "bulk" else 1
        if load == "rt":
            end.send(data)
        if seen[0] >= (BULK_MIB << 20 if load == "bulk" else ROUND_TRIPS) and not done.done():
            os.write(report, b"%f\n" % (_cpu() - seen[1]))
            if load == "bulk":
                end.send(b"k")  # the client's run ends
            done.set_result(None)

    listener = socket.create_server(("127.0.0.1", 0))
    os.write(report, b"%d\n" % listener.getsockname()[1])
    if kind == "bio":
        server = await loop.create_server(lambda: BioEnd(context, True, received).side,
                                          sock=listener)  # fmt: skip
    else:
        listener.setblocking(False)

        def accept() -> None:
            SocketEnd(listener.accept()[0], context, True, received)

        loop.add_reader(listener.fileno(), accept)
    await done
    await asyncio.sleep(0.2)  # let the last bytes go
    if kind == "bio":
        server.close()


async def _client(kind: str, load: str, context: ssl.SSLContext, port: int) -> float:
    """Run the load; this end's CPU seconds."""
    loop = asyncio.get_running_loop()
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    def received(end: End, data: bytes) -> None:
        answers.put_nowait(data)

    end: End
    if kind == "bio":
        end = BioEnd(context, False, received)
        await loop.create_connection(lambda: end.side, "127.0.0.1", port)
    else:
        end = SocketEnd(socket.create_connection(("127.0.0.1", port)), context, False, received)
    await end.ready
    start = _cpu()
    if load == "rt":
        message = b"x" * 100
        for _ in range(ROUND_TRIPS):
            end.send(message)
            await answers.get()
    else:
        data = os.urandom(CHUNK)
        for _ in range(BULK_MIB * (1 << 20) // CHUNK):
            await end.writable.wait()
            end.send(data)
        await answers.get()
    return _cpu() - start


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # microseconds, where os.times has ticks
    return usage.ru_utime + usage.ru_stime


def run(kind: str, load: str, pki: Pki) -> float:
    """CPU µs of both ends per MiB (bulk) or per round trip (rt)."""
    reading, report = os.pipe()
    child = os.fork()
    if child == 0:
        os.sched_setaffinity(0, {CPU})
        uvloop.run(_serve(kind, load, pki.identity("db").server_tunnel, report))
        os._exit(0)
    os.close(report)
    lines = os.fdopen(reading)
    port = int(lines.readline())
    os.sched_setaffinity(0, {CPU})
    mine = uvloop.run(_client(kind, load, pki.identity("web").client_tunnel, port))
    theirs = float(lines.readline())
    os.waitpid(child, 0)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return (mine + theirs) / (BULK_MIB if load == "bulk" else ROUND_TRIPS) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pki = Pki()
    figures: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for load in ("bulk", "rt"):
            for kind in ("bio", "socket"):
                figures.setdefault((kind, load), []).append(run(kind, load, pki))
    print(f"One mTLS connection, both ends on CPU {CPU}; medians of {args.rounds} rounds "
          f"(Python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION})")  # fmt: skip
    print(f"{'load':<34}{'memory BIO':>12}{'socket BIO':>12}{'socket/memory':>15}")
    for load, unit in (("bulk", "CPU us per MiB"), ("rt", "CPU us per 100-byte round trip")):
        bio = statistics.median(figures["bio", load])
        sock = statistics.median(figures["socket", load])
        print(f"{unit:<34}{bio:>12.1f}{sock:>12.1f}{sock / bio:>14.2f}x")


if __name__ == "__main__":
    main()
