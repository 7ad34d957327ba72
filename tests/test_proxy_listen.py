"""proxy/listen.py: IP literals are bound as create_server would bind them; names are resolved."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import socket
import subprocess
import sys
import weakref
from collections.abc import Iterator
from typing import cast

import pytest
import uvloop

from gossamer.proxy import listen
from gossamer.proxy.listen import BACKLOG, bound_socket, ip_family, serve
from tests.harness.binaries import cannot_run
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async


@pytest.mark.parametrize(
    ("host", "family"),
    [
        ("127.0.0.1", socket.AF_INET), ("0.0.0.0", socket.AF_INET), ("::", socket.AF_INET6),
        ("::1", socket.AF_INET6), ("fd00::1", socket.AF_INET6), ("localhost", None),
        ("db.service.consul", None), ("", None), ("127.1", None), ("[::1]", None),
        ("1.2.3.4\x00", None),
    ],
)  # fmt: skip
def test_ip_literals_and_names(host: str, family: int | None) -> None:
    assert ip_family(host) == family


def test_a_literal_is_bound_listening_and_non_blocking() -> None:
    sock = bound_socket("127.0.0.1", 0)
    assert sock is not None
    with sock:
        assert not sock.getblocking()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        with socket.create_connection(sock.getsockname()[:2], timeout=5):
            pass


def test_ipv6_is_v6_only() -> None:
    try:
        sock = bound_socket("::1", 0)
    except OSError:  # pragma: no cover - a host without IPv6 loopback
        cannot_run("no IPv6 loopback here")
    assert sock is not None
    with sock:
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


def test_a_name_is_left_to_the_loop() -> None:
    assert bound_socket("localhost", 0) is None


def test_a_taken_port_raises_and_leaks_no_socket() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = _open_fds()
        with pytest.raises(OSError):
            bound_socket("127.0.0.1", port)
        assert _open_fds() == before


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])  # a name: the loop binds it
def test_a_port_taken_by_another_program_names_its_address(host: str) -> None:
    """What the CLI prints and exits 1 with (process.py): where, and why, in one line; still
    an OSError with its errno and text for those who log it and try again (runtime.py,
    warm.py)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(listen.CannotListen) as refused:
            uvloop.run(serve(asyncio.Protocol, host, port))
    assert (refused.value.where, refused.value.reason) == (
        f"{host}:{port}", "address already in use")  # fmt: skip
    assert isinstance(refused.value, OSError) and refused.value.errno == errno.EADDRINUSE
    assert isinstance(refused.value.__cause__, OSError)
    assert str(refused.value) == str(refused.value.__cause__)  # (what the logs say, unchanged)


def test_a_listener_the_process_already_serves_names_its_address(workers_ports: None) -> None:
    async def run() -> None:
        port = _free_port()
        one = await serve(asyncio.Protocol, "127.0.0.1", port)
        try:
            with pytest.raises(listen.CannotListen) as refused:
                await serve(asyncio.Protocol, "0.0.0.0", port)
        finally:
            one.close()
        assert refused.value.where == f"0.0.0.0:{port}"
        assert refused.value.reason == (
            f"address already in use (served by another listener of this proxy, "
            f"on 127.0.0.1:{port})"
        )

    uvloop.run(run())


def test_shared_sockets_join_one_group_and_a_plain_one_is_kept_out() -> None:
    first = bound_socket("127.0.0.1", 0, shared=True)
    assert first is not None
    port = first.getsockname()[1]
    try:
        second = bound_socket("127.0.0.1", port, shared=True)  # another worker's
        assert second is not None
        second.close()
        with pytest.raises(OSError):  # not a worker: the port is taken for it
            bound_socket("127.0.0.1", port)
    finally:
        first.close()


