"""What grew in a proxy worker under bench/soak.py's churn, each shown in a second or so.

A worker's RSS rose ~14 MiB in the soak's first minutes (GOSSAMER_NATIVE=0,
no heap trimmer): Python objects stayed level and so did the C heap in use
(mallinfo2's uordblks, ~6 MiB); the heap's free part grew. Each listener
opened (an upstream added, a sidecar started) read the kernel's whole TCP
table at once, and under connection churn that table holds thousands of
TIME_WAIT sockets: a few MB alive for a moment, whose pages glibc kept.
"""

from __future__ import annotations

import socket
import tracemalloc
from pathlib import Path

import pytest

from gossamer.proxy import port_owners

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
