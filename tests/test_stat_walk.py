"""`gossamer stat` and `top` walked as an operator: each case found by a walkthrough.

The agent is a stand-in on a real socket answering `/v1/agent/metrics/proxies`
with a sidecar's `/stats` as the agent gathers it (the figures from a real
EdgeMetrics); the CLI runs as a subprocess, `top` on a pseudo-terminal where
the case is a key typed into it.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shlex
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from gossamer.agent.http.proxy_stats_routes import on_this_host
from gossamer.proxy.edge_metrics import EdgeMetrics, stats_json
from tests.harness.cli import DOWN, cli_env, expect, gossamer
from tests.harness.cluster import free_port
from tests.harness.poll import eventually
from tests.harness.served_agent import Served
from tests.test_check_walk import StandIn


def _figures() -> EdgeMetrics:
    """web -> db over HTTP: 100 answers (one in four a 500) and 20 denials."""
    m = EdgeMetrics("db")
    edge = m.inbound("web")
    for i in range(100):
        edge.answered(500 if i % 4 == 0 else 200, 0.002 + 0.0001 * i, "/")
    edge.denied = 20
    return m


def _agent() -> StandIn:
    stats = json.loads(json.dumps({"StartTime": 0.0, "Proxies": [stats_json(_figures(), 100.0)]}))
    return StandIn({"/v1/agent/metrics/proxies": [{"ProxyID": "db-sidecar-proxy", "Stats": stats}]})


def test_stat_on_a_40_column_terminal_shows_each_figure_beside_its_name() -> None:
    """Found by the walkthrough: at COLUMNS=40 every cell folded into columns three
    characters wide ("inb/oun/d", "75./00%", header "DES/TIN/ATI/ON"): nothing could be read.
    Too narrow for the table, each edge is now a block of short lines."""
    agent = _agent()
    try:
        shown = expect("stat", "--http-addr", agent.address, env={"COLUMNS": "40"})
    finally:
        agent.close()
    lines = shown.splitlines()
    assert max(len(line) for line in lines) <= 40, shown
    assert "inbound web -> db (HTTP)" in lines, shown
    assert "  success 75.00%  rps 1.0" in lines, shown
    assert "  open 0  denied 20" in lines, shown
    assert any(line.startswith("  p50 ") and " p99 " in line for line in lines), shown


def _read_until(fd: int, wanted: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
    return seen


def _own_terminal() -> None:
    """In the child, in its own session: make stdin (the pty) its controlling terminal, with
    its process group in the foreground, as a shell runs a command."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


Terminal = tuple[int, int, subprocess.Popen[bytes], list[Any]]


@contextmanager
def _on_a_terminal(argv: list[str]) -> Iterator[Terminal]:
    """`argv` run as a shell runs a command in the foreground of a new terminal: (the
    terminal's side this test reads and types on, the command's side, the process, the
    terminal's settings before the command ran: its line mode). On the way out the command
    is killed if it still runs, and both sides of the terminal are closed."""
    main, side = pty.openpty()
    before = termios.tcgetattr(side)
    proc = subprocess.Popen(
        argv, stdin=side, stdout=side, stderr=side, env=cli_env(), close_fds=True,
        start_new_session=True, preexec_fn=_own_terminal,
    )  # fmt: skip
    try:
        yield main, side, proc, before
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(main)
        os.close(side)


def _quit_with_q(main: int, proc: subprocess.Popen[bytes]) -> None:
    """Type `q` on the terminal: top quits, exit 0."""
    os.write(main, b"q")
    eventually(lambda: proc.poll() is not None, 10, what="top to quit on q")
    assert proc.returncode == 0


def _top(agent: StandIn) -> list[str]:
    return [sys.executable, "-m", "gossamer.agent", "top", "--http-addr", agent.address,
            "--interval", "0.2"]  # fmt: skip


