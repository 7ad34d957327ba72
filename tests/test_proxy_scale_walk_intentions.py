"""Thousands of intentions for one service, walked with a real agent and real sidecars.

`db` holds 4,000 intentions in one `service-intentions` entry (two in
three L7, with path and header regexes, and a `*` deny); `web` calls it
through its sidecar. Each change makes the agent send db's sidecar every
intention again. Before, the sidecar parsed and compiled them all afresh
on its event loop (~0.4 s at 3,000 L7 intentions, seconds at 5,000): its
open connections stalled for that long on every change, anyone's, and a
deny arrived late. Now rows it had are reused (proxy/intention_memo.py):
an unrelated change leaves an open connection flowing, and a deny of web
still cuts it.
"""

from __future__ import annotations

import gc
import re
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from gossamer.agent.replicated.intention_entries import pair_key, to_value
from gossamer.agent.replicated.intention_view import IntentionView
from gossamer.catalog import lww
from gossamer.catalog.hlc import Timestamp
from gossamer.intentions.codec import intention_to_json
from gossamer.intentions.decide import IntentionSet, decide
from gossamer.intentions.model import HeaderMatch, HTTPMatch, HttpRequest, Intention, Permission
from gossamer.intentions.validate import IntentionError
from gossamer.proxy.intention_memo import IntentionMemo
from tests.harness.cluster import AgentProc, Cluster, free_port, http_json
from tests.harness.poll import eventually
from tests.proxy_support import App, ProxyProc, register_pair, roundtrip, stop_mesh, wait_listening

SOURCES = 4000


def _sources(web: str, changed: int = -1) -> list[dict[str, Any]]:
    """db's entry: web's own, then `SOURCES` others (`changed` is the one an edit flips)."""
    out: list[dict[str, Any]] = [{"Name": "web", "Action": web}]
    for i in range(SOURCES):
        if i == changed:
            out.append({"Name": f"s{i}", "Action": "deny"})
        elif i % 3 == 0:
            out.append({"Name": f"s{i}", "Action": "allow"})
        else:
            out.append({"Name": f"s{i}", "Permissions": [
                {"Action": "allow", "HTTP": {"PathRegex": f"/api/v{i}/.*", "Methods": ["GET"]}},
                {"Action": "deny", "HTTP": {"PathPrefix": "/admin",
                                            "Header": [{"Name": "x-user", "Regex": f"u{i}.*"}]}},
                {"Action": "deny", "HTTP": {"PathRegex": f"/v{i}/(a|b|c)+/[0-9]{{1,8}}"}},
            ]})  # fmt: skip
    out.append({"Name": "*", "Action": "deny"})
    return out


def _write(agent: AgentProc, sources: list[dict[str, Any]]) -> None:
    """db's entry written (the first write stores each of its intentions: seconds)."""
    body = {"Kind": "service-intentions", "Name": "db", "Sources": sources}
    assert http_json(f"{agent.http}/v1/config", "PUT", body, timeout=60) is True


