"""Pure pieces of the agent and of serf handling, tested without processes."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import pytest

from gossamer.agent.lifecycle import systemd
from gossamer.agent.lifecycle.datadir import DataDir, DataDirError
from gossamer.agent.lifecycle.listeners import ListenError, bind_socket
from gossamer.gossip.addresses import AddressError, parse_host_port
from gossamer.gossip.joining import backoff_schedule, join_targets
from gossamer.gossip.keyring import InvalidKeyError, generate_key, seed_keyring, validate_key
from gossamer.gossip.serf_launch import SerfSettings
from gossamer.gossip.serf_output import classify_exit

WHERE = SerfSettings(node="n1", bind="127.0.0.5", port=8301, state_dir=Path("/nonexistent"))
RPC = "127.0.0.1:41000"


@pytest.mark.parametrize(
    ("lines", "fatal", "needle"),
    [
        (["[WARN] serf: minority in name conflict resolution, quitting [0 / 1]"], True,
         "node name 'n1' is already in use"),
        (['==> Failed to start the Serf agent: ... listen tcp 127.0.0.5:8301: bind: '
          "address already in use"], True, "cannot bind the gossip port 127.0.0.5:8301"),
        (["bind: cannot assign requested address"], True, "not on this host"),
        (["==> Error starting RPC listener: listen tcp 127.0.0.1:41000: bind: "
          "address already in use"], False, "RPC"),
        (["[INFO] agent: shutdown complete", "==> Failed to join: EOF"], False, "Failed to join"),
        ([], False, ""),
    ],
)  # fmt: skip
def test_classify_serf_exit(lines: list[str], fatal: bool, needle: str) -> None:
    reason = classify_exit(lines, WHERE, RPC)
    assert reason.fatal is fatal
    assert needle in reason.message


def test_rpc_port_clash_is_retryable_not_fatal() -> None:
    line = f"Error starting RPC listener: listen tcp {RPC}: bind: address already in use"
    reason = classify_exit([line], WHERE, RPC)
    assert reason.rpc_port_taken and not reason.fatal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1.2.3", ("10.1.2.3", 8301)),
        ("10.1.2.3:9000", ("10.1.2.3", 9000)),
        ("[::1]:7000", ("::1", 7000)),
        ("::1", ("::1", 8301)),
        ("node-1.example.com", ("node-1.example.com", 8301)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, 8301) == expected


@pytest.mark.parametrize(
    "text",
    ["", "1.2.3.999", "host:0", "host:65536", "host:abc", "[::1", "[::1]x", "bad host", ":::z"],
)
def test_parse_host_port_rejects(text: str) -> None:
    with pytest.raises(AddressError):
        parse_host_port(text, 8301)


def test_join_targets_add_the_serf_port() -> None:
    assert join_targets(["a", "b:1", "[::1]"], 8301) == ["a:8301", "b:1", "[::1]:8301"]


def test_backoff_doubles_up_to_the_cap() -> None:
    assert list(itertools.islice(backoff_schedule(5.0), 5)) == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert list(itertools.islice(backoff_schedule(0.5), 2)) == [0.5, 0.5]


def test_keys() -> None:
    key = generate_key()
    assert validate_key(key) == key
    with pytest.raises(InvalidKeyError, match="32 bytes, got 6"):
        validate_key("c2hvcnQx")
    with pytest.raises(InvalidKeyError, match="base64"):
        validate_key("not base64!")


def test_seed_keyring_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "serf" / "local.keyring"
    first, second = generate_key(), generate_key()
    assert seed_keyring(path, first)
    assert not seed_keyring(path, second)
    assert first in path.read_text() and second not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600


def test_data_dir_lock_and_node_id(tmp_path: Path) -> None:
    one = DataDir(tmp_path / "d")
    one.open()
    node_id = one.node_id()
    assert one.node_id() == node_id
    two = DataDir(tmp_path / "d")
    with pytest.raises(DataDirError, match="in use by another gossamer agent"):
        two.open()
    one.close()
    two.open()
    assert two.node_id() == node_id
    two.close()


def test_corrupt_node_id_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "node-id").write_text("garbage")
    with pytest.raises(DataDirError, match="not a valid UUID"):
        DataDir(tmp_path).node_id()


def test_bind_socket_names_the_port_in_use() -> None:
    first = bind_socket("the HTTP API", "127.0.0.1", 0)
    port = first.getsockname()[1]
    try:
        with pytest.raises(ListenError, match=f"HTTP API on 127.0.0.1:{port}: address already"):
            bind_socket("the HTTP API", "127.0.0.1", port)
    finally:
        first.close()


def test_sd_notify_datagrams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False  # not under systemd: a no-op
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert systemd.notify("READY=1", "STATUS=ok")
        assert sock.recv(100) == b"READY=1\nSTATUS=ok"
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert systemd.notify("READY=1") is False


def test_host_parse_is_linear_on_long_bad_names() -> None:
    """Regression: `(label\\.?)+` backtracked exponentially; a join request could hang the agent."""
    import time

    started = time.monotonic()
    with pytest.raises(AddressError, match="not a valid IP address or host name"):
        parse_host_port("a" * 5000 + "!", 8301)
    assert time.monotonic() - started < 0.5


def test_member_table_refresh_is_fast_for_small_clusters_and_bounded_for_big_ones() -> None:
    from gossamer.gossip.member_watch import resync_interval

    assert [resync_interval(n) for n in (1, 10, 125, 250, 500, 5000)] == [
        0.5, 0.5, 0.5, 1.0, 2.0, 2.0,
    ]  # fmt: skip
