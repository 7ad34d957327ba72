"""An agent joined with `gossamer join` (no `join` in its config), killed with `kill -9`
and started again: the crash walk.

serf's snapshot buffers its lines and writes one only when a later one comes
more than 500 ms after its last write, so the join of the peer (right after
start, in a quiet cluster) was never written: the restarted agent saw no
peer ("Failed to re-join any previously known node") until the peer's
push-pull found it, up to ~30 s later, and never if every agent had crashed.
The agent now keeps the peers it last saw alive (known_peers.py) and rejoins
them at start; a graceful leave forgets them, as serf's snapshot does.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from gossamer.agent.lifecycle.known_peers import KnownPeers
from gossamer.gossip.members import Member
from tests.harness.cluster import Cluster
from tests.harness.poll import eventually


def _member(name: str, addr: str, status: str = "alive") -> Member:
    return Member(name=name, addr=addr, port=8301, tags={}, status=status)


def test_the_kept_peers_change_only_with_the_alive_set(tmp_path: Path) -> None:
    known = KnownPeers(tmp_path / "known-peers.json")
    assert known.load() == []
    known.remember([_member("me", "10.0.0.1")], "me")  # no peer yet: nothing written
    assert not known.path.exists()
    known.remember([_member("me", "10.0.0.1"), _member("b", "10.0.0.2"),
                    _member("c", "10.0.0.3", "failed")], "me")  # fmt: skip
    assert json.loads(known.path.read_text()) == ["10.0.0.2:8301"]
    known.remember([_member("me", "10.0.0.1")], "me")  # a view with no peer keeps them
    assert KnownPeers(known.path).load() == ["10.0.0.2:8301"]
    known.forget()
    assert not known.path.exists()


def test_an_agent_joined_by_hand_rejoins_after_kill_9_but_not_after_a_leave(
    cluster: Cluster,
) -> None:
    a = cluster.new_agent("kp1").start()
    b = cluster.new_agent("kp2").start()
    b.put(f"/v1/agent/join/{a.serf_addr}")
    kept = b.data_dir / "serf" / "known-peers.json"
    eventually(lambda: kept.exists() and a.serf_addr in kept.read_text(), 10,
               what="b to keep a as a known peer")  # fmt: skip
    assert b.proc is not None
    b.proc.kill()
    b.wait_exit()
    b.start()
    eventually(lambda: b.members().get("kp1") == 1, 10, what="b to see a again by itself")
    assert "rejoining 1 peer(s) known before this start" in b.log_tail(400)
    b.signal(signal.SIGTERM)  # a graceful leave: b stays out when started again
    assert b.wait_exit() == 0
    assert not kept.exists()
