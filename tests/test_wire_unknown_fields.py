"""Fields of a newer agent in a replicated record: kept, written back as they came, verified.

A "future" agent is this code with extra fields injected into the record it
signs (`future_wire` builds and signs the bytes itself, as that agent would).
This version must relay such a record so that its owner's signature still
holds at the next agent, also after a restart (from its SQLite store), and
a changed record must still fail. The pure parts first, then real sync
sides over mutual TLS (tests/harness/replication.py).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gossamer.agent.sync import refusals
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import Check, NodeRecord, has_unknown_fields, known_only
from gossamer.catalog.store import CatalogStore
from gossamer.catalog.wire import (
    RecordError,
    record_body_to_wire,
    record_from_wire,
    record_to_wire,
)
from gossamer.proxy.ca.record_signature import DOMAIN_TAG, BadRecordSignature, verify_record
from tests.harness.identity import Mesh
from tests.harness.poll import eventually_async
from tests.harness.replication import SyncPeer, SyncPeers, node_record, talk

DER = serialization.Encoding.DER
MESH = Mesh()
FUTURE: dict[str, dict[str, Any]] = {
    "": {"zone_hint": "eu-1", "limits": {"rps": 5.5, "burst": [1, 2]}},
    "services.0": {"mesh_gateway": {"mode": "local"}},
    "checks.0": {"grace_s": 3, "locality": None},
}


def base_record(node: str = "y", version: int = 3) -> NodeRecord:
    check = Check("h", "web health", "passing", service_id="web", service_name="web")
    return replace(node_record(node, version, "web", "db"), checks=(check,))


def future_wire(
    mesh: Mesh, record: NodeRecord, extra: dict[str, dict[str, Any]] = FUTURE
) -> dict[str, Any]:
    """`record` as a newer agent would send it: `extra` fields (by path) in its body,
    signed by its owner over that body the way record_signature.canonical encodes."""
    body: dict[str, Any] = record_body_to_wire(record)
    for path, fields in extra.items():
        target: Any = body
        for part in path.split(".") if path else []:
            target = target[int(part)] if part.isdigit() else target[part]
        target.update(copy.deepcopy(fields))
    owner = mesh.enrol(record.origin)
    assert isinstance(owner.key, ec.EllipticCurvePrivateKey)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    signature = owner.key.sign(DOMAIN_TAG + text.encode(), ec.ECDSA(hashes.SHA256()))
    chain = [c.public_bytes(DER) for c in (owner.certificate, owner.intermediate)]
    b64 = [base64.b64encode(x).decode() for x in (signature, *chain)]
    return {**body, "sig": {"s": b64[0], "c": b64[1:]}}


def relayed(wire: dict[str, Any]) -> NodeRecord:
    """What the next agent decodes after this version decoded and re-sent `wire`."""
    held = record_from_wire(copy.deepcopy(wire))
    return record_from_wire(json.loads(json.dumps(record_to_wire(held))))


# -- pure ---------------------------------------------------------------------------------


def test_unknown_fields_are_kept_and_written_back_as_they_came() -> None:
    wire = future_wire(MESH, base_record())
    held = record_from_wire(copy.deepcopy(wire))
    assert record_to_wire(held) == wire
    assert held.unknown_fields == FUTURE[""]
    assert held.services[0].unknown_fields == FUTURE["services.0"]
    assert held.checks[0].unknown_fields == FUTURE["checks.0"]
    assert known_only(held) == base_record()  # what this version reads is unchanged


def test_a_future_record_relayed_by_this_version_still_verifies() -> None:
    """Before: the relay dropped the fields it did not know; the signature then failed."""
    back = relayed(future_wire(MESH, base_record()))
    verify_record(back, MESH.bundle, MESH.now)  # raises if not


@pytest.mark.parametrize(
    "change",
    [
        lambda w: w.update(zone_hint="us-1"),
        lambda w: w["limits"].update(rps=6),
        lambda w: w["services"][0].pop("mesh_gateway"),
        lambda w: w["checks"][0].update(extra=1),
        lambda w: w.pop("zone_hint"),
        lambda w: w.update(address="10.0.0.9"),
    ],
)
def test_a_changed_future_record_still_fails(change: Any) -> None:
    wire = future_wire(MESH, base_record())
    change(wire)
    with pytest.raises(BadRecordSignature):
        verify_record(relayed(wire), MESH.bundle, MESH.now)


def test_optional_fields_sent_at_their_default_are_written_back() -> None:
    """`locality: {}` and `exposed_port: 0` decode as unset, which this version does not
    write; they are kept as sent, so the bytes the owner signed come back."""
    extra: dict[str, dict[str, Any]] = {
        "services.0": {"locality": {}},
        "checks.0": {"exposed_port": 0},
    }
    wire = future_wire(MESH, base_record(), extra)
    assert record_to_wire(record_from_wire(copy.deepcopy(wire))) == wire
    verify_record(relayed(wire), MESH.bundle, MESH.now)


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"": {"x": float("nan")}}, r"record.x: numbers must be finite"),
        ({"services.0": {"x": {"y": {1, 2}}}}, r"services\[0\].x.y: not a JSON value"),
    ],
)
def test_unknown_fields_must_be_plain_json(extra: dict[str, dict[str, Any]], error: str) -> None:
    body = record_to_wire(base_record())
    body.update(extra.get("", {}))
    body["services"][0].update(extra.get("services.0", {}))
    with pytest.raises(RecordError, match=error):
        record_from_wire(body)


def test_unknown_fields_nested_too_deep_are_refused() -> None:
    deep: Any = {}
    for _ in range(100):
        deep = {"d": deep}
    with pytest.raises(RecordError, match=r"checks\[0\].x.*nested deeper"):
        record_from_wire(
            {**(w := record_to_wire(base_record())), "checks": [{**w["checks"][0], "x": deep}]}
        )


def test_the_signature_and_version_keys_are_never_kept_as_unknown() -> None:
    record = replace(base_record(), unknown_fields={"sig": 1, "v": 9, "z": 1})
    body = record_to_wire(record)
    assert body["v"] == 1 and "sig" not in body and body["z"] == 1


def test_an_owner_publishes_only_the_fields_it_knows() -> None:
    held = record_from_wire(future_wire(MESH, base_record()))
    assert has_unknown_fields(held) and held.signed is not None
    mine = known_only(held)
    assert not has_unknown_fields(mine) and mine.signed is None
    plain = base_record()
    assert known_only(plain) is plain


# -- stored and live ------------------------------------------------------------------------


def test_the_store_keeps_unknown_fields_across_a_restart(tmp_path: Path) -> None:
    held = record_from_wire(future_wire(MESH, base_record()))
    CatalogStore.open(tmp_path / "c.db").save_records([held])
    state = CatalogStore.open(tmp_path / "c.db").load_state()
    back = state.records["dc1"]["y"]
    assert back == held and back.signed == held.signed
    verify_record(back, MESH.bundle, MESH.now)


def test_a_catalog_keeps_a_peers_unknown_fields_and_drops_its_own(tmp_path: Path) -> None:
    """Own writes (an external node this agent owns, after a rollback from a newer
    version) go out with what this version knows; a peer's record stays whole."""
    catalog = LiveCatalog("dc1", CatalogStore.open(tmp_path / "c.db"), wall_ms=lambda: 1)
    peer = record_from_wire(future_wire(MESH, base_record("y")))
    catalog.apply([peer], self_origin="me")
    mine = record_from_wire(future_wire(MESH, replace(base_record("ext"), origin="me")))
    catalog.apply([mine])
    assert catalog.record("y") == peer
    held = catalog.record("ext")
    assert held is not None and not has_unknown_fields(held)


