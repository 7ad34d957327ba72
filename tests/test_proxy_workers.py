"""`connect proxy --workers N`: one sidecar served by N processes on a real agent.

`db`'s sidecar runs two workers, `web`'s one. Checked with real sockets:
connections spread over both workers and every one round-trips; the
metrics port (worker 0) serves the sum of both workers' counts; a deny cuts
open connections in every worker; a worker killed is started again while
traffic keeps flowing; SIGTERM drains every worker and exits 0; a worker 0
killed outright takes the others with it. The pure sum (fleet_sum.py) and
the flag's checks have table tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import urllib.request
from pathlib import Path

import pytest

from gossamer.agent.cli.client import UsageError
from gossamer.agent.cli.connect import worker_count
from gossamer.proxy import tally
from gossamer.proxy.edge_metrics import EdgeMetrics, stats_json
from gossamer.proxy.fleet_sum import Remembered, Snapshot, snapshot, summed
from gossamer.proxy.metrics_families import families
from gossamer.proxy.prom_text import render
from tests.harness.cluster import Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    register_pair,
    roundtrip,
    set_intention,
    wait_listening,
)
from tests.test_proxy_metrics import Conn


def _worker_figures(opened: int, open_now: int, requests: int) -> tuple[EdgeMetrics, tally.Tally]:
    metrics, counts = EdgeMetrics("db"), tally.Tally()
    edge = metrics.inbound("web")
    for i in range(opened):
        conn = Conn(10, 100)
        edge.connected(conn, 0.002)
        if i >= open_now:
            edge.disconnected(conn, 1.5)
    for _ in range(requests):
        edge.answered(200, 0.003, "/api")
    edge.answered(503, 0.2, "/api")
    edge.allowed += opened
    counts.add("inbound.allowed", opened)
    counts.refuse("inbound", tally.DENIED, "10.0.0.9", 0)
    return metrics, counts


def test_the_sum_of_two_workers_is_every_count_added() -> None:
    a, b = _worker_figures(5, 2, 7), _worker_figures(3, 1, 4)
    ((metrics, counts),) = summed([a], [[snapshot(b)]])
    edge = metrics.edges[("inbound", "web", "db")]
    assert (edge.opened, edge.closed, len(edge.live), edge.allowed) == (8, 5, 3, 8)
    assert edge.bytes_each_way() == (80, 800)  # open connections' bytes counted once
    assert edge.setup.count == 8 and edge.duration.count == 5
    route = edge.routes["/api"]
    assert route.requests == 13 and route.by_class() == {"2xx": 11, "5xx": 2}
    assert route.latency.total == pytest.approx(11 * 0.003 + 2 * 0.2)
    assert counts.counts["inbound.allowed"] == 8
    assert counts.counts[f"inbound.refused.{tally.DENIED}"] == 2
    text = render(families([(metrics, counts)], 0.0))
    assert 'gossamer_proxy_tcp_open_connections{direction="inbound",source="web",' \
           'destination="db"} 3' in text  # fmt: skip
    assert stats_json(metrics, 1.0)["Edges"][0]["Opened"] == 8


def test_the_sum_keeps_worker_0s_proxies_and_refuses_other_buckets() -> None:
    a = _worker_figures(1, 0, 1)
    other = snapshot((EdgeMetrics("cache"), tally.Tally()))  # a proxy worker 0 does not serve
    assert [m.service for m, _ in summed([a], [[other], []])] == ["db"]
    odd = snapshot(_worker_figures(1, 0, 1))
    odd["Stats"]["Edges"][0]["Setup"]["Bounds"] = [1.0]
    with pytest.raises(ValueError, match="bounds"):
        summed([a], [[odd]])


def test_a_sum_never_goes_back_when_a_worker_misses_a_scrape_or_restarts() -> None:
    """Prometheus reads a counter that goes down as a reset and counts the whole total
    again: a worker that does not answer in time stands in with its last figures; one that
    exited keeps what it had counted in the sum (with none of its connections open), and
    its new process's figures add to that."""
    own, memory = _worker_figures(5, 2, 7), Remembered()

    def total(*answers: tuple[int, list[Snapshot] | None]) -> tuple[int, int, int]:
        theirs = [memory.answered(worker, "a", answer) for worker, answer in answers]
        ((metrics, counts),) = summed([own], [*theirs, memory.gone("a")])
        edge = metrics.edges[("inbound", "web", "db")]
        return edge.routes["/api"].requests, counts.counts["inbound.allowed"], len(edge.live)

    first = total((1, [snapshot(_worker_figures(3, 1, 4))]))
    assert first == (13, 8, 3)  # (8 + 5 requests, 5 + 3 allowed, 2 + 1 open)
    assert total((1, None)) == first  # worker 1 missed this scrape: its last figures
    memory.ended(1)  # worker 1 exited; its new process has counted nothing yet
    assert total() == (first[0], first[1], 2)  # only worker 0's 2 open connections now
    assert total((1, [snapshot(_worker_figures(1, 0, 1))])) == (first[0] + 2, 9, 2)