async def test_serve_answers_on_a_literal_and_on_a_name() -> None:
    for host in ("127.0.0.1", "localhost"):
        server = await serve(lambda: _Hello(), host, 0)
        (port,) = {s.getsockname()[1] for s in server.sockets if s.family == socket.AF_INET}
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.read() == b"hello"
        writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_listener_keeps_the_backlog_the_kernel_allows(host: str) -> None:
    """create_server listens again on a socket it is given, with its own default backlog of
    100 unless told: a burst of 1,000 connects then lost SYNs and waited a second each. The
    accept queue is net.core.somaxconn long, as `ss` shows (Send-Q of a listener)."""
    with open("/proc/sys/net/core/somaxconn") as f:
        allowed = int(f.read())
    assert allowed <= BACKLOG

    loop = uvloop.new_event_loop()  # the proxy's loop
    try:
        server = loop.run_until_complete(serve(lambda: _Hello(), host, 0))
        port = server.sockets[0].getsockname()[1]
        shown = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                               text=True, check=True).stdout.split()  # fmt: skip
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        loop.close()
    assert int(shown[2]) == allowed


class _Hello(asyncio.Protocol):
    def __init__(self, said: bytes = b"hello") -> None:
        self.said = said

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer = cast(asyncio.WriteTransport, transport)  # uvloop's is no asyncio.Transport
        writer.write(self.said)
        writer.close()


def _link(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # closed since it was listed
        return ""


def _open_sockets() -> set[str]:
    """This process's open sockets, by inode: a new socket may take the number of a
    descriptor listed before (the listing's own), so numbers do not tell new from old."""
    return {link for link in map(_link, os.listdir("/proc/self/fd")) if link.startswith("socket:")}


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if sys.platform == "linux" else 0


@pytest.fixture
def workers_ports() -> Iterator[None]:
    """This process binds as a worker of `--workers N` does: SO_REUSEPORT on every listener."""
    listen.share_ports(os.getpid())
    try:
        yield
    finally:
        listen._shared = False


def _free_port() -> int:
    """A port free on every address of both families: the tests bind `::` and `0.0.0.0`
    on it as well as loopback. One free on 127.0.0.1 alone was at times held on an IPv6
    address by another test's process ("Address already in use", 2 runs in 15)."""
    for _ in range(50):
        port = free_port("127.0.0.1")
        if _free_on_every_address(port):
            return port
    raise RuntimeError("no port free on every address of both families")


def _free_on_every_address(port: int) -> bool:
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind((host, port))
            except OSError:
                return family == socket.AF_INET6 and not _has_ipv6()
    return True


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _needs_ipv6(*hosts: str) -> None:
    if any(":" in host for host in hosts):
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:  # pragma: no cover - a host without IPv6 loopback
            cannot_run("no IPv6 loopback here")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "0.0.0.0"), ("0.0.0.0", "127.0.0.1"),
        # the same address spelled otherwise: a name, another IPv6 spelling, the wildcard ""
        ("127.0.0.1", "localhost"), ("localhost", "127.0.0.1"), ("localhost", "localhost"),
        ("0.0.0.0", "localhost"), ("localhost", "0.0.0.0"), ("", "127.0.0.1"),
        ("127.0.0.1", ""), ("::1", "0:0::1"), ("0:0::1", "::1"), ("::", "::1"), ("::1", "::"),
        ("::", "0::0"), ("", "::1"),
    ],
)  # fmt: skip
def test_a_worker_never_shares_a_port_between_two_of_its_listeners(
    first: str, second: str, workers_ports: None
) -> None:
    """With SO_REUSEPORT on every listener (a worker of `--workers N`), the kernel lets a
    second listener of the process join the first one's port, and each would get some of
    the other's clients (two `--node` sidecars given one port, each with its identity): the
    second is refused as an unshared bind would be, whatever the spelling of the address it
    is given (what is compared is what was bound); once the first closes, it may bind."""
    _needs_ipv6(first, second)

    async def run() -> None:
        port = _free_port()
        one = await serve(asyncio.Protocol, first, port)
        try:
            before = _open_fds()
            await _refused(second, port)
            # a refused listener leaves no socket behind (it may be bound, then closed)
            await eventually_async(lambda: _open_fds() == before)
        finally:
            one.close()
        two = await serve(asyncio.Protocol, second, port)
        two.close()

    uvloop.run(run())


