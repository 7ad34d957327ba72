"""Walkthrough of `connect proxy --workers N` as an operator runs it.

The flag is checked before anything else (exit 2 naming it, even with no
agent to reach); `auto` under a one-CPU affinity mask is 1. On a real agent
with `db`'s sidecar on two workers: connections held open on both workers
are counted exactly once in the one metrics port's open gauge and
histograms; SIGTERM to worker 0 lets every held connection finish, exits 0
and leaves no worker behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gossamer.proxy.cpu_budget import cpus_allowed
from gossamer.proxy.fleet_sum import Snapshot, snapshot, summed
from gossamer.proxy.workers import Workers, _Worker
from tests.harness.cli import cli_env
from tests.harness.cluster import Cluster, free_port
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    register_pair,
    roundtrip,
    series,
    set_intention,
    status_of,
    wait_listening,
    web_body,
)
from tests.test_proxy_workers import _alive, _both_counted, _pids, _worker_figures


class _Answering:
    """A worker's link that answers with `figures`; `on_ask` runs while the answer is on its
    way (the worker exits meanwhile)."""

    def __init__(self, figures: list[Snapshot], on_ask: Callable[[], None] = lambda: None):
        self.figures, self.on_ask = figures, on_ask

    async def ask(self, addr: str) -> list[Snapshot] | None:
        self.on_ask()
        await asyncio.sleep(0)
        return self.figures


def _requests_summed(workers: Workers) -> int:
    others = asyncio.run(workers.figures("m"))
    ((metrics, _),) = summed([_worker_figures(0, 0, 0)], others)
    return metrics.edges[("inbound", "web", "db")].routes["/api"].requests


def test_a_worker_that_exits_during_a_scrape_is_not_counted_twice() -> None:
    """Worker 1 answers a scrape and exits before the scrape is summed (worker 0 was still
    waiting for another worker): its last remembered figures went to the ended workers'
    share, and its answer was remembered as a running worker's too, so that scrape counted
    it twice and the next one went back down (a counter reset to Prometheus)."""
    workers = Workers([], 3)

    def run(index: int, asker: _Answering) -> None:
        workers.running[index] = _Worker(index, None, -1, asker, 0.0, 1.0)  # type: ignore[arg-type]

    def exits() -> None:  # what Workers._ended does for the figures
        workers.running.pop(1)
        workers.memory.ended(1)

    run(1, _Answering([snapshot(_worker_figures(2, 0, 5))]))
    first = _requests_summed(workers)  # 1 (worker 0's 503) + 6
    run(1, _Answering([snapshot(_worker_figures(2, 0, 9))], exits))
    second = _requests_summed(workers)
    third = _requests_summed(workers)  # worker 1 gone: what it had counted stays
    assert first <= second <= third, (first, second, third)
    assert second <= 1 + 10


def test_the_connections_of_a_worker_that_died_are_counted_closed() -> None:
    """Worker 1 dies (SIGKILL, OOM) holding 2 connections: the kernel closed them. The gauge
    drops them; the close total must count them too, or open minus closed (the leak alert
    an operator builds from the counters) stays 2 above the gauge for good."""
    workers = Workers([], 2)

    def exits() -> None:
        workers.running.pop(1)
        workers.memory.ended(1)

    asker = _Answering([snapshot(_worker_figures(5, 2, 0))])
    workers.running[1] = _Worker(1, None, -1, asker, 0.0, 1.0)  # type: ignore[arg-type]
    asyncio.run(workers.figures("m"))
    exits()
    ((metrics, _),) = summed([_worker_figures(3, 1, 0)], asyncio.run(workers.figures("m")))
    edge = metrics.edges[("inbound", "web", "db")]
    assert (edge.opened, len(edge.live)) == (8, 1)
    assert edge.opened - edge.closed == len(edge.live)


@pytest.mark.parametrize("text", ["0", "65", "abc"])
def test_a_bad_workers_flag_exits_2_before_the_agent_is_asked(text: str) -> None:
    """No agent listens at the address: the flag is still what the operator hears about."""
    argv = [sys.executable, "-m", "gossamer.agent", "connect", "proxy", "--service", "web",
            "--http-addr", f"127.0.0.1:{free_port('127.0.0.1')}", "--workers", text]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=cli_env(), timeout=30)
    assert done.returncode == 2, done.stderr
    assert "--workers" in done.stderr


@pytest.mark.parametrize(
    ("proc", "files"),
    [("0::/kubepods/burstable/pod1/c1\n", {"cgroup.controllers": "cpu\n",
                                            "cpu.max": "50000 100000\n"}),
     ("4:cpu,cpuacct:/kubepods/burstable/pod1/c1\n",
      {"cpu,cpuacct/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})],
)  # fmt: skip
def test_auto_reads_a_containers_quota_where_its_cgroup_is_mounted(
    tmp_path: Path, proc: str, files: dict[str, str]
) -> None:
    """A container that sees the host's cgroup names (/proc/self/cgroup says
    /kubepods/...: cgroup v1, or v2 without a cgroup namespace) has its own cgroup mounted at
    /sys/fs/cgroup itself, where no /kubepods/... directory is: the quota there (a 0.5 CPU
    limit) was not found, and `auto` ran a worker per CPU of the node."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "proc-cgroup").write_text(proc)
    assert cpus_allowed(str(tmp_path), str(tmp_path / "proc-cgroup")) == 1


