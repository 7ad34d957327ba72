"""`gossamer check` walked as an operator trips on it: each case found by a walkthrough.

The command runs as a subprocess (the installed entry point, as a user types
it), against stand-ins on real sockets where an agent's misbehaviour is the
case (a listener that never answers, an agent whose data dir the checking
user may not enter); `setpriv` drops to `nobody` where the case is a user
other than the agent's (the tests run as root in CI).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cli import DOWN, cli_env, gossamer
from tests.harness.cluster import free_port
from tests.harness.poll import eventually
from tests.test_check_cli import marks

NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """`gossamer ARGS` as another user than the one running the tests (nobody, from root)."""
    drop = NOBODY if os.geteuid() == 0 else []
    return subprocess.run(
        [*drop, sys.executable, "-m", "gossamer.agent", *args],
        capture_output=True, text=True, timeout=60, env=cli_env(), stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A folder under /tmp every user may enter (pytest's tmp_path is root's own, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="check-walk-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for sub in path.rglob("*"):
            if sub.is_dir():
                sub.chmod(0o755)
        shutil.rmtree(path)


class StandIn:
    """An HTTP server answering GETs from a table (path -> JSON, or a function returning
    (status, body) for each call), recording what it was asked."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.asked: list[str] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stand_in.asked.append(self.path)
                found = answers.get(self.path.split("?")[0])
                status, body = 404, b""
                if callable(found):  # an answer of its own: (status, body)
                    status, body = found()
                elif found is not None:
                    status, body = 200, json.dumps(found).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_answer(data_dir: Path) -> dict[str, Any]:
    """A ready gossamer agent's /v1/agent/self, its ports where nothing listens."""
    return {
        "Config": {"NodeName": "n1", "Datacenter": "dc1"},
        "Gossamer": {"Ready": True},
        "DebugConfig": {"DataDir": str(data_dir), "BindAddr": "127.0.0.1", "HTTPPort": 1,
                        "DNSPort": 2, "SerfPortLAN": 3, "ServerPort": 4},
    }  # fmt: skip


def test_pre_with_a_data_dir_this_user_cannot_enter_fails_its_line_not_a_traceback(
    open_tmp: Path,
) -> None:
    """Found by the walkthrough: `check --pre` raised PermissionError (looking for the
    keyring inside the dir) instead of judging it; the data dir line then said "not writable"
    with a hint that was no command (`chown -R the agent's user DIR`)."""
    closed = open_tmp / "closed"
    closed.mkdir(mode=0o000)
    deeper = closed / "data"  # a dir inside one the user may not enter
    flags = ("--http-port", "--dns-port", "--serf-port", "--rpc-port")
    ports = [x for n, flag in enumerate(flags, 1) for x in (flag, str(n))]
    for data_dir, hint in ((closed, "chown -R nobody"), (deeper, f"namei -l {deeper}")):
        result = as_nobody("check", "--pre", "--data-dir", str(data_dir), "--bind", "127.0.0.1",
                           *ports)  # fmt: skip
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 1, result.stdout
        assert marks(result.stdout)["data dir and its permissions"] == "✘", result.stdout
        if os.geteuid() == 0:
            assert hint in result.stdout, result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the check as another user")
def test_a_running_agent_s_data_dir_hidden_from_the_checking_user_warns(
    open_tmp: Path,
) -> None:
    """Found by the walkthrough: `gossamer check` as a user other than the agent's failed
    "not writable by this user" and told them to chown the running agent's data dir. The
    agent writes it as its owner; this user only cannot look."""
    data_dir = open_tmp / "agent-data"
    data_dir.mkdir(mode=0o700)
    stand_in = StandIn({"/v1/agent/self": self_answer(data_dir)})
    try:
        result = as_nobody("check", "--http-addr", stand_in.address)
    finally:
        stand_in.close()
    assert "Traceback" not in result.stderr, result.stderr
    assert marks(result.stdout)["data dir and its permissions"] == "‼", result.stdout
    assert "sudo gossamer check" in result.stdout and "chown" not in result.stdout