class Pinger:
    """A byte echoed back and forth on one open connection, the slowest round trip kept."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.slowest = 0.0
        self.failed: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Pinger:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            started = time.monotonic()
            try:
                self.sock.sendall(b"p")
                assert self.sock.recv(10) == b"p"
            except (OSError, AssertionError) as exc:
                self.failed = exc
                return
            self.slowest = max(self.slowest, time.monotonic() - started)


@pytest.mark.timeout(120)
def test_an_unrelated_change_leaves_connections_flowing_a_deny_still_cuts(
    cluster: Cluster, tmp_path: Path
) -> None:
    (agent,) = cluster.start(1, prefix="sx")
    app = App("127.0.0.1").start()
    up = free_port("127.0.0.1")
    register_pair(agent, app.port, up)
    _write(agent, _sources("allow"))
    db = ProxyProc(["--sidecar-for", "db", "--http-addr", agent.http], tmp_path / "db.log").start()
    web = ProxyProc(["--sidecar-for", "web", "--http-addr", agent.http],
                    tmp_path / "web.log").start()  # fmt: skip
    try:
        wait_listening("127.0.0.1", up, web, 60)
        eventually(lambda: roundtrip(("127.0.0.1", up), b"a") == b"a<eof>", 60, what="web -> db")
        with Pinger(("127.0.0.1", up)) as pinger:
            eventually(lambda: pinger.slowest > 0, 10, what="a first echo")
            _write(agent, _sources("allow", changed=1))
            # db's sidecar hears of it and applies it while the echoes go on
            eventually(lambda: _updates(db) >= 2, 20, what="db's sidecar applied the change")
            assert pinger.failed is None, pinger.failed
            assert pinger.slowest < 0.5, f"an echo waited {pinger.slowest:.2f} s"
        assert "intentions answer unusable" not in db.log()
        with socket.create_connection(("127.0.0.1", up), timeout=10) as kept:
            kept.sendall(b"1")
            assert kept.recv(10) == b"1"
            _write(agent, _sources("deny", changed=1))
            written = time.monotonic()
            kept.settimeout(10)
            assert kept.recv(10) == b""  # cut: web is denied now
            cut = time.monotonic() - written
            assert cut < 1.0, f"cut {cut:.2f} s after the agent took the deny"  # (~0.4 s)
    finally:
        assert not stop_mesh(cluster, [web, db], [app])


def _updates(proxy: ProxyProc) -> int:
    """The intentions answers `proxy` applied so far, as its counters say (SIGUSR1)."""
    proxy.signal(signal.SIGUSR1)
    found = eventually(lambda: re.findall(r"counters for \S+: (.*)", proxy.log())[-1:], 5)
    counts = dict(item.split("=") for item in found[0].split(", ") if "=" in item)
    return int(counts.get("intentions.updates", 0))


def _ixn(i: int, **fields: Any) -> dict[str, Any]:
    perms = (
        Permission("allow", HTTPMatch(path_regex=f"/v{i}/.*")),
        Permission("deny", HTTPMatch(headers=(HeaderMatch("x-u", regex=f"u{i}"),))),
    )
    ixn = Intention(
        f"s{i}",
        "db",
        id=str(uuid.UUID(int=i + 1)),
        permissions=perms if i % 2 else (),
        action=None if i % 2 else "allow",
    )
    return {**intention_to_json(ixn), **fields}  # fmt: skip


def test_the_memo_compiles_only_rows_it_did_not_have() -> None:
    rows = [_ixn(i) for i in range(6)]
    memo = IntentionMemo()
    first = memo.build(rows)
    assert memo.compiled == 6
    changed = [*rows[:2], _ixn(2, Action="deny"), *rows[3:5]]  # one edited, one gone
    second = memo.build(changed)
    assert memo.compiled == 7  # the edited row only
    assert [r.intention.action for r in second.rules_for("s2", "db")] == ["deny"]
    assert second.rules_for("s1", "db")[0] is first.rules_for("s1", "db")[0]  # reused
    assert not second.rules_for("s5", "db")  # a row gone is gone
    fresh = IntentionSet(r.intention for r in (*second.rules_for("s1", "db"),))
    request = HttpRequest("GET", "/v1/x", {"x-u": "nobody"})
    assert decide(second, "s1", "db", request=request, default_allow=False) == decide(
        fresh, "s1", "db", request=request, default_allow=False)  # fmt: skip


def test_rows_are_shared_while_in_use_and_let_go_after() -> None:
    """One memo serves every sidecar of a `--node` process: a row two answers have in common
    is compiled once, one sidecar's answer does not put out another's rows, and a row no set
    uses any more is not kept."""
    memo = IntentionMemo()
    web = memo.build([_ixn(0), _ixn(1)])
    api = memo.build([_ixn(1), _ixn(2)])
    assert memo.compiled == 3
    assert web.rules_for("s1", "db")[0] is api.rules_for("s1", "db")[0]
    # web's answer changes (before, api's answer had put web's rows out: all compiled again)
    web = memo.build([_ixn(0), _ixn(1), _ixn(3)])
    assert memo.compiled == 4
    del web
    gc.collect()
    assert len(memo) == 2  # api's
    del api
    gc.collect()
    assert len(memo) == 0


def test_a_bad_row_spoils_the_answer_not_the_memo() -> None:
    rows = [_ixn(i) for i in range(3)]
    memo = IntentionMemo()
    held = memo.build(rows)  # (its rows are kept while it lives)
    with pytest.raises(IntentionError):
        memo.build([*rows, {"SourceName": "x", "DestinationName": "db", "Action": "maybe"}])
    with pytest.raises(IntentionError):  # a regex RE2 refuses
        memo.build([*rows, _ixn(9, Permissions=[{"Action": "allow",
                                                 "HTTP": {"PathRegex": "(a"}}])])  # fmt: skip
    assert memo.build(rows).rules_for("s1", "db") == held.rules_for("s1", "db")
    assert memo.compiled == 3  # the good rows kept: none compiled again


def test_the_agents_view_compiles_an_intention_once_while_it_lasts() -> None:
    """The agent's decision index (agent/replicated/intention_view.py) is rebuilt on the first
    read after a change: it reuses the rules of the intentions that did not change."""
    view = IntentionView()
    stamp = Timestamp(1, 0, "n")
    values = {pair_key(f"s{i}", "db"): to_value(Intention(**_fields(i))) for i in range(4)}
    entries = {key: lww.Entry(stamp, value) for key, value in values.items()}
    view.refresh(entries, list(entries), 1)
    before = view.current
    edited = {**values[pair_key("s1", "db")], "Permissions": None, "Action": "deny"}
    entries[pair_key("s1", "db")] = lww.Entry(stamp, edited)
    view.refresh(entries, [pair_key("s1", "db")], 2)
    after = view.current
    assert after.rules_for("s3", "db")[0] is before.rules_for("s3", "db")[0]
    assert decide(after, "s1", "db", default_allow=True).allowed is False
    assert decide(after, "s3", "db", request=HttpRequest("GET", "/v3/x"),
                  default_allow=False).allowed  # fmt: skip


def _fields(i: int) -> dict[str, Any]:
    perms = (Permission("allow", HTTPMatch(path_regex=f"/v{i}/.*")),)
    l7 = bool(i % 2)
    return {"source": f"s{i}", "destination": "db", "id": str(uuid.UUID(int=i + 1)),
            "permissions": perms if l7 else (), "action": None if l7 else "allow"}  # fmt: skip
