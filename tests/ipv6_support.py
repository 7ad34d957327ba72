"""Agents on IPv6 addresses for tests/test_ipv6_walk.py: on `::1`, and namespaces whose only
addresses (besides loopback) are IPv6.

A namespace here is one network namespace with an interface holding the addresses given,
nothing more: no bridge, no route out. Its name starts with `g6w` (not the `gs`
prefix of tests/harness/netns.py, whose cleanup removes every namespace of that prefix
that no live run owns) and it is removed, with every process in it, when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.harness.binaries import cannot_run
from tests.harness.cluster import AgentProc, free_port
from tests.harness.netns import netns_available


def ipv6_loopback() -> None:
    """Skip (cannot_run) where `::1` cannot be bound."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        cannot_run("no IPv6 loopback here")


def agent_on(ip: str, root: Path, name: str, *extra: str, prefix: list[str] | None = None,
             ports: dict[str, int] | None = None) -> AgentProc:  # fmt: skip
    """An agent (not started) bound and answering on `ip`, its ports free there unless given."""
    p = ports or {k: free_port(ip) for k in ("http", "dns", "serf", "rpc")}
    return AgentProc(name=name, ip=ip, data_dir=root / name, http_port=p["http"],
                     dns_port=p["dns"], serf_port=p["serf"], rpc_port=p["rpc"],
                     log_path=root / f"{name}.log", extra=list(extra),
                     prefix=prefix or [])  # fmt: skip


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


def _kill_all(ns: str) -> None:
    deadline = time.monotonic() + 5
    while True:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split() if p.isdigit()]
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


@contextlib.contextmanager
def ipv6_only_namespace(*addresses: str) -> Iterator[list[str]]:
    """A namespace whose interface `d0` has only `addresses` (IPv6, /64); yields the prefix
    that runs a command in it (`ip netns exec <ns>`)."""
    ok, why = netns_available()
    if not ok:
        cannot_run(why)
    ns = f"g6w{secrets.token_hex(4)}"
    _ip("netns", "add", ns)
    try:
        _ip("-n", ns, "link", "set", "lo", "up")
        # A veth pair with both ends inside (no `dummy` module on every kernel): d0 holds
        # the addresses, d1 is there so that d0's link is up.
        _ip("-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
        for address in addresses:
            _ip("-n", ns, "addr", "add", f"{address}/64", "dev", "d0", "nodad")
        _ip("-n", ns, "link", "set", "d1", "up")
        _ip("-n", ns, "link", "set", "d0", "up")
        yield ["ip", "netns", "exec", ns]
    finally:
        _kill_all(ns)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def random_ula() -> str:
    """An address in a random fdXX:XXXX:XXXX::/48 (RFC 4193: no other network has it)."""
    r = secrets.token_hex(5)
    return f"fd{r[:2]}:{r[2:6]}:{r[6:10]}::11"


@contextlib.contextmanager
def ipv6_only_hosts(count: int) -> Iterator[list[tuple[list[str], str]]]:
    """`count` namespaces on one bridge, each with one IPv6 address in a random ULA /64 and
    no IPv4 but loopback; the bridge holds `<prefix>::1`, so this process reaches them.
    Yields (the prefix that runs a command in it, its address) per host."""
    ok, why = netns_available()
    if not ok:
        cannot_run(why)
    tag = secrets.token_hex(3)
    net = random_ula().removesuffix("::11")
    bridge, names = f"g6wb{tag}", [f"g6w{tag}-{i}" for i in range(1, count + 1)]
    made: list[str] = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{net}::1/64", "dev", bridge, "nodad")
        _ip("link", "set", bridge, "up")
        hosts = []
        for i, ns in enumerate(names, 1):
            outside, address = f"g6wv{tag}{i}", f"{net}::{10 + i}"
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("link", "add", outside, "type", "veth", "peer", "name", f"g6wi{tag}{i}")
            _ip("link", "set", f"g6wi{tag}{i}", "netns", ns)
            _ip("-n", ns, "link", "set", f"g6wi{tag}{i}", "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{address}/64", "dev", "eth0", "nodad")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("link", "set", outside, "master", bridge)
            _ip("link", "set", outside, "up")
            hosts.append((["ip", "netns", "exec", ns], address))
        yield hosts
    finally:
        for ns in made:
            _kill_all(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=20)