@pytest.mark.parametrize("text", ["0", "65", "-1", "two", ""])
def test_a_bad_workers_flag_is_refused_naming_it(text: str) -> None:
    with pytest.raises(UsageError, match="--workers"):
        worker_count(text)


def test_workers_auto_counts_the_cpus_it_may_use() -> None:
    assert 1 <= worker_count("auto") <= min(len(os.sched_getaffinity(0)), 64)  # and the quota
    assert worker_count("3") == 3


def _pids(proxy: ProxyProc) -> dict[int, int]:
    """Worker index -> pid of the last start of each, from worker 0's log."""
    return {int(i): int(p) for i, p in re.findall(r"worker (\d+) started, pid (\d+)", proxy.log())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose: only its parent's wait is left
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _stop_cleanly(*proxies: ProxyProc) -> None:
    """SIGTERM each proxy: it exits 0 and leaves no worker behind."""
    workers = [pid for proxy in proxies for pid in _pids(proxy).values()]
    for proxy in proxies:
        proxy.signal(signal.SIGTERM)
        assert proxy.proc is not None and proxy.proc.wait(30) == 0
    assert not [p for p in workers if _alive(p)]


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, f"{name} not in the scrape"
    return float(found.group(1))


def _counted(proxy: ProxyProc, service: str, counter: str) -> dict[str, int]:
    """Worker -> its `counter` from the SIGUSR1 lines of its log (the last line of each)."""
    pattern = rf"\[worker (\d)\] .*counters for {service}:.*\b{re.escape(counter)}=(\d+)"
    return {w: int(n) for w, n in re.findall(pattern, proxy.log())}


def _both_counted(proxy: ProxyProc, service: str, counter: str) -> dict[str, int]:
    """SIGUSR1 to worker 0, which passes it on (each worker logs its own counters): both
    workers' `counter`, or {} until both logged it. Sent again on each try: a worker that
    started under SETTLING_S ago is not passed signals yet (workers.py)."""
    proxy.signal(signal.SIGUSR1)
    counted = _counted(proxy, service, counter)
    return counted if len(counted) == 2 else {}


def test_two_workers_share_each_sidecar(cluster: Cluster, tmp_path: Path) -> None:
    (agent,) = cluster.start(1, prefix="wk")
    db_app = App("127.0.0.1").start()
    up_port, db_metrics, web_metrics = (free_port("127.0.0.1") for _ in range(3))
    db_in, _ = register_pair(agent, db_app.port, up_port)
    set_intention(agent, "web", "db", "allow")
    db = ProxyProc(["--sidecar-for", "db", "--http-addr", agent.http, "--workers", "2",
                    "--metrics-addr", f"127.0.0.1:{db_metrics}"],
                   tmp_path / "db.log").start()  # fmt: skip
    web = ProxyProc(["--sidecar-for", "web", "--http-addr", agent.http, "--workers", "2",
                     "--metrics-addr", f"127.0.0.1:{web_metrics}"],
                    tmp_path / "web.log").start()  # fmt: skip
    try:
        wait_listening(agent.ip, db_in, db)
        wait_listening("127.0.0.1", up_port, web)
        eventually(lambda: 1 in _pids(db) and 1 in _pids(web), 20, what="workers 1 started")
        # (its port open: connections made before that all go to worker 0)
        eventually(lambda: "[worker 1] proxy: running for web" in web.log(), 20,
                   what="web's worker 1 listening")  # fmt: skip
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        # each worker learns db's instance on its own: a run of new connections gets through
        eventually(lambda: all(roundtrip(("127.0.0.1", up_port), b"w") == b"w<eof>"
                               for _ in range(8)), 20,
                   what="web -> db through two workers each")  # fmt: skip
        for i in range(40):
            assert roundtrip(("127.0.0.1", up_port), b"%d" % i) == b"%d<eof>" % i
        # The kernel spreads the app's connections over web's workers...
        spread = eventually(lambda: _both_counted(web, "web", "outbound.connections"), 10,
                            interval=0.5,
                            what="both of web's workers to have relayed connections")  # fmt: skip
        assert sum(spread.values()) >= 41
        # ...and each metrics port serves the sum of its workers' figures.
        out = 'gossamer_proxy_tcp_open_total{direction="outbound",source="web",destination="db"}'
        assert _metric(web_metrics, out) == sum(spread.values())
        opened = 'gossamer_proxy_tcp_open_total{direction="inbound",source="web",destination="db"}'
        eventually(lambda: _metric(db_metrics, opened) == db_app.accepted, 10,
                   what="db's scrape to count every connection of both workers")  # fmt: skip
        assert db_app.accepted >= 41
        stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{web_metrics}/stats",
                                                  timeout=5).read())  # fmt: skip
        assert stats["Proxies"][0]["Edges"][0]["Opened"] == sum(spread.values())

        db.signal(signal.SIGHUP)  # passed on: each worker asks the agent again
        eventually(lambda: set(re.findall(r"\[worker (\d)\] proxy: SIGHUP", db.log()))
                   == {"0", "1"}, 10, what="both of db's workers to reload")  # fmt: skip

        held = [socket.create_connection(("127.0.0.1", up_port), timeout=10) for _ in range(12)]
        for n, s in enumerate(held):  # each one relayed end to end before the deny
            s.sendall(b"h%d" % n)
            assert s.recv(100) == b"h%d" % n
        set_intention(agent, "web", "db", "deny")
        for s in held:  # cut in whichever worker holds it
            s.settimeout(5)
            assert s.recv(100) == b""
            s.close()

        set_intention(agent, "web", "db", "allow")
        first = _pids(db)[1]
        os.kill(first, signal.SIGKILL)
        eventually(lambda: _pids(db).get(1, first) != first, 20, what="worker 1 started again")
        second = _pids(db)[1]
        db.signal(signal.SIGHUP)  # at once: worker 1 is still starting, its handlers not in
        eventually(lambda: len(re.findall(r"\[worker 0\] proxy: SIGHUP", db.log())) >= 2, 10,
                   what="worker 0 to reload again")  # fmt: skip
        eventually(lambda: roundtrip(("127.0.0.1", up_port), b"again") == b"again<eof>", 20,
                   what="traffic after the restart")  # fmt: skip
        assert f"worker 1 (pid {first}) exited with -9" in db.log()
        assert _pids(db).get(1) == second and f"(pid {second}) exited" not in db.log()

        _stop_cleanly(db, web)
    finally:
        web.stop()
        db.stop()
        db_app.stop()