def test_workers_auto_is_one_under_a_one_cpu_mask() -> None:
    code = "from gossamer.proxy.cpu_budget import worker_count; print(worker_count('auto', 'x'))"
    done = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code],
                          capture_output=True, text=True, env=cli_env(), timeout=30)  # fmt: skip
    assert done.stdout.strip() == "1", done.stderr


def _open_gauge(addr: str) -> float:
    return series(addr, "gossamer_proxy_tcp_open_connections", direction="inbound",
                  source="web", destination="db")  # fmt: skip


def test_connections_open_on_both_workers_are_summed_and_drained(
    cluster: Cluster, tmp_path: Path
) -> None:
    (agent,) = cluster.start(1, prefix="ww")
    db_app = App("127.0.0.1").start()
    up_port, db_metrics = free_port("127.0.0.1"), free_port("127.0.0.1")
    db_in, _ = register_pair(agent, db_app.port, up_port)
    set_intention(agent, "web", "db", "allow")
    maddr = f"127.0.0.1:{db_metrics}"
    db = ProxyProc(["--sidecar-for", "db", "--http-addr", agent.http, "--workers", "2",
                    "--metrics-addr", maddr], tmp_path / "db.log").start()  # fmt: skip
    web = ProxyProc(["--sidecar-for", "web", "--http-addr", agent.http, "--workers", "2"],
                    tmp_path / "web.log").start()  # fmt: skip
    try:
        wait_listening(agent.ip, db_in, db)
        wait_listening("127.0.0.1", up_port, web)
        eventually(lambda: 1 in _pids(db) and 1 in _pids(web), 20, what="workers 1 started")
        # (its port open: connections made before that all go to worker 0, and none after)
        eventually(lambda: "[worker 1] proxy: running for web" in web.log(), 20,
                   what="web's worker 1 listening")  # fmt: skip
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        # (each worker hears of db's instance by a watch of its own: 8 in a row reach both)
        eventually(lambda: all(roundtrip(("127.0.0.1", up_port), b"w") == b"w<eof>"
                               for _ in range(8)), 20,
                   what="web -> db through both workers")  # fmt: skip
        for i in range(20):
            assert roundtrip(("127.0.0.1", up_port), b"%d" % i) == b"%d<eof>" % i
        eventually(lambda: _both_counted(web, "web", "outbound.connections"), 10, interval=0.5,
                   what="both of web's workers to have relayed connections")  # fmt: skip
        held = [socket.create_connection(("127.0.0.1", up_port), timeout=10) for _ in range(16)]
        for n, s in enumerate(held):
            s.sendall(b"h%d" % n)
            assert s.recv(100) == b"h%d" % n
        eventually(lambda: _open_gauge(maddr) == len(held), 10, what="the open gauge summed")
        opened = series(maddr, "gossamer_proxy_tcp_open_total", direction="inbound",
                        source="web", destination="db")  # fmt: skip
        assert opened == db_app.accepted >= 21 + len(held)  # (a first try may add one)
        done = series(maddr, "gossamer_proxy_tcp_close_total", direction="inbound",
                      source="web", destination="db")  # fmt: skip
        assert done == db_app.accepted - len(held)
        setups = series(maddr, "gossamer_proxy_tcp_connect_seconds_count", direction="inbound",
                        source="web", destination="db")  # fmt: skip
        durations = series(maddr, "gossamer_proxy_tcp_connection_duration_seconds_count",
                           direction="inbound", source="web", destination="db")  # fmt: skip
        assert (setups, durations) == (opened, done)

        # A root rotation: every worker of both proxies takes a new leaf and serves on.
        def leaves(proxy: ProxyProc, name: str, worker: int) -> int:
            return len(re.findall(rf"\[worker {worker}\] proxy: identity for {name},",
                                  proxy.log()))  # fmt: skip

        proxies = {"db": db, "web": web}
        before = {(n, w): leaves(p, n, w) for n, p in proxies.items() for w in (0, 1)}
        agent.put("/v1/connect/ca/configuration", {"Provider": "consul", "ForceRotate": True})
        eventually(lambda: all(leaves(proxies[n], n, w) > k for (n, w), k in before.items()),
                   30, what="every worker of both proxies to take a new leaf")  # fmt: skip
        for i in range(10):
            assert roundtrip(("127.0.0.1", up_port), b"r%d" % i) == b"r%d<eof>" % i

        # A deny cuts open connections in every worker within a second.
        doomed = held + [socket.create_connection(("127.0.0.1", up_port), timeout=10)
                         for _ in range(12)]  # fmt: skip
        for n, s in enumerate(doomed[len(held) :]):
            s.sendall(b"x%d" % n)
            assert s.recv(100) == b"x%d" % n
        set_intention(agent, "web", "db", "deny")
        denied_at = time.monotonic()
        for s in doomed:
            s.settimeout(2)
            assert s.recv(100) == b""
            s.close()
        assert time.monotonic() - denied_at < 1.0
        set_intention(agent, "web", "db", "allow")
        eventually(lambda: roundtrip(("127.0.0.1", up_port), b"a") == b"a<eof>", 10,
                   what="allowed again")  # fmt: skip
        again = [socket.create_connection(("127.0.0.1", up_port), timeout=10)
                 for _ in range(12)]  # fmt: skip
        for n, s in enumerate(again):
            s.sendall(b"h%d" % n)
            assert s.recv(100) == b"h%d" % n
        held = again  # (those open before the deny were cut with the others)

        pids = [*_pids(db).values(), *_pids(web).values()]
        db.signal(signal.SIGTERM)
        web.signal(signal.SIGTERM)
        for n, s in enumerate(held):  # each still relays while both proxies drain
            s.sendall(b"d%d" % n)
            assert s.recv(100) == b"d%d" % n
            s.shutdown(socket.SHUT_WR)
            assert s.recv(100) == b"<eof>"
            s.close()
        assert db.proc is not None and web.proc is not None
        assert db.proc.wait(30) == 0 and web.proc.wait(30) == 0
        eventually(lambda: not [p for p in pids if _alive(p)], 10, what="no worker left")
    finally:
        web.stop()
        db.stop()
        db_app.stop()