def test_an_agent_that_never_answers_fails_within_seconds_with_a_hint_that_fits() -> None:
    """Found by the walkthrough: a port that takes connections and never answers (a stuck
    agent, another program) held `check` for 30 s, then said "start the agent"."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        result = gossamer("check", "--http-addr", address)
        took = time.monotonic() - started
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert took < 15, took
    assert marks(result.stdout)["agent reachable"] == "✘", result.stdout
    assert "sent no HTTP answer in time" in result.stdout
    assert "start the agent" not in result.stdout


def test_https_at_a_plain_http_agent_says_to_use_http() -> None:
    stand_in = StandIn({})
    try:
        started = time.monotonic()
        result = gossamer("check", "--http-addr", f"https://{stand_in.address}")
        took = time.monotonic() - started
    finally:
        stand_in.close()
    assert result.returncode == 1 and took < 15, (took, result.stderr)
    assert f"use http://{stand_in.address}" in result.stdout, result.stdout


def _interruptible() -> None:
    """Ctrl-C as a shell's child gets it: a test process may ignore SIGINT (pytest-xdist's
    workers do), and an ignored signal stays ignored across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_ends_a_waiting_command_with_130_and_no_traceback() -> None:
    """Found by the walkthrough: Ctrl-C in `stat --window` printed a KeyboardInterrupt
    traceback. The shell's convention for a command Ctrl-C ended is 130."""
    stand_in = StandIn({"/v1/agent/metrics/proxies": []})
    proc = subprocess.Popen(
        [sys.executable, "-m", "gossamer.agent", "stat", "--http-addr", stand_in.address,
         "--window", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
        preexec_fn=_interruptible,
    )  # fmt: skip
    try:
        eventually(lambda: stand_in.asked, 20, what="the first reading of the window")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stand_in.close()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err, err


def test_json_into_a_closed_pipe_is_no_traceback() -> None:
    """Found by the walkthrough: `gossamer check --json | head -3` printed a BrokenPipeError
    traceback when `head` left before the JSON was written."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gossamer.agent", "check", "--json", "--http-addr", DOWN],
            stdout=write, stderr=subprocess.PIPE, text=True, env=cli_env(), timeout=60,
        )  # fmt: skip
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 1


def test_the_start_hint_of_a_proxy_names_the_agent_the_check_asked() -> None:
    """Found by the walkthrough, trying the hint: checked with `--http-addr A`, a stopped
    sidecar's hint was `gossamer connect proxy --sidecar-for api`, which asks the agent at
    127.0.0.1:8500: another agent, or none. It now carries `--http-addr A`."""
    port = free_port("127.0.0.1")  # a port nothing listens on
    proxy = {"ID": "api-sidecar-proxy", "Service": "api-sidecar-proxy", "Kind": "connect-proxy",
             "Port": port, "Address": "127.0.0.1",
             "Proxy": {"DestinationServiceName": "api", "DestinationServiceID": "api",
                       "LocalServicePort": 8080}}  # fmt: skip
    stand_in = StandIn({"/v1/agent/self": self_answer(Path("/nonexistent")),
                        "/v1/agent/services": {"api-sidecar-proxy": proxy}})  # fmt: skip
    try:
        result = gossamer("check", "--http-addr", stand_in.address)
    finally:
        stand_in.close()
    name = f"proxy api-sidecar-proxy up at 127.0.0.1:{port}"
    assert marks(result.stdout)[name] == "✘", result.stdout
    wanted = f"gossamer connect proxy --sidecar-for api --http-addr http://{stand_in.address}"
    assert wanted in result.stdout, result.stdout


def test_an_agent_that_answers_self_but_hangs_after_costs_seconds_not_a_minute() -> None:
    """Found by the walkthrough: an agent that answers /v1/agent/self but whose later
    answers never come (serf stuck behind it) cost 5 s a call, eight calls in all. After
    the first call that timed out, each later one gets a second."""

    def stuck() -> tuple[int, bytes]:
        time.sleep(60)  # a daemon thread of the stand-in: not waited for
        return 200, b"{}"

    paths = ("/v1/agent/members", "/v1/agent/clock", "/v1/agent/connect/ca/roots",
             "/v1/agent/connect/ca/leaf/api", "/v1/health/connect/db")  # fmt: skip
    upstreams = [{"DestinationName": "db", "LocalBindPort": 9191}]
    proxy = {"ID": "api-sidecar-proxy", "Service": "api-sidecar-proxy", "Kind": "connect-proxy",
             "Port": 1, "Address": "127.0.0.1",
             "Proxy": {"DestinationServiceName": "api", "DestinationServiceID": "api",
                       "LocalServicePort": 8080, "Upstreams": upstreams}}  # fmt: skip
    answers: dict[str, Any] = {path: stuck for path in paths}
    answers["/v1/agent/self"] = self_answer(Path("/nonexistent"))
    answers["/v1/agent/services"] = {"api-sidecar-proxy": proxy}
    stand_in = StandIn(answers)
    started = time.monotonic()
    try:
        result = gossamer("check", "--http-addr", stand_in.address)
    finally:
        stand_in.close()
    took = time.monotonic() - started
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert marks(result.stdout)["cluster members"] == "✘", result.stdout
    assert took < 20, took  # DNS 3 s, the first stuck call 5 s, the four others 1 s each