def test_the_first_listener_keeps_all_its_clients(workers_ports: None) -> None:
    """What the refusal is for: 40 clients of a listener on 127.0.0.1 all reach it, none a
    second listener of the process given `localhost` and the same port."""

    async def run() -> None:
        port = _free_port()
        got = {"first": 0, "second": 0}
        one = await serve(lambda: _Count(got, "first"), "127.0.0.1", port)
        two = None
        try:
            try:
                two = await serve(lambda: _Count(got, "second"), "localhost", port)
            except OSError as exc:
                assert exc.errno == errno.EADDRINUSE, exc
            for _ in range(40):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
            await eventually_async(lambda: sum(got.values()) == 40)
            assert got == {"first": 40, "second": 0}
        finally:
            one.close()
            if two is not None:
                two.close()

    uvloop.run(run())


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("::", "127.0.0.1"), ("127.0.0.1", "::"), ("::", "0.0.0.0"), ("0.0.0.0", "::"),
        ("0.0.0.0", "::1"), ("::1", "0.0.0.0"), ("::1", "127.0.0.1"), ("::", "localhost"),
    ],
)  # fmt: skip
def test_listeners_of_the_two_families_may_share_a_port(
    first: str, second: str, shared: bool
) -> None:
    """An IPv6 listener is bound IPV6_V6ONLY: `::` is every IPv6 address, no IPv4 one, and
    0.0.0.0 no IPv6 one, so the kernel binds such a pair on one port (it joins no group)
    and each answers its own family's clients."""
    _needs_ipv6(first, second)

    async def run() -> None:
        port = _free_port()
        one = await serve(lambda: _Hello(b"one"), first, port)
        try:
            two = await serve(lambda: _Hello(b"two"), second, port)
            try:
                for host, said in ((first, b"one"), (second, b"two")):
                    ip = {"::": "::1", "0.0.0.0": "127.0.0.1", "localhost": "127.0.0.1"}.get(
                        host, host
                    )
                    for _ in range(10):
                        reader, writer = await asyncio.open_connection(ip, port)
                        assert await asyncio.wait_for(reader.read(), 10) == said
                        writer.close()
            finally:
                two.close()
        finally:
            one.close()

    if shared:
        listen.share_ports(os.getpid())
    try:
        uvloop.run(run())
    finally:
        listen._shared = False


def test_a_closed_listener_is_forgotten(workers_ports: None) -> None:
    """The process's record of its listeners keeps no closed one: 20 listeners opened and
    closed one after another on fresh ports leave no server object alive."""

    async def run() -> None:
        gone = []
        for _ in range(20):
            server = await serve(asyncio.Protocol, "127.0.0.1", _free_port())
            server.close()
            await server.wait_closed()
            gone.append(weakref.ref(server))
            del server

        def all_gone() -> bool:
            gc.collect()  # (the loop lets go of a closed server's handles a turn later)
            return not any(ref() for ref in gone)

        await eventually_async(all_gone)

    uvloop.run(run())


def test_a_successor_takes_over_the_socket_and_keeps_the_port(workers_ports: None) -> None:
    """`take_over` (an upstream that changed): the successor accepts on its predecessor's
    socket, which may then close; the port stays held (under any spelling) until the
    successor closes too."""

    async def run() -> None:
        port = _free_port()
        old = await serve(lambda: _Hello(b"old"), "127.0.0.1", port)
        new = await listen.take_over(lambda: _Hello(b"new"), old, "127.0.0.1", port)
        assert new is not None
        try:
            old.close()
            for _ in range(10):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert await asyncio.wait_for(reader.read(), 10) == b"new"
                writer.close()
            for spelling in ("127.0.0.1", "localhost", "0.0.0.0"):
                await _refused(spelling, port)
        finally:
            new.close()
        again = await serve(asyncio.Protocol, "localhost", port)
        again.close()

    uvloop.run(run())


async def _refused(host: str, port: int) -> None:
    """Asserts a listener on `host`:`port` is refused as taken (and closes it when not, so
    a failure leaves no listener behind for later tests to share a port with)."""
    try:
        server = await serve(asyncio.Protocol, host, port)
    except OSError as exc:
        assert exc.errno == errno.EADDRINUSE, exc
        return
    bound = [sock.getsockname() for sock in server.sockets]
    server.close()
    pytest.fail(f"a second listener on {host}:{port} was not refused: it bound {bound}")