def test_workers_do_not_outlive_worker_0(cluster: Cluster, tmp_path: Path) -> None:
    (agent,) = cluster.start(1, prefix="wo")
    db_app = App("127.0.0.1").start()
    db_in, _ = register_pair(agent, db_app.port, free_port("127.0.0.1"))
    db = ProxyProc(["--sidecar-for", "db", "--http-addr", agent.http, "--workers", "3"],
                   tmp_path / "db.log").start()  # fmt: skip
    try:
        wait_listening(agent.ip, db_in, db)
        pids = eventually(lambda: len(_pids(db)) == 2 and _pids(db), 20, what="workers 1 and 2")
        assert db.proc is not None
        db.proc.kill()
        db.proc.wait(5)
        eventually(lambda: not [p for p in pids.values() if _alive(p)], 20,
                   what="workers 1 and 2 to drain and exit")  # fmt: skip
        assert "worker 0 is gone: draining" in db.log()
    finally:
        db.stop()
        db_app.stop()


def test_a_node_proxy_runs_workers_too(cluster: Cluster, tmp_path: Path) -> None:
    (agent,) = cluster.start(1, prefix="wn")
    db_app = App("127.0.0.1").start()
    up_port, metrics_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    db_in, _ = register_pair(agent, db_app.port, up_port)
    agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db", "Port": db_app.port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip, "Proxy": {
            "Config": {"gossamer_metrics_bind_addr": f"127.0.0.1:{metrics_port}"}}}},
    })  # fmt: skip
    set_intention(agent, "web", "db", "allow")
    node = ProxyProc(["--node", "--http-addr", agent.http, "--workers", "2"],
                     tmp_path / "node.log").start()  # fmt: skip
    try:
        wait_listening(agent.ip, db_in, node)
        eventually(lambda: 1 in _pids(node), 20, what="worker 1 started")
        eventually(lambda: roundtrip(("127.0.0.1", up_port), b"n") == b"n<eof>", 30,
                   what="web -> db through the node proxy's workers")  # fmt: skip
        for i in range(30):
            assert roundtrip(("127.0.0.1", up_port), b"%d" % i) == b"%d<eof>" % i
        out = 'gossamer_proxy_tcp_open_total{direction="inbound",source="web",destination="db"}'
        eventually(lambda: _metric(metrics_port, out) == db_app.accepted, 10,
                   what="db's scrape to sum both workers")  # fmt: skip
        eventually(lambda: _both_counted(node, "web", "outbound.connections"), 10, interval=0.5,
                   what="both workers to have served web's upstream")  # fmt: skip
        _stop_cleanly(node)
    finally:
        node.stop()
        db_app.stop()