def _stat_rows(agent_http: str) -> list[dict[str, object]]:
    argv = [sys.executable, "-m", "gossamer.agent", "stat", "--json", "--http-addr", agent_http]
    done = subprocess.run(argv, capture_output=True, text=True, env=cli_env(), timeout=30)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


def test_http_requests_through_two_workers_each_are_summed_exactly(
    cluster: Cluster, tmp_path: Path
) -> None:
    """db speaks http on two workers; web's http upstream (pooled mTLS) on two workers. Each
    request on a connection of its own, so the kernel spreads them: every metrics port and
    `gossamer stat` count each request once, histograms included."""
    (agent,) = cluster.start(1, prefix="wh")
    eventually(agent.enrolled, 20, what="the agent's certificate")
    app = HttpApp().start()
    up_port, db_in, web_in = free_port("127.0.0.1"), free_port(agent.ip), free_port(agent.ip)
    db_m, web_m = f"127.0.0.1:{free_port('127.0.0.1')}", f"127.0.0.1:{free_port('127.0.0.1')}"
    agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db", "Port": app.port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip, "Proxy": {
            "Config": {"protocol": "http", "gossamer_metrics_bind_addr": db_m}}}},
    })  # fmt: skip
    body = web_body(agent, web_in, [{"DestinationName": "db", "LocalBindPort": up_port,
                                     "Config": {"protocol": "http"}}])  # fmt: skip
    body["Connect"]["SidecarService"]["Proxy"]["Config"] = {  # type: ignore[index]
        "gossamer_metrics_bind_addr": web_m
    }
    agent.put("/v1/agent/service/register", body)
    set_intention(agent, "web", "db", "allow")
    db = ProxyProc(["--sidecar-for", "db", "--http-addr", agent.http, "--workers", "2"],
                   tmp_path / "db.log").start()  # fmt: skip
    web = ProxyProc(["--sidecar-for", "web", "--http-addr", agent.http, "--workers", "2"],
                    tmp_path / "web.log").start()  # fmt: skip

    try:
        wait_listening(agent.ip, db_in, db)
        wait_listening("127.0.0.1", up_port, web)
        eventually(lambda: 1 in _pids(db) and 1 in _pids(web), 20, what="workers 1 started")
        eventually(lambda: "[worker 1] proxy: running for web" in web.log(), 20,
                   what="web's worker 1 listening")  # fmt: skip
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        # Each web worker learns db's instance on its own: until both have, a request may be
        # answered 503 by web (counted on web's edge, never reaching db).
        unserved: list[int] = []

        def warm() -> bool:
            statuses = [status_of(up_port, "GET", "/echo/warm") for _ in range(8)]
            unserved.extend(s for s in statuses if s != 200)
            return all(s == 200 for s in statuses)

        eventually(warm, 20, what="requests through both workers")
        for i in range(40):
            assert status_of(up_port, "GET", f"/echo/{i}") == 200
        sent = len([line for line in app.seen if "/echo/" in line])
        for addr, direction in ((db_m, "inbound"), (web_m, "outbound")):
            labels = {"direction": direction, "source": "web", "destination": "db"}
            requests = series(addr, "gossamer_proxy_request_total", **labels)
            answered = series(addr, "gossamer_proxy_response_total", **labels)
            latency = series(addr, "gossamer_proxy_response_latency_seconds_count", **labels)
            inf = series(addr, "gossamer_proxy_response_latency_seconds_bucket", le="+Inf",
                         **labels)  # fmt: skip
            counted = sent + (len(unserved) if direction == "outbound" else 0)
            assert requests == answered == latency == inf == counted, (addr, direction)
        rows = {r["direction"]: r for r in _stat_rows(agent.http)}
        assert rows["inbound"]["requests"] == rows["outbound"]["requests"] - len(unserved) == sent
        assert rows["inbound"]["successes"] == rows["outbound"]["successes"] == sent
        gauge = series(db_m, "gossamer_proxy_tcp_open_connections", direction="inbound")
        assert rows["inbound"]["open"] == gauge >= 1  # web's pooled mTLS connections

        # A db worker stalled (a long GC pause, a CPU hog): `gossamer stat` still reads db,
        # its figures standing in (the agent gives a sidecar 2 s to answer).
        stalled = _pids(db)[1]
        os.kill(stalled, signal.SIGSTOP)
        try:
            rows = {r["direction"]: r for r in _stat_rows(agent.http)}
        finally:
            os.kill(stalled, signal.SIGCONT)
        assert rows["inbound"]["requests"] == sent, rows

        # A second db sidecar on two workers started by mistake: refused, never sharing.
        second = ProxyProc(["--sidecar-for", "db", "--http-addr", agent.http, "--workers", "2"],
                           tmp_path / "db2.log").start()  # fmt: skip
        assert second.proc is not None
        assert second.proc.wait(30) == 1
        assert "inbound" in second.log() and "not one of this proxy's workers" in second.log()
        assert not re.search(r"worker \d+ started", second.log())
        # A worker of web killed outright: the port serves on meanwhile, and it comes back.
        first = _pids(web)[1]
        os.kill(first, signal.SIGKILL)
        eventually(lambda: not _alive(first), 10, what="web's worker 1 dead")
        for i in range(30):
            assert status_of(up_port, "GET", f"/echo/k{i}") == 200
        eventually(lambda: _pids(web)[1] != first, 20, what="web's worker 1 started again")
        # Its counts up to its death stay in the sums (scraped above, nothing sent since).
        sent = len([line for line in app.seen if "/echo/" in line])
        for addr, direction in ((db_m, "inbound"), (web_m, "outbound")):
            labels = {"direction": direction, "source": "web", "destination": "db"}
            counted = sent + (len(unserved) if direction == "outbound" else 0)
            assert series(addr, "gossamer_proxy_request_total", **labels) == counted, direction
    finally:
        web.stop()
        db.stop()
        app.stop()