class _Count(asyncio.Protocol):
    def __init__(self, got: dict[str, int], name: str) -> None:
        self.got, self.name = got, name

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.got[self.name] += 1
        transport.close()


_SHARED_LISTENER = """
import os, socket, sys
if sys.argv[2] == "stranger" and os.fork():  # (the child goes on, no longer ours)
    os._exit(0)
host = sys.argv[3]
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
if ":" in host:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # (Linux's default: dual-stack)
s.bind((host, int(sys.argv[1])))
s.listen()
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize(("who", "host"), [
    ("child", "127.0.0.1"), ("stranger", "127.0.0.1"), ("stranger", "0.0.0.0"),
    ("stranger", "::"),  # dual-stack: it takes IPv4 clients too (found by a walkthrough)
])  # fmt: skip
def test_a_shared_listener_joins_its_workers_only(workers_ports: None, who: str, host: str) -> None:
    """A port another process listens on with SO_REUSEPORT: a worker joins it when that
    process is one of its proxy's (worker 0, here this process, and its children), and is
    refused EADDRINUSE, naming why, when it is not (port_owners.py): joined, the kernel
    would have sent it half of the other's clients."""
    _needs_ipv6(host)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", _SHARED_LISTENER, str(port), who, host],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline() == b"ready\n"

        async def run() -> None:
            server = await serve(asyncio.Protocol, "127.0.0.1", port)
            server.close()

        if who == "child":
            uvloop.run(run())
        else:
            with pytest.raises(listen.CannotListen) as refused:
                uvloop.run(run())
            assert refused.value.errno == errno.EADDRINUSE
            assert "not one of this proxy's workers" in refused.value.reason
    finally:
        proc.stdin.close()  # (the listener, ours or not, reads its end and exits)
        proc.wait(10)


_OWN_PROXY = """
import asyncio, os, sys
from gossamer.proxy import listen
listen.share_ports(os.getpid())  # a worker 0 of its own
port = int(sys.argv[1])
sys.stdin.readline()  # go


async def run() -> None:
    try:
        server = await listen.serve(asyncio.Protocol, "127.0.0.1", port)
    except listen.CannotListen:
        print("refused", flush=True)
        return
    print("listening", flush=True)
    sys.stdin.read()
    server.close()


asyncio.run(run())
"""


def test_two_proxies_opening_one_port_at_once_do_not_both_get_it() -> None:
    """Two proxies with workers (two worker 0s, neither the other's child) open the same
    port at the same moment: one gets it, the other is refused. Each looked before the other
    listened, and both listened (15 runs in 15, found by a review); the look and the listen
    are now one step, locked per port (port_owners.port_lock)."""
    for _ in range(5):
        port = _free_port()
        procs = [subprocess.Popen([sys.executable, "-c", _OWN_PROXY, str(port)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                 for _ in range(2)]  # fmt: skip
        try:
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
            for proc in procs:  # (as close together as two writes)
                assert proc.stdin is not None
                proc.stdin.flush()
            said = sorted(proc.stdout.readline() for proc in procs if proc.stdout is not None)
            assert said == [b"listening\n", b"refused\n"]
        finally:
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(10)


def test_a_port_lock_given_up_while_waiting_leaves_no_socket() -> None:
    """A wait for the port's lock (held here by another socket) that is cancelled closes its
    own socket (it was left open, found by a review)."""
    from gossamer.proxy.port_owners import port_lock

    async def run() -> None:
        port = _free_port()
        held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        held.bind(f"\0gossamer/listen/{port}")
        try:
            before = _open_sockets()

            def opened() -> set[str]:
                """Sockets opened since `before` (a count, compared whole, was thrown off in
                the full suite by descriptors other tests' leftovers closed meanwhile)."""
                return _open_sockets() - before

            waiting = asyncio.ensure_future(port_lock(port))
            await eventually_async(opened)  # its own socket, whose bind fails: it waits
            assert not waiting.done()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert not opened()  # that socket is not left open
        finally:
            held.close()
        lock = await port_lock(port)  # free now: had at once
        assert lock is not None
        lock.close()

    uvloop.run(run())