# -- over real sockets ----------------------------------------------------------------------


@pytest.fixture
async def agents(tmp_path: Path) -> AsyncIterator[SyncPeers]:
    async with SyncPeers(tmp_path) as make:
        yield make


def pushing(peers: list[SyncPeer]) -> None:
    members = [p.member() for p in peers]
    for p in peers:
        p.replicator(lambda: members, interval=3600, push=True, seed=p.name)


async def stop(peer: SyncPeer) -> None:
    peer.tls.pool.close_all()
    peer.server.close()
    peer.sock.close()
    await asyncio.wait_for(peer.server.wait_closed(), 5)


async def test_a_future_record_reaches_a_third_agent_through_this_version(
    agents: SyncPeers,
) -> None:
    """y (newer) pushes its own record to b (this version); b relays it to c, which
    checks y's signature: taken, not refused as `unsigned-relay`."""
    b, c = [await agents(n).start() for n in "bc"]
    pushing([b, c])
    wire = future_wire(agents.mesh, base_record("y", 3))
    (reply,) = await talk(
        b.addr, {"t": "push", "dc": "dc1", "records": [wire]}, tls=agents.tls_for("y")
    )
    assert reply["t"] == "ok" and b.has("y", 3)
    await eventually_async(lambda: c.has("y", 3), 10)
    assert c.server.refusals[refusals.UNSIGNED_RELAY] == 0
    held = c.catalog.record("y")
    assert held is not None and record_to_wire(held) == wire
    verify_record(held, agents.mesh.bundle, agents.mesh.now)


async def test_a_restarted_relay_still_passes_a_future_record_on(agents: SyncPeers) -> None:
    """b takes y's record, stops, starts again on its SQLite file; d pulls it from b."""
    b = await agents("b").start()
    wire = future_wire(agents.mesh, base_record("y", 3))
    await talk(b.addr, {"t": "push", "dc": "dc1", "records": [wire]}, tls=agents.tls_for("y"))
    assert b.has("y", 3)
    await stop(b)
    b2, d = await agents("b").start(), await agents("d").start()
    assert b2.has("y", 3)
    await d.replicator(lambda: [b2.member()]).round()
    assert d.has("y", 3) and d.server.refusals[refusals.UNSIGNED_RELAY] == 0
    held = d.catalog.record("y")
    assert held is not None and record_to_wire(held) == wire


async def test_a_relayed_future_record_changed_on_the_way_is_refused(agents: SyncPeers) -> None:
    b = await agents("b").start()
    wire = future_wire(agents.mesh, base_record("y", 3))
    wire["zone_hint"] = "elsewhere"
    await talk(b.addr, {"t": "push", "dc": "dc1", "records": [wire]}, tls=agents.tls_for("x"))
    assert b.catalog.record("y") is None
    assert b.server.refusals[refusals.UNSIGNED_RELAY] == 1
