"""`gossamer check`'s proxy line on a real agent: the hint fits what holds the sidecar's port.

Nothing listening: the proxy is not running, start it. Something that takes the connection
and does not answer TLS 1.3 (a proxy stopped with SIGSTOP or hung, another program on the
port): starting a proxy would fail to bind; the hint says what holds the port and how to
find it. Before, both said "start it".
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from gossamer.agent.cli.main import main
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.test_check_cli import failing, register_sidecar_only


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProc]:
    c = Cluster(tmp_path_factory.mktemp("check-hints"))
    try:
        yield c.new_agent("hint1").start()
    finally:
        leftovers = c.close()
    assert not leftovers, leftovers


def check(agent: AgentProc, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["check", "--http-addr", agent.http])
    out, err = capsys.readouterr()
    assert not err, err
    return code, out


def _hint_of(out: str, line_start: str) -> str:
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(line_start))
    return lines[at + 1].strip()


def test_a_sidecar_port_nobody_listens_on_says_start_it(
    agent: AgentProc, capsys: pytest.CaptureFixture[str]
) -> None:
    port = register_sidecar_only(agent, "idle")
    try:
        code, out = check(agent, capsys)
    finally:
        agent.put("/v1/agent/service/deregister/idle-sidecar-proxy")
        agent.put("/v1/agent/service/deregister/idle")
    name = f"proxy idle-sidecar-proxy up at {agent.ip}:{port}"
    assert code == 1 and name in failing(out), out
    assert _hint_of(out, f"✘ {name}") == (
        f"hint: start it: gossamer connect proxy --sidecar-for idle --http-addr {agent.http}"
    ), out  # the agent is not at the default address: the proxy must be told where it is


@contextlib.contextmanager
def _held(ip: str, port: int, answer: bytes | None) -> Iterator[None]:
    """A listener on `port` that never accepts (None: as a proxy under SIGSTOP, whose
    connections the kernel still takes) or answers `answer` to whatever comes."""
    server = socket.create_server((ip, port))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(answer or b"")

    thread = threading.Thread(target=serve, daemon=True)
    if answer is not None:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if answer is not None:
            thread.join(5)
        server.close()


@pytest.mark.parametrize("answer", [None, b"HTTP/1.1 400 Bad Request\r\n\r\n"])
def test_a_sidecar_port_held_by_something_mute_or_foreign_names_the_holder(
    agent: AgentProc, capsys: pytest.CaptureFixture[str], answer: bytes | None
) -> None:
    port = free_port(agent.ip)
    agent.put("/v1/agent/service/register", {
        "Name": "mute", "ID": "mute", "Port": 1, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": port, "Address": agent.ip}},
    })  # fmt: skip
    try:
        with _held(agent.ip, port, answer):
            code, out = check(agent, capsys)
    finally:
        agent.put("/v1/agent/service/deregister/mute-sidecar-proxy")
        agent.put("/v1/agent/service/deregister/mute")
    name = f"proxy mute-sidecar-proxy up at {agent.ip}:{port}"
    assert code == 1 and name in failing(out), out
    hint = _hint_of(out, f"✘ {name}")
    assert f"ss -ltnp 'sport = :{port}'" in hint and "start it" not in hint, out
