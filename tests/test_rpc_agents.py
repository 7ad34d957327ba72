"""Agent RPC on real agents: the outsider of issue 10 gets nothing and changes nothing.

An outsider reaches an agent's RPC port with no keyring and no certificate:
plaintext frames (a digest, a push of a newer intention stamp) read not one
byte and turn no deny into an allow; a TLS client with no certificate gets
only the sealed bundle and is cut off when it asks for more. Every attempt
is counted in /v1/agent/self, and the agents keep syncing.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import ssl
import time
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from gossamer.catalog.model import NodeRecord
from gossamer.catalog.store import FILE_NAME as STORE_FILE
from gossamer.catalog.sync_protocol import FrameDecoder, encode
from gossamer.catalog.wire import record_from_wire
from gossamer.proxy.ca.record_signature import verify_record
from tests.harness.cluster import AgentProc, Cluster
from tests.harness.poll import eventually


def refusals(agent: AgentProc) -> dict[str, int]:
    counts: dict[str, int] = agent.get("/v1/agent/self")["Gossamer"]["Identity"]["RpcRefusals"]
    return counts


def allowed(agent: AgentProc, source: str, destination: str) -> bool:
    answer = agent.get(f"/v1/connect/intentions/check?source={source}&destination={destination}")
    return bool(answer["Allowed"])


def read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError, ssl.SSLError):
        pass
    return data


def test_a_plaintext_outsider_reads_nothing_and_changes_nothing(cluster: Cluster) -> None:
    a, b = cluster.start(2)
    a.put("/v1/connect/intentions/exact?source=web&destination=db", {"Action": "deny"})
    eventually(lambda: not allowed(b, "web", "db") and b.get("/v1/connect/intentions"), 10)
    future_ms = int(time.time() * 1000) + 1_000
    push: dict[str, Any] = {
        "t": "push",
        "dc": "dc1",
        "records": [],
        "lww": {"intentions": [{"key": "web => db", "stamp": [future_ms, 0, "outsider"],
                                "deleted": False, "value": {"Action": "allow"}}]},
    }  # fmt: skip
    before = refusals(b).get("not-tls", 0)
    with socket.create_connection((b.ip, b.rpc_port), timeout=5) as sock:
        sock.sendall(encode({"t": "digest", "dc": "dc1", "digest": {}}) + encode(push))
        assert read_until_closed(sock) == b""  # not one byte: no record, no intention
    eventually(lambda: refusals(b).get("not-tls", 0) > before, 10, what="the refusal counted")
    assert not allowed(a, "web", "db") and not allowed(b, "web", "db")
    b.put("/v1/agent/service/register", {"Name": "after-attack", "Port": 1})
    eventually(lambda: "after-attack" in a.get("/v1/catalog/services"), 15, what="sync goes on")


def test_an_outsider_without_a_certificate_gets_only_the_sealed_bundle(cluster: Cluster) -> None:
    [a] = cluster.start(1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    asks = encode({"t": "ca-bundle"}) + encode({"t": "pull", "dc": "dc1", "nodes": [a.name]})
    with (
        socket.create_connection((a.ip, a.rpc_port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(asks)
        replies = FrameDecoder().feed(read_until_closed(tls))
    assert [r["t"] for r in replies] == ["ca-bundle", "error"]  # then the connection ends
    keys = {e["key"].split("/")[0] for e in replies[0]["entries"]}
    assert keys == {"root", "seal"}  # certificates and sealed keys only
    assert "records" not in replies[1]


def held_records(agent: AgentProc) -> dict[str, NodeRecord]:
    """The records `agent` keeps on disk, read straight from its SQLite file."""
    with contextlib.closing(sqlite3.connect(agent.data_dir / STORE_FILE)) as db:
        rows = db.execute("SELECT node, wire FROM records").fetchall()
    return {node: record_from_wire(json.loads(wire)) for node, wire in rows}


def test_every_record_relayed_carries_its_owners_signature(cluster: Cluster) -> None:
    """Each agent's copy of every other agent's record verifies as signed by that owner."""
    agents = cluster.start(3)
    eventually(lambda: all(len(held_records(a)) == 3 for a in agents), 20, what="3 records each")
    roots = [
        x509.load_pem_x509_certificate(r["RootCert"].encode())
        for r in agents[0].get("/v1/connect/ca/roots")["Roots"]
    ]

    def all_signed() -> bool:
        now = datetime.now(UTC)
        for holder in agents:
            for node, record in held_records(holder).items():
                if record.signed is None:
                    return False
                assert verify_record(record, roots, now).node_id, node
        return True

    eventually(all_signed, 20, what="every held record signed by its owner")
    node_ids = {a.name: a.get("/v1/agent/self")["Config"]["NodeID"] for a in agents}
    for node, record in held_records(agents[1]).items():
        assert verify_record(record, roots, datetime.now(UTC)).node_id == node_ids[node]