def test_a_second_proxy_with_workers_does_not_join_the_first_ones_port(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Two proxies run with `--workers`, given the same upstream port by mistake: the
    second's listeners do not join the first's SO_REUSEPORT group (each of its workers says
    so and tries again later), so every client of the port still goes out as web. Joined,
    about half went to api's proxy instead and out under api's identity (refused by db)."""
    (agent,) = cluster.start(1, prefix="wj")
    db_app = App("127.0.0.1").start()
    up_port = free_port("127.0.0.1")
    db_in, _ = register_pair(agent, db_app.port, up_port)
    agent.put("/v1/agent/service/register", {"Name": "api", "ID": "api", "Port": 2,
                                              "Address": agent.ip})  # fmt: skip
    set_intention(agent, "web", "db", "allow")
    set_intention(agent, "api", "db", "deny")
    db = ProxyProc(["--sidecar-for", "db", "--http-addr", agent.http],
                   tmp_path / "db.log").start()  # fmt: skip
    web = ProxyProc(["--sidecar-for", "web", "--http-addr", agent.http, "--workers", "2"],
                    tmp_path / "web.log").start()  # fmt: skip
    other = ProxyProc(["--service", "api", "--upstream", f"db:{up_port}", "--http-addr",
                       agent.http, "--workers", "2"], tmp_path / "other.log")  # fmt: skip
    try:
        wait_listening(agent.ip, db_in, db)
        wait_listening("127.0.0.1", up_port, web)
        eventually(lambda: 1 in _pids(web), 20, what="web's worker 1 started")
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        other.start()
        refused = r"\[worker {}\] .*cannot listen on .*not one of this proxy's workers"
        eventually(lambda: all(re.search(refused.format(w), other.log()) for w in (0, 1)), 30,
                   what="both of api's workers to refuse the port")  # fmt: skip
        for i in range(40):
            assert roundtrip(("127.0.0.1", up_port), b"%d" % i) == b"%d<eof>" % i
    finally:
        other.stop()
        web.stop()
        db.stop()
        db_app.stop()