def _piped(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """`argv` with no terminal: stdin empty, stdout and stderr captured."""
    return subprocess.run(argv, capture_output=True, text=True, env=cli_env(), timeout=60,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def test_q_quits_top_on_a_terminal_and_gives_the_terminal_back() -> None:
    """Found by the walkthrough: `q` (how top, htop and `linkerd viz top` quit) did nothing:
    only Ctrl-C ended `top`, and each key typed was echoed over the table."""
    with closing(_agent()) as agent, _on_a_terminal(_top(agent)) as (main, side, proc, before):
        shown = _read_until(main, b"q or Ctrl-C quits", 20)
        assert b"q or Ctrl-C quits" in shown, shown
        _quit_with_q(main, proc)
        after = termios.tcgetattr(side)
        assert after[3] & (termios.ICANON | termios.ECHO) == before[3] & (
            termios.ICANON | termios.ECHO
        ), "the terminal was left in cbreak mode"


def test_top_off_a_terminal_reads_no_key_and_says_ctrl_c() -> None:
    """stdin not a terminal (a pipe, a supervisor): no key is read, the title says Ctrl-C."""
    agent = _agent()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gossamer.agent", "top", "--http-addr", agent.address,
             "--interval", "0.2", "--iterations", "2"],
            input="q\n", capture_output=True, text=True, env=cli_env(), timeout=60,
        )  # fmt: skip
    finally:
        agent.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(Ctrl-C quits)") == 2, done.stdout


def test_top_goes_on_through_a_failed_reading() -> None:
    """Found by the walkthrough: one failed reading after the first (the agent restarting,
    an error answer) ended `top` with exit 1; linkerd's top and Unix top carry on."""
    replies = iter([(200, b"[]"), (200, b"[]"), (500, b"oops")])
    agent = StandIn({"/v1/agent/metrics/proxies": lambda: next(replies, (200, b"[]"))})
    try:
        done = _piped([*_top(agent), "--iterations", "3"])
    finally:
        agent.close()
    assert done.returncode == 0, done.stderr
    assert "not read: oops (HTTP 500); trying again in 0.2 s" in done.stdout, done.stdout
    assert done.stdout.count("No sidecar proxy registered on this agent.") == 2, done.stdout


async def test_a_sidecar_that_is_not_running_is_named_with_a_plain_reason(served: Served) -> None:
    """Found by the walkthrough: a dead sidecar's line under `gossamer stat` read
    "Cannot connect to host 127.0.0.1:PORT ssl:default [Connect call failed (...)]": aiohttp's
    words, with an `ssl:default` that is no part of a plain HTTP read."""
    addr = f"127.0.0.1:{free_port('127.0.0.1')}"  # a port nothing listens on
    served.local.register_service({
        "Kind": "connect-proxy", "ID": "db-sidecar-proxy", "Name": "db-sidecar-proxy",
        "Port": 21000, "Proxy": {"DestinationServiceName": "db",
                                 "Config": {"gossamer_metrics_bind_addr": addr}},
    })  # fmt: skip
    status, body = await served.call("GET", "/v1/agent/metrics/proxies")
    assert status == 200, body
    (entry,) = json.loads(body)
    assert entry["Error"] == f"{addr}: Connection refused (is the proxy running?)", entry


@pytest.mark.parametrize("addr", ["192.0.2.7:9102", "[2001:db8::7]:9102", "8.8.8.8:53"])
async def test_a_metrics_address_of_another_host_is_not_asked(served: Served, addr: str) -> None:
    """A registration may name any metrics address (`service:write` is all it takes); the
    agent dialed each one for every reader of the route, a probe of the network from the
    agent's place in it ("refused", "no answer", "HTTP 404" told which ports answer). A
    sidecar's listener is bound on this host, so only this host's addresses are asked."""
    served.local.register_service({
        "Kind": "connect-proxy", "ID": "db-sidecar-proxy", "Name": "db-sidecar-proxy",
        "Port": 21000, "Proxy": {"DestinationServiceName": "db",
                                 "Config": {"gossamer_metrics_bind_addr": addr}},
    })  # fmt: skip
    started = time.monotonic()
    status, body = await served.call("GET", "/v1/agent/metrics/proxies")
    assert status == 200, body
    (entry,) = json.loads(body)
    assert entry["Error"] == f"{addr} is not an address of this host: not asked", entry
    assert time.monotonic() - started < 1.0  # (nothing dialed: no 2 s timeout waited out)


def test_only_this_hosts_addresses_are_on_this_host() -> None:
    assert on_this_host("127.0.0.1") and on_this_host("127.9.9.9")  # (all of 127/8 is lo)
    assert not on_this_host("192.0.2.7") and not on_this_host("203.0.113.1")


