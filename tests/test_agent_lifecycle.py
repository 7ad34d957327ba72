"""Start-up failures, systemd notification, SIGHUP reload, config errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.harness.cli import gossamer
from tests.harness.cluster import Cluster
from tests.harness.poll import eventually, eventually_async


def run_agent(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return gossamer("agent", *args, timeout=timeout)


def test_second_agent_on_same_data_dir_exits_1_with_one_line(cluster: Cluster) -> None:
    a = cluster.new_agent("first").start()
    b = cluster.new_agent("second")
    b.data_dir = a.data_dir
    b.start(wait=False)
    assert b.wait_exit() == 1
    errors = [line for line in b.log_tail().splitlines() if "[ERROR]" in line]
    assert len(errors) == 1
    assert f"data dir {a.data_dir} is in use by another gossamer agent" in errors[0]
    assert a.members()["first"] == 1


@pytest.mark.parametrize("which", ["http_port", "rpc_port", "serf_port"])
def test_port_taken_exits_1(cluster: Cluster, which: str) -> None:
    agent = cluster.new_agent("porty")
    with socket.socket() as blocker:
        blocker.bind((agent.ip, getattr(agent, which)))
        blocker.listen()
        agent.start(wait=False)
        assert agent.wait_exit() == 1
    text = agent.log_tail()
    assert "address already in use" in text
    assert f"{agent.ip}:{getattr(agent, which)}" in text
    assert not agent.serf_pids()


def test_systemd_notifications_over_a_real_datagram_socket(
    cluster: Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)
    try:
        agent = cluster.new_agent("sd")
        agent.env = {**os.environ, "NOTIFY_SOCKET": str(path)}
        agent.start(wait=False)
        messages = []
        while not any("READY=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        assert any(m.startswith("READY=1") and "STATUS=node sd" in m for m in messages)
        agent.signal(signal.SIGHUP)
        reload_msgs = [sock.recv(4096).decode(), sock.recv(4096).decode()]
        assert reload_msgs[0].startswith("RELOADING=1") and "MONOTONIC_USEC=" in reload_msgs[0]
        assert reload_msgs[1].startswith("READY=1")
        agent.signal(signal.SIGTERM)
        assert sock.recv(4096).decode().startswith("STOPPING=1")
        assert agent.wait_exit() == 0
    finally:
        sock.close()


def test_sighup_applies_a_good_config_and_keeps_running_on_a_bad_one(cluster: Cluster) -> None:
    conf = cluster.root / "hup.yaml"
    conf.write_text("log_level: info\n")
    agent = cluster.new_agent("hup", "--config-file", str(conf))
    agent.log_level = None
    agent.start()
    assert agent.get("/v1/agent/self")["DebugConfig"]["LogLevel"] == "INFO"

    conf.write_text("log_level: debug\n")
    agent.signal(signal.SIGHUP)
    eventually(
        lambda: agent.get("/v1/agent/self")["DebugConfig"]["LogLevel"] == "DEBUG",
        10,
        what="log level reloaded",
    )
    assert 'log_level: "info" -> "debug"' in agent.log_tail(400)

    conf.write_text("log_level: loud\nhtp_port: 1\n")
    agent.signal(signal.SIGHUP)
    eventually(lambda: "reload rejected" in agent.log_tail(400), 10, what="reload rejected")
    tail = agent.log_tail(400)
    assert f"{conf}: log_level" in tail and 'did you mean "http_port"' in tail
    assert agent.get("/v1/agent/self")["DebugConfig"]["LogLevel"] == "DEBUG"
    assert agent.proc is not None and agent.proc.poll() is None


BAD_CONFIGS = [
    ("htp_port: 8500\n", ["htp_port", 'did you mean "http_port"']),
    ("http_port: eighty\n", ["http_port"]),
    ("bind: 10.0.0.300\n", ["bind", "10.0.0.300"]),
    ("serf_port: 70000\n", ["serf_port", "65535"]),
    ("encrypt: bm90LWEta2V5\n", ["encrypt"]),
    ("http_port: [1\n", ["line"]),
    ("- just\n- a list\n", ["mapping"]),
]


@pytest.mark.parametrize(("text", "needles"), BAD_CONFIGS)
def test_bad_config_exits_2_naming_file_and_key(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    conf = tmp_path / "bad.yaml"
    conf.write_text(text)
    result = run_agent("--dev", "--config-file", str(conf))
    assert result.returncode == 2, result.stderr
    assert str(conf) in result.stderr
    for needle in needles:
        assert needle in result.stderr
    assert "not started" in result.stderr


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    conf = tmp_path / "many.yaml"
    conf.write_text("http_port: 0\ndns_port: x\nnode_nmae: a\n")
    result = run_agent("--dev", "--config-file", str(conf))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "config error" in line]
    assert len(errors) == 3, result.stderr


def test_bad_flag_exits_2() -> None:
    result = run_agent("--dev", "--http-port", "99999")
    assert result.returncode == 2
    assert "--http-port" in result.stderr
    result = run_agent("--no-such-flag")
    assert result.returncode == 2


def test_sigterm_while_retry_join_waits_stops_cleanly(cluster: Cluster) -> None:
    agent = cluster.new_agent("waiter", "--retry-join", "127.0.0.1:9")
    agent.start(wait=False)
    eventually(lambda: "retrying in" in agent.log_tail(), 15, what="a failed join attempt")
    assert agent.get("/v1/agent/self")["Gossamer"]["Ready"] is False
    agent.signal(signal.SIGTERM)
    assert agent.wait_exit(15) == 0
    assert not agent.serf_pids()


def test_retry_join_gives_up_after_retry_max(cluster: Cluster, tmp_path: Path) -> None:
    conf = tmp_path / "retry.yaml"
    conf.write_text("retry_join: [127.0.0.1:9]\nretry_max: 2\nretry_interval: 1s\n")
    agent = cluster.new_agent("giveup", "--config-file", str(conf))
    agent.start(wait=False)
    assert agent.wait_exit(30) == 1
    assert "gave up after 2 attempts" in agent.log_tail()


def test_log_json_writes_one_object_per_line(cluster: Cluster) -> None:
    agent = cluster.new_agent("jsonlog", "--log-json").start()
    agent.stop()
    lines = agent.log_tail(200).splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records, agent.log_tail()
    assert all({"@timestamp", "@level", "@module", "@message"} <= set(r) for r in records)
    assert any("agent ready" in r["@message"] for r in records)


async def test_sigterm_answers_open_blocking_queries_and_exits_promptly(cluster: Cluster) -> None:
    import asyncio
    import time

    import aiohttp

    agent = cluster.new_agent("blocker").start()
    url = agent.http + "/v1/catalog/services"
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            index = r.headers["X-Consul-Index"]

        async def park() -> int:
            async with s.get(url, params={"index": index, "wait": "5m"}) as r:
                return r.status

        parked = [asyncio.create_task(park()) for _ in range(20)]

        async def all_parked() -> bool:
            async with s.get(agent.http + "/v1/agent/self") as r:
                return bool((await r.json())["Gossamer"]["BlockingQueries"] == 20)

        await eventually_async(all_parked, 10)
        assert not any(p.done() for p in parked)
        started = time.monotonic()
        agent.signal(signal.SIGTERM)
        statuses = await asyncio.wait_for(asyncio.gather(*parked), 10)
    assert statuses == [200] * 20
    assert await asyncio.to_thread(agent.wait_exit, 10) == 0
    assert time.monotonic() - started < 8


async def test_sigterm_answers_hash_blocking_queries_too(cluster: Cluster) -> None:
    """A hash-blocking query (`?hash=`, as every sidecar's watch of its registration) looked
    again after the release, found its hash unchanged and parked again, so each held the
    agent's stop for the HTTP server's shutdown timeout (7.2 s against 1.2 s, found by a
    walkthrough)."""
    import asyncio
    import time

    import aiohttp

    agent = cluster.new_agent("hasher").start()
    agent.put("/v1/agent/service/register", {"Name": "web", "ID": "web", "Port": 80})
    url = agent.http + "/v1/agent/service/web"
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            digest = r.headers["X-Consul-ContentHash"]

        async def park() -> int:
            async with s.get(url, params={"hash": digest, "wait": "5m"}) as r:
                return r.status

        parked = [asyncio.create_task(park()) for _ in range(5)]

        async def all_parked() -> bool:
            async with s.get(agent.http + "/v1/agent/self") as r:
                return bool((await r.json())["Gossamer"]["BlockingQueries"] == 5)

        await eventually_async(all_parked, 10)
        started = time.monotonic()
        agent.signal(signal.SIGTERM)
        statuses = await asyncio.wait_for(asyncio.gather(*parked), 10)
        assert statuses == [200] * 5
    assert await asyncio.to_thread(agent.wait_exit, 10) == 0
    assert time.monotonic() - started < 4
