"""What grew in a proxy worker under bench/soak.py's churn, each shown in a second or so.

A worker's RSS rose ~14 MiB in the soak's first minutes (GOSSAMER_NATIVE=0,
no heap trimmer): Python objects stayed level and so did the C heap in use
(mallinfo2's uordblks, ~6 MiB); the heap's free part grew. Each listener
opened (an upstream added, a sidecar started) read the kernel's whole TCP
table at once, and under connection churn that table holds thousands of
TIME_WAIT sockets: a few MB alive for a moment, whose pages glibc kept.
What did grow in Python objects was the peer checks' memory of verified
chains (ChainMemory): every renewed leaf of every peer stayed, until 1,024.
And the C heap in use grew on the upstream side alone, with renewals and
connections together: each read of a TLS session leaks a copy of it on
this CPython (gh-116810), once per instance and client context, and once
more every 4 minutes while an instance was busy.
"""

from __future__ import annotations

import socket
import ssl
import sys
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from gossamer.proxy import port_owners
from gossamer.proxy.authorize import Trust, client_service
from gossamer.proxy.ca.leaf import issue_leaf
from gossamer.proxy.ca.verified_chain import ChainMemory
from gossamer.proxy.sessions import SessionCache
from tests.ca_support import DC, NOW, TD, make_mesh
from tests.proxy_pki import Pki, handshaken

# gh-116810: each read of SSLObject.session leaks a copy (fixed in 3.12.8 and 3.13.1 at the latest)
LEAKY = sys.version_info[:3] < (3, 12, 8) or (3, 13, 0) <= sys.version_info[:3] < (3, 13, 1)

HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
          "   uid  timeout inode\n")  # fmt: skip
# A TIME_WAIT socket's line (state 06, no inode) and a listener's (0A) on 127.0.0.1:8080,
# as the kernel writes them
TIME_WAIT = ("{n:4d}: 0100007F:{port:04X} 0100007F:1F90 06 00000000:00000000 03:00000D2C "
             "00000000     0        0 0 3 0000000000000000\n")  # fmt: skip
LISTENER = ("   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
            "     0        0 4242 1 0000000000000000 100 0 0 10 0\n")  # fmt: skip


def test_the_tcp_table_is_read_a_line_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20,000 TIME_WAIT sockets (~2.4 MB of table, as a host under churn lists): the look
    before a listener listens finds the one listener and never holds more than a few KiB."""
    table = tmp_path / "tcp"
    lines = (TIME_WAIT.format(n=n + 1, port=1024 + n % 60000) for n in range(20_000))
    table.write_text(HEADER + LISTENER + "".join(lines))
    monkeypatch.setattr(port_owners, "_TABLES", ((str(table), socket.AF_INET),))
    tracemalloc.start()
    try:
        found = port_owners._listening()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == [(4242, (8080, int(socket.AF_INET), b"\x7f\0\0\x01", 0))]
    assert peak < 256 * 1024, f"{peak} bytes at the peak for a {table.stat().st_size} B table"


def test_renewed_peer_leaves_are_forgotten_once_expired() -> None:
    """A peer renewing a 10 s leaf every 5 s (bench/soak.py's agents), 60 times: the memory
    of the inbound side checking it holds the leaves still valid, not all 60."""
    mesh = make_mesh(now=NOW)
    issuers = [c.public_bytes(Encoding.DER) for c in (mesh.intermediate.certificate,
                                                      mesh.root.certificate)]  # fmt: skip
    trust = Trust(TD, frozenset(issuers[-1:]))
    memory = ChainMemory()
    for i in range(60):
        issued = NOW + timedelta(seconds=5 * i)
        leaf = issue_leaf(mesh.intermediate, DC, "web", issued, timedelta(seconds=10),
                          test_only_unbounded_ttl=True)  # fmt: skip
        der = leaf.certificate.public_bytes(Encoding.DER)
        now = issued + timedelta(seconds=2)
        for _ in range(3):  # three connections, each handing over new bytes, as OpenSSL does
            chain = [bytes(bytearray(d)) for d in (der, *issuers)]
            assert client_service(chain, trust, now, memory).service == "web"
    assert len(memory._chains) <= 3, len(memory._chains)
    assert len(memory._facts) <= 5, len(memory._facts)  # with the intermediate and the root


def test_a_chain_seen_again_keeps_its_bytes_and_issuers_are_shared() -> None:
    """Two peers' chains hold one copy of the issuers' DER; a chain handed over again (new
    bytes, same certificates) leaves the remembered one as it was."""
    mesh = make_mesh(now=NOW)
    issuers = [c.public_bytes(Encoding.DER) for c in (mesh.intermediate.certificate,
                                                      mesh.root.certificate)]  # fmt: skip
    trust = Trust(TD, frozenset(issuers[-1:]))
    memory = ChainMemory()
    leaves = [mesh.leaf(name, NOW).certificate.public_bytes(Encoding.DER) for name in "ab"]

    def handed(leaf: bytes) -> list[bytes]:
        return [bytes(bytearray(d)) for d in (leaf, *issuers)]

    for leaf in leaves:
        client_service(handed(leaf), trust, NOW, memory)
    first = memory.chain([leaves[0]])
    client_service(handed(leaves[0]), trust, NOW, memory)
    again, other = memory.chain([leaves[0]]), memory.chain([leaves[1]])
    assert first is not None and again is first
    assert other is not None and all(a is b for a, b in zip(other[1:], first[1:], strict=True))


def ticketed() -> tuple[ssl.SSLContext, ssl.SSLSession]:
    """A client context and a session of it with the server's ticket."""
    pki = Pki()
    web, db = pki.identity("web"), pki.identity("db")
    near, far = handshaken(web.client_tunnel, db.server_tunnel)
    near.feed(far.pending())  # the server's ticket
    session = near.tls.session
    assert session is not None and session.has_ticket
    return web.client_tunnel, session


@pytest.mark.skipif(not LEAKY, reason="this CPython reads TLS sessions without leaking them")
def test_a_busy_instance_has_its_session_read_about_once_an_hour() -> None:
    """A connection a second to one instance for six hours, one client context: each read
    of a session leaks ~6.6 KiB on this CPython, so it is read about once an hour (it was
    every 4 minutes: 90 reads, ~0.6 MiB a worker per instance), and one is always offered."""
    context, session = ticketed()
    cache, reads, offered = SessionCache(), 0, 0
    for now in range(6 * 3600):
        offered += cache.offer("db-1", context, now) is not None
        if cache.wants("db-1", context, now):
            reads += 1
            cache.keep("db-1", context, session, now)
    assert reads <= 7, reads
    assert offered >= 6 * 3600 - 7


@pytest.mark.skipif(not LEAKY, reason="this CPython reads TLS sessions without leaking them")
def test_renewals_every_5_s_read_an_instance_s_session_about_once_a_minute() -> None:
    """bench/soak.py's leaves: a new client context every 5 s and a connection a second to
    one instance for 10 minutes. Each context wants a session of its own, but reads of one
    instance are a minute apart (it was a read per renewal: 120, ~0.8 MiB a worker)."""
    _, session = ticketed()
    cache, reads = SessionCache(), 0
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for now in range(600):
        if now % 5 == 0:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # a renewed leaf
        cache.offer("db-1", context, now)
        if cache.wants("db-1", context, now):
            reads += 1
            cache.keep("db-1", context, session, now)
    assert reads <= 11, reads