def test_top_with_a_stuck_agent_says_so_within_seconds() -> None:
    """Found by the walkthrough: an agent that stopped answering held `top` for the CLI's
    30 s a request, its frame frozen and `q` unread; it now says so after 5 s and goes on."""
    replies = iter([(200, b"[]")])

    def answer() -> tuple[int, bytes]:
        found = next(replies, None)
        if found is None:
            time.sleep(30)  # stuck (a daemon thread of the stand-in: not waited for)
            return 200, b"[]"
        return found

    agent = StandIn({"/v1/agent/metrics/proxies": answer})
    started = time.monotonic()
    try:
        done = _piped([*_top(agent), "--iterations", "1"])
    finally:
        agent.close()
    assert done.returncode == 0, done.stderr
    assert "timed out" in done.stdout, done.stdout
    assert time.monotonic() - started < 15


def test_stat_with_a_stuck_agent_says_so_within_seconds() -> None:
    """Found by the outage walk: `stat` against an agent that took the connection and said
    nothing waited the CLI's 30 s and then said only "timed out"; it now gives up after
    5 s, as `top` and `check` do, and says what to suspect."""

    def answer() -> tuple[int, bytes]:
        time.sleep(30)  # stuck (a daemon thread of the stand-in: not waited for)
        return 200, b"[]"

    agent = StandIn({"/v1/agent/metrics/proxies": answer})
    started = time.monotonic()
    try:
        done = _piped([sys.executable, "-m", "gossamer.agent", "stat", "--http-addr",
                       agent.address])  # fmt: skip
    finally:
        agent.close()
    took = time.monotonic() - started
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "no answer within 5 s (timed out: a stopped or stuck agent?)" in done.stderr, done.stderr
    assert took < 15, took


@pytest.mark.parametrize(
    "args",
    [("stat", "--window", "nan"), ("stat", "--window", "inf"), ("stat", "--window", "-1"),
     ("top", "--interval", "inf"), ("top", "--interval", "nan"), ("top", "--iterations", "-1")],
)  # fmt: skip
def test_seconds_and_counts_out_of_range_are_usage_errors(args: tuple[str, ...]) -> None:
    """Found by the walkthrough: `--window nan` ran as no window at all, `--window inf` was an
    OverflowError traceback, `top --iterations -1` showed no frame and exited 0."""
    done = gossamer(*args, "--http-addr", DOWN)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and f"argument {args[1]}" in done.stderr, done.stderr


def test_top_in_the_background_leaves_the_terminal_alone_and_runs(tmp_path: Path) -> None:
    """Found by the walkthrough of the `q` key itself: `gossamer top > log &` from a shell
    with job control was stopped at once (SIGTTOU: a background job set the terminal's
    mode) and wrote nothing. A job in the background reads no key and runs on."""
    log = tmp_path / "top.log"
    agent = _agent()
    top = shlex.join([sys.executable, "-m", "gossamer.agent", "top", "--http-addr",
                      agent.address, "--interval", "0.2", "--iterations", "3"])  # fmt: skip
    shell = ["bash", "-c", f"set -m; {top} > {log} & wait $!; echo status=$?"]
    with closing(agent), _on_a_terminal(shell) as (main, _, _, _):
        shown = _read_until(main, b"status=", 30)
    assert b"status=0" in shown, shown
    assert log.read_text().count("(Ctrl-C quits)") == 3, log.read_text()


def test_q_still_quits_top_after_ctrl_z_and_fg() -> None:
    """Found by the walkthrough: after Ctrl-Z the shell takes the terminal back in its own
    (line) mode and `fg` does not restore ours, so `q` waited for Enter. Here the test does
    what the shell does: the terminal back to line mode, SIGCONT; then `q` alone."""
    with closing(_agent()) as agent, _on_a_terminal(_top(agent)) as terminal:
        main, side, proc, line_mode = terminal
        assert b"q or Ctrl-C quits" in _read_until(main, b"q or Ctrl-C quits", 20)
        proc.send_signal(signal.SIGSTOP)
        termios.tcsetattr(side, termios.TCSADRAIN, line_mode)
        proc.send_signal(signal.SIGCONT)
        eventually(lambda: not termios.tcgetattr(side)[3] & termios.ICANON, 10,
                   what="top to take the terminal's mode again")  # fmt: skip
        _quit_with_q(main, proc)
