"""`python -m gossamer.proxy CONFIG_JSON AGENT_URL LOG_LEVEL [WORKERS]`: the proxy process.

CONFIG_JSON is a checked `ProxyConfig` (config.config_to_json), or
`{"node": true, "drain_s": S|null}` for one process serving every sidecar
of the agent (node.py). WORKERS (1 by default) is how many processes serve
it (workers.py); this one is worker 0 unless WORKER_ENV says otherwise.

`gossamer connect proxy` checks the flags and the registration (exit 2
naming what is wrong), then replaces itself with this module (`os.execv`,
same pid, so signals and systemd see one process). Starting afresh keeps the
CLI's imports (rich, every subcommand: ~14 MiB) out of a long-running sidecar.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys

if os.environ.get("GOSSAMER_PROXY_WORKER"):  # (worker_link.WORKER_ENV, not imported yet)
    # A worker started by worker 0 may get SIGHUP or SIGUSR1 passed on before its handlers
    # are in (process.py): their default would end it. Until then they are ignored.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
# A SIGTERM or SIGINT while the modules below load (a unit stopped as it starts) would end
# the process by its default action: held pending until the loop's handlers take it
# (process.py, `_on_signals`), it is a drain and exit 0 as at any later moment.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})

from gossamer.proxy import native  # noqa: E402

native.use()  # before the data-path modules are imported: compiled ones if built (native.py)

from gossamer.proxy import listen  # noqa: E402
from gossamer.proxy.agent_http import split_base_url  # noqa: E402
from gossamer.proxy.config import config_from_json  # noqa: E402
from gossamer.proxy.cpu_budget import worker_count  # noqa: E402
from gossamer.proxy.log_sidecar import SidecarTag  # noqa: E402
from gossamer.proxy.open_files import raise_open_files  # noqa: E402
from gossamer.proxy.process import serve, serve_node  # noqa: E402
from gossamer.proxy.worker_link import WORKER_ENV, worker_of  # noqa: E402
from gossamer.proxy.workers import SERVED_ENV, Crew, Worker, Workers, served_of  # noqa: E402

GC_YOUNG = 7_000  # allocations between two young-generation collections (CPython: 700)


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print("usage: python -m gossamer.proxy CONFIG_JSON AGENT_URL LOG_LEVEL [WORKERS]",
              file=sys.stderr)  # fmt: skip
        return 2
    node = node_request(argv[0])
    try:
        split_base_url(argv[1])  # checked now: the agent client is built once serving starts
        crew, name = crew_of(argv)
        job = serve_node(argv[1], node, crew) if node is not None else serve(
            config_from_json(argv[0]), argv[1], crew)  # fmt: skip
    except ValueError as exc:  # a ConfigError is one too
        print(f"gossamer proxy: {exc}", file=sys.stderr)
        return 2
    head = f"%(asctime)s %(levelname)s {name}%(sidecar)s"  # (sidecar: log_sidecar.py)
    logging.basicConfig(level=argv[2].upper(), stream=sys.stderr, format=head + "%(message)s")
    for handler in logging.getLogger().handlers:  # (--node: the sidecar a line is about)
        handler.addFilter(SidecarTag())
    raise_open_files()  # a connection costs a descriptor on each side (open_files.py)
    # What start-up made (modules, classes, the config: ~27,000 objects) lives as long as the
    # process: out of the cycle collector's sight, each full collection on the data path has
    # only the connections' objects to walk (bench/README.md, http_path.py).
    gc.collect()
    gc.freeze()
    # Connections once left reference cycles (session <-> sides, relay <-> sides) that only
    # the collector freed, and a young generation of 7,000 objects instead of 700 found them in
    # a tenth of the collections (33.6 -> 29.2 us a new client connection in
    # bench/http_path.py). They are broken as each connection closes now (http_joint.unlink,
    # Relay._close), so collections find nothing; the higher threshold still runs fewer of
    # them: 16.1-16.4 against 16.3-16.7 us a new connection, keep-alive requests unchanged.
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio works too
        import asyncio

        return asyncio.run(job)
    return uvloop.run(job)


def crew_of(argv: list[str]) -> tuple[Crew, str]:
    """This process's part (the only worker, worker 0 of N, or another worker) and the prefix
    of its log lines; ValueError for a bad WORKERS."""
    count = worker_count(argv[3] if len(argv) == 4 else "1", "WORKERS")
    worker = worker_of(os.environ.get(WORKER_ENV))
    if worker is not None:
        listen.share_ports(os.getppid())  # (worker 0 started it)
        return Worker(worker[1], served_of(os.environ.get(SERVED_ENV))), f"[worker {worker[0]}] "
    if count == 1:
        return Crew(), ""
    listen.share_ports(os.getpid())
    return Workers(argv, count), "[worker 0] "


def node_request(text: str) -> float | None:
    """The drain timeout of a node-mode request (-1: the registrations' own), or None."""
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict) or raw.get("node") is not True:
        return None
    drain = raw.get("drain_s")
    return float(drain) if isinstance(drain, int | float) else -1.0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