def test_a_wedged_worker_does_not_hold_worker_0_past_the_drain(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Worker 1 stopped (SIGSTOP: as a worker wedged in a call that never returns) when
    worker 0 gets SIGTERM: worker 0 used to wait for it forever, so the process systemd or
    Nomad watches never exited on its own. Now it kills the worker 10 s past the drain
    timeout and exits 1 (not every worker drained), leaving no worker behind."""
    (agent,) = cluster.start(1, prefix="wg")
    db_app = App("127.0.0.1").start()
    db_in, _ = register_pair(agent, db_app.port, free_port("127.0.0.1"))
    db = ProxyProc(["--sidecar-for", "db", "--http-addr", agent.http, "--workers", "2",
                    "--drain-timeout", "1"], tmp_path / "db.log").start()  # fmt: skip
    wedged = 0
    try:
        wait_listening(agent.ip, db_in, db)
        eventually(lambda: re.search(r"\[worker 1\] proxy: running for db", db.log()), 20,
                   what="worker 1 running")  # fmt: skip
        wedged = _pids(db)[1]
        os.kill(wedged, signal.SIGSTOP)
        db.signal(signal.SIGTERM)
        assert db.proc is not None
        assert db.proc.wait(20) == 1
        assert not _alive(wedged)
        assert f"worker(s) [{wedged}] still running 11 s after SIGTERM: killing them" in db.log()
    finally:
        if wedged and _alive(wedged):
            os.kill(wedged, signal.SIGKILL)
        db.stop()
        db_app.stop()
