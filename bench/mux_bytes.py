"""A body's bytes between two sidecars in user space: frame and encrypt, decrypt and deframe.

Printed, not asserted. `proxy_pair.py` and `pair_bodies.py` measure CPU per
MiB for the whole pair, kernel included, and from run to run move by more
than a change to the proxy's own copying is worth. This runs only the
proxy's part, in one process with no socket: 1 MiB bodies as 64 KiB reads
from the app, each as the mux sends it (a DATA frame header and the read,
`TlsPipe.encrypt_all`), the ciphertext fed to the other end in 64 KiB
reads as a socket would give it (`TlsPipe.feed`) and deframed
(`Deframer.feed`). The proxy's certificates (tests/proxy_pki.py): P-256,
TLS 1.3, the cipher OpenSSL picks (AES-256-GCM). Pinned to one CPU if
`--cpu`; medians over the rounds.

    .venv/bin/python bench/mux_bytes.py [--rounds 7] [--mib 64] [--cpu 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gossamer.proxy.mux_frames import DATA, Deframer, pack_header  # noqa: E402
from tests.proxy_pki import Pki, handshaken  # noqa: E402

READ = 64 * 1024


def one_round(pki: Pki, mib: int) -> tuple[float, float]:
    """CPU ms per MiB: (frame and encrypt, decrypt and deframe)."""
    web, db = handshaken(pki.identity("web").client_tunnel, pki.identity("db").server_tunnel)
    frames = Deframer()
    read = bytes(range(256)) * (READ // 256)
    send_s = receive_s = 0.0
    got = 0
    for _ in range(mib * (1 << 20) // READ):
        start = time.process_time()
        wire = db.encrypt_all([pack_header(DATA, 1, READ), read])
        sent = time.process_time()
        for at in range(0, len(wire), READ):
            for chunk in web.feed(wire[at : at + READ]):
                for _kind, _stream, payload in frames.feed(chunk):
                    got += len(payload)
        send_s += sent - start
        receive_s += time.process_time() - sent
    assert got == mib << 20, got  # every byte came out
    return send_s * 1e3 / mib, receive_s * 1e3 / mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    pki = Pki()
    rows = [one_round(pki, args.mib) for _ in range(args.rounds)]
    send = statistics.median(r[0] for r in rows)
    receive = statistics.median(r[1] for r in rows)
    print(f"1 MiB bodies as 64 KiB reads, {args.mib} MiB a round, median of {args.rounds}: "
          f"CPU ms per MiB: frame and encrypt {send:.3f}, decrypt and deframe {receive:.3f}, "
          f"both {send + receive:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
