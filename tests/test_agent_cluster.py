"""Real agents, real serf, on loopback: membership, leave, failure, identity, keys."""

from __future__ import annotations

import os
import signal

from gossamer.gossip.keyring import generate_key
from tests.harness.cluster import Cluster, http_json, pid_alive
from tests.harness.poll import eventually

ALIVE, LEFT, FAILED = 1, 3, 4


def test_three_agents_join_and_each_sees_three_alive(cluster: Cluster) -> None:
    agents = cluster.start(3)
    for agent in agents:
        members = agent.get("/v1/agent/members")
        assert sorted(m["Name"] for m in members) == ["node1", "node2", "node3"]
        assert all(m["Status"] == ALIVE for m in members)
        me = next(m for m in members if m["Name"] == agent.name)
        assert me["Addr"] == agent.ip and me["Port"] == agent.serf_port
        assert me["Tags"]["port"] == str(agent.rpc_port)


def test_sigterm_leaves_gracefully_and_kill_9_takes_serf_down_too(cluster: Cluster) -> None:
    a, b, c = cluster.start(3)
    b.signal(signal.SIGTERM)
    assert b.wait_exit() == 0
    eventually(lambda: a.members()["node2"] == LEFT, 10, what="node2 seen as left")
    assert not b.serf_pids()

    serf_pids = c.serf_pids()
    assert len(serf_pids) == 1
    os.kill(c.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
    c.wait_exit()
    eventually(lambda: not pid_alive(serf_pids[0]), 5, what="serf to die with its agent")
    eventually(lambda: a.members()["node3"] == FAILED, 10, what="node3 seen as failed")


def test_restart_keeps_node_id(cluster: Cluster) -> None:
    (a,) = cluster.start(1)
    node_id = a.get("/v1/agent/self")["Config"]["NodeID"]
    assert len(node_id) == 36
    a.stop()
    a.start()
    assert a.get("/v1/agent/self")["Config"]["NodeID"] == node_id
    assert (a.data_dir / "node-id").read_text().strip() == node_id


def test_same_node_name_twice_is_refused_to_the_second(cluster: Cluster) -> None:
    a, _ = cluster.start(2)
    dup = cluster.new_agent("node1-dup", "--join", a.serf_addr)
    dup.name = "node1"
    dup.start(wait=False)
    code = dup.wait_exit(30)
    assert code == 1
    assert "node name 'node1' is already in use" in dup.log_tail()
    assert a.members()["node1"] == ALIVE
    assert not dup.serf_pids()


def test_wrong_gossip_key_cannot_join(cluster: Cluster) -> None:
    a = cluster.new_agent("enc1", "--encrypt", generate_key()).start()
    b = cluster.new_agent("enc2", "--encrypt", generate_key(), "--join", a.serf_addr)
    b.start(wait=False)
    assert b.wait_exit(30) == 1
    assert "could not join" in b.log_tail()
    assert set(a.members()) == {"enc1"}


def test_keyring_install_use_remove_across_three(cluster: Cluster) -> None:
    old = generate_key()
    a = cluster.new_agent("k1", "--encrypt", old).start()
    b = cluster.new_agent("k2", "--encrypt", old, "--join", a.serf_addr).start()
    c = cluster.new_agent("k3", "--encrypt", old, "--join", a.serf_addr).start()
    eventually(lambda: all(len(x.members()) == 3 for x in (a, b, c)), 15, what="3 members")

    new = generate_key()
    http_json(a.http + "/v1/operator/keyring", "POST", {"Key": new})
    keys = a.get("/v1/operator/keyring")[0]
    assert keys["Keys"] == {old: 3, new: 3} and keys["NumNodes"] == 3
    http_json(b.http + "/v1/operator/keyring", "PUT", {"Key": new})
    http_json(c.http + "/v1/operator/keyring", "DELETE", {"Key": old})
    assert a.get("/v1/operator/keyring")[0]["Keys"] == {new: 3}
    # The rotated keyring survives a restart: k2 comes back speaking only `new`.
    b.stop()
    b.start()
    eventually(lambda: a.members()["k2"] == ALIVE, 15, what="k2 back after restart")


def test_serf_that_dies_is_restarted_and_the_agent_keeps_serving(cluster: Cluster) -> None:
    a, b = cluster.start(2)
    (old_pid,) = b.serf_pids()
    os.kill(old_pid, signal.SIGKILL)
    eventually(
        lambda: [p for p in b.serf_pids() if p != old_pid and pid_alive(p)],
        15,
        what="a new serf for node2",
    )
    assert "serf exited unexpectedly" in b.log_tail(80)
    # The restarted serf rejoins from its snapshot; both agents see both alive.
    eventually(lambda: b.members() == {"node1": ALIVE, "node2": ALIVE}, 20, what="rejoined")
    eventually(lambda: a.members()["node2"] == ALIVE, 20, what="node1 sees node2 alive")
    # members answer from the member table while serf restarts: /v1/agent/self asks serf itself
    eventually(
        lambda: b.get("/v1/agent/self")["Member"]["Status"] == ALIVE, 20, what="serf answering"
    )


def test_sigint_leaves_gracefully_too(cluster: Cluster) -> None:
    a, b = cluster.start(2)
    b.signal(signal.SIGINT)
    assert b.wait_exit() == 0
    eventually(lambda: a.members()["node2"] == LEFT, 10, what="node2 seen as left")
