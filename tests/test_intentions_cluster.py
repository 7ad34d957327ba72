"""Intentions across real agents (each with its serf child) on loopback: replication and durability.

The module shares one 3-agent cluster (`trio`); each test uses its own
service names, so the tests do not see each other's intentions. Convergence
is waited for with `eventually`, never with a sleep.
"""

from __future__ import annotations

import signal
import threading
import time
import urllib.error
import urllib.parse
from typing import Any

import consul

from tests.harness.cluster import AgentProc, Cluster, exact, http_json, put_exact
from tests.harness.poll import eventually

CONVERGE_S = 5.0  # deadline; the measured time (printed) is what the issue's ~2 s is about
ALIVE = 1


def delete_exact(agent: AgentProc, source: str, destination: str) -> None:
    query = urllib.parse.urlencode({"source": source, "destination": destination})
    assert http_json(f"{agent.http}/v1/connect/intentions/exact?{query}", "DELETE") is True


def allowed(agent: AgentProc, source: str, destination: str) -> bool:
    query = urllib.parse.urlencode({"source": source, "destination": destination})
    return bool(agent.get(f"/v1/connect/intentions/check?{query}")["Allowed"])


def converge(check: Any, what: str) -> float:
    """Seconds until `check` holds (polled every 10 ms), failing after CONVERGE_S."""
    start = time.monotonic()
    eventually(check, CONVERGE_S, interval=0.01, what=what)
    return time.monotonic() - start


def restart(agent: AgentProc, peers: list[AgentProc]) -> None:
    agent.stop()
    agent.start()
    names = {a.name for a in peers}
    eventually(lambda: {n for n, s in agent.members().items() if s == ALIVE} >= names, 15,
               what=f"{agent.name} to see its peers again")  # fmt: skip


# --- replication ------------------------------------------------------------------------------


def test_a_write_on_one_agent_is_decided_the_same_on_every_agent(trio: list[AgentProc]) -> None:
    a, b, c = trio
    # Not in --dev: the default policy is deny until an intention allows.
    assert not any(allowed(x, "web1", "db1") for x in trio)
    client = consul.Consul(host=a.ip, port=a.http_port)
    times = []
    for action in ("allow", "deny", "allow"):
        assert client.connect.intentions.upsert("web1", "db1", action=action)
        want = action == "allow"
        times.append(converge(lambda w=want: all(allowed(x, "web1", "db1") == w for x in (b, c)),
                              f"check web1 => db1 to say {action} on every agent"))  # fmt: skip
    print(
        f"\nwrite on {a.name} -> check agrees on all: "
        + ", ".join(f"{t * 1000:.0f} ms" for t in times)
    )
    ids = {exact(x, "web1", "db1")["ID"] for x in trio}  # type: ignore[index]
    assert len(ids) == 1  # the same intention, not three copies


def test_concurrent_writes_of_one_pair_converge_to_one_winner(trio: list[AgentProc]) -> None:
    a, b, c = trio
    go = threading.Barrier(2)

    def write(agent: AgentProc, action: str) -> None:
        go.wait()
        put_exact(agent, "web2", "db2", {"Action": action, "Description": f"from {agent.name}"})

    writers = [threading.Thread(target=write, args=(a, "allow")),
               threading.Thread(target=write, args=(b, "deny"))]  # fmt: skip
    for t in writers:
        t.start()
    for t in writers:
        t.join()

    def one_winner() -> bool:
        seen = [exact(x, "web2", "db2") for x in trio]
        keys = {(s["ID"], s["Action"], s["Description"]) if s else None for s in seen}
        return len(keys) == 1 and None not in keys

    converge(one_winner, "a, b and c to hold the same winner for web2 => db2")
    winner = exact(c, "web2", "db2")
    assert winner is not None and winner["Description"] in (f"from {a.name}", f"from {b.name}")
    assert len({allowed(x, "web2", "db2") for x in trio}) == 1


def test_a_delete_propagates_and_stays_deleted_across_a_restart(trio: list[AgentProc]) -> None:
    a, b, c = trio
    put_exact(a, "web3", "db3", {"Action": "allow"})
    converge(lambda: all(exact(x, "web3", "db3") for x in trio), "web3 => db3 everywhere")
    delete_exact(b, "web3", "db3")
    converge(lambda: not any(exact(x, "web3", "db3") for x in trio), "the delete everywhere")
    restart(c, [a, b])
    assert exact(c, "web3", "db3") is None  # from c's own file, before any sync
    listed = [(i["SourceName"], i["DestinationName"]) for i in c.get("/v1/connect/intentions")]
    assert ("web3", "db3") not in listed
    put_exact(c, "web3b", "db3", {"Action": "deny"})  # and c is fully back in the cluster
    converge(lambda: all(exact(x, "web3b", "db3") for x in trio), "a write from restarted c")
    assert not any(exact(x, "web3", "db3") for x in trio)


def test_an_agent_that_was_down_catches_up_when_it_rejoins(trio: list[AgentProc]) -> None:
    a, b, c = trio
    put_exact(a, "web4", "gone4", {"Action": "allow"})
    converge(lambda: exact(c, "web4", "gone4") is not None, "web4 => gone4 on c")
    c.stop()  # missed: a new intention, a change and a delete
    put_exact(a, "web4", "db4", {"Action": "deny"})
    put_exact(b, "web4", "db4", {"Action": "allow", "Description": "changed on b"})
    delete_exact(a, "web4", "gone4")
    c.start()
    converge(lambda: (exact(c, "web4", "db4") or {}).get("Description") == "changed on b"
             and exact(c, "web4", "gone4") is None, "c to catch up")  # fmt: skip
    eventually(lambda: {n for n, s in c.members().items() if s == ALIVE} >= {a.name, b.name}, 15)


# --- durability -------------------------------------------------------------------------------


def test_kill_9_right_after_acknowledged_writes_loses_nothing(cluster: Cluster) -> None:
    (solo,) = cluster.start(1, prefix="solo")  # alone: nothing can come back from a peer
    for i in range(5):
        put_exact(solo, f"web{i}", "db", {"Action": "deny" if i % 2 else "allow"})
    assert solo.proc is not None
    solo.proc.send_signal(signal.SIGKILL)  # right after the last 200
    solo.proc.wait(10)
    solo.start()
    got = {(i["SourceName"], i["Action"]) for i in solo.get("/v1/connect/intentions")}
    assert got == {(f"web{i}", "deny" if i % 2 else "allow") for i in range(5)}
