"""Startup figures: process start → ready, for `--dev` and for a 3-agent join.

Printed, not asserted. A bare `serf agent` is timed the same way as a
reference, so the table shows what gossamer adds on top of serf itself.

    .venv/bin/python bench/startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.cluster import AgentProc, Cluster, free_port, http_json  # noqa: E402

POLL = 0.005  # tight polling: the harness's growing interval would blur the figures
TIMEOUT = 30.0


def wait_until(check: Callable[[], bool], proc: subprocess.Popen[bytes] | None = None) -> float:
    """Poll `check` every few ms; return the monotonic time it first held."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            if check():
                return time.monotonic()
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(POLL)
    raise TimeoutError("not ready in time")


def is_ready(agent: AgentProc) -> bool:
    return bool(http_json(agent.http + "/v1/agent/self", timeout=2)["Gossamer"]["Ready"])


def sees_all_alive(agent: AgentProc, names: set[str]) -> bool:
    return {n for n, s in agent.members().items() if s == 1} == names


def dev_once(root: Path) -> float:
    """`gossamer agent --dev` on its own loopback address and free ports."""
    root.mkdir(parents=True)
    cluster = Cluster(root)
    agent = cluster.new_agent("dev")
    argv = [
        sys.executable, "-m", "gossamer.agent", "agent", "--dev",
        "--node", agent.name, "--bind", agent.ip, "--client", agent.ip,
        "--http-port", str(agent.http_port), "--dns-port", str(agent.dns_port),
        "--serf-port", str(agent.serf_port), "--rpc-port", str(agent.rpc_port),
    ]  # fmt: skip
    start = time.monotonic()
    with agent.log_path.open("ab") as log:
        agent.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        return wait_until(lambda: is_ready(agent), agent.proc) - start
    finally:
        if cluster.close():
            raise RuntimeError("serf left behind by the --dev agent")


def join_once(root: Path) -> tuple[float, float]:
    """Three agents, the 2nd and 3rd joining the 1st once it is ready (as Cluster.start does).

    Returns (first ready, all three see three alive), both from the first start.
    """
    root.mkdir(parents=True)
    cluster = Cluster(root)
    try:
        first = cluster.new_agent("node1")
        rest = [cluster.new_agent(f"node{i}", "--join", first.serf_addr) for i in (2, 3)]
        start = time.monotonic()
        first.start(wait=False)
        first_ready = wait_until(lambda: is_ready(first), first.proc) - start
        for agent in rest:
            agent.start(wait=False)
        names = {a.name for a in cluster.agents}
        done = max(
            wait_until(partial(sees_all_alive, agent, names), agent.proc)
            for agent in cluster.agents
        )
        return first_ready, done - start
    finally:
        if cluster.close():
            raise RuntimeError("serf left behind")


def serf_rpc_up(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def serf_members_alive(rpc_port: int, count: int) -> bool:
    """Whether the serf at `rpc_port` lists `count` alive members."""
    out = subprocess.run(
        ["serf", "members", f"-rpc-addr=127.0.0.1:{rpc_port}", "-status=alive"],
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout
    return len(out.splitlines()) == count


def start_serf(
    ip: str, name: str, join: str | None = None
) -> tuple[subprocess.Popen[bytes], int, str]:
    """A bare serf agent; returns it, its RPC port and its gossip address."""
    rpc = free_port("127.0.0.1")
    bind = f"{ip}:{free_port(ip)}"
    argv = ["serf", "agent", f"-node={name}", f"-bind={bind}", f"-rpc-addr=127.0.0.1:{rpc}"]
    argv += [f"-join={join}"] if join else []
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return proc, rpc, bind


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait(10)


def serf_once() -> float:
    """Reference: bare `serf agent` until its RPC port accepts connections."""
    cluster = Cluster(Path("."))  # only for a fresh 127.x.y address
    start = time.monotonic()
    proc, rpc, _ = start_serf(f"{cluster.net}.1", "ref")
    try:
        return wait_until(lambda: serf_rpc_up(rpc), proc) - start
    finally:
        stop_all([proc])


def serf_join_once() -> float:
    """Reference: three bare serf agents, the same order as join_once."""
    net = Cluster(Path(".")).net
    start = time.monotonic()
    first, rpc1, addr1 = start_serf(f"{net}.1", "ref1")
    procs = [first]
    try:
        wait_until(lambda: serf_rpc_up(rpc1), first)
        others = [start_serf(f"{net}.{i}", f"ref{i}", addr1) for i in (2, 3)]
        procs += [p for p, _, _ in others]
        rpcs = [rpc1] + [r for _, r, _ in others]
        done = max(wait_until(partial(serf_members_alive, r, 3)) for r in rpcs)
        return done - start
    finally:
        stop_all(procs)


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):7.3f}  ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    dev, first, join, ref, ref_join = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="gossamer-bench-") as tmp:
        for i in range(args.rounds):
            dev.append(dev_once(Path(tmp) / f"dev{i}"))
            ref.append(serf_once())
            f, j = join_once(Path(tmp) / f"join{i}")
            first.append(f)
            join.append(j)
            ref_join.append(serf_join_once())
    print(f"startup, median of {args.rounds} (min-max), seconds")
    print(f"{'measure':44} {'gossamer':>26} {'bare serf':>26} {'ratio':>6}")
    rows = [
        ("--dev: start → ready", dev, ref),
        ("3-agent join: first start → all see 3 alive", join, ref_join),
    ]
    for label, ours, theirs in rows:
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"{label:44} {fmt(ours):>26} {fmt(theirs):>26} {ratio:6.1f}")
    print(f"{'3-agent join: first agent ready':44} {fmt(first):>26}")
    print("bare serf: --dev row = RPC port accepting; join row = `serf members` shows 3 alive")


if __name__ == "__main__":
    main()
