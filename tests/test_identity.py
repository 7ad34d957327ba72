"""This agent's identity in-process: bootstrap, leaves on disk, races, rotation, seals.

Real SQLite stores and data dirs, no sockets: two "agents" replicate by
absorbing each other's CA map, as the digest exchange would.
"""

from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from gossamer.agent.identity.ca_config import apply_change, read_change
from gossamer.agent.identity.mesh_identity import IdentityNotReady, MeshIdentity
from gossamer.agent.identity.root_authority import CaExists
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.store import CatalogStore
from gossamer.gossip.rpc_records import KeyResponse
from gossamer.intentions.spiffe import ServiceId
from gossamer.proxy.ca import trust
from gossamer.proxy.ca.errors import CaConfigError, CertificateError
from gossamer.proxy.ca.keys import certificate_pem, colon_hex, generate_key, key_id, private_key_pem
from gossamer.proxy.ca.root import create_root, trust_domain
from gossamer.proxy.ca.verify import load_pem_chain, verify_chain
from tests.identity_support import make_identity

START_MS = 1_800_000_000_000


class Clock:
    def __init__(self) -> None:
        self.ms = START_MS

    def __call__(self) -> int:
        return self.ms

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.ms / 1000, UTC)


class Agent:
    """One agent's store, catalog and identity in a folder; `reopen` is a restart."""

    def __init__(self, folder: Path, clock: Clock, **kw: object) -> None:
        self.folder, self.clock, self.kw = folder, clock, kw
        folder.mkdir(exist_ok=True)
        self.store = CatalogStore.open(folder / "catalog.db")
        self.catalog = LiveCatalog("dc1", self.store, wall_ms=clock)
        self.identity = self._open()

    def _open(self) -> MeshIdentity:
        return make_identity(
            self.folder, self.store, self.catalog, registered={"web", "db"}.__contains__,
            wall_ms=self.clock, node=self.folder.name, node_id=f"id-{self.folder.name}",
            **self.kw,  # type: ignore[arg-type]
        )  # fmt: skip

    def reopen(self) -> None:
        self.store.close()
        self.store = CatalogStore.open(self.folder / "catalog.db")
        self.catalog = LiveCatalog("dc1", self.store, wall_ms=self.clock)
        self.identity = self._open()

    def sync_from(self, other: Agent) -> None:
        self.identity.ca.absorb(list(other.identity.ca.snapshot().entries.entries.items()))

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def a(tmp_path: Path, clock: Clock) -> Agent:
    agent = Agent(tmp_path / "a", clock)
    yield agent  # type: ignore[misc]
    agent.close()


def verifies(body: dict[str, object], roots: list[x509.Certificate], at: datetime) -> str:
    chain = load_pem_chain(str(body["CertPEM"]))
    found = verify_chain(chain[0], chain[1:], roots, at).identity
    assert isinstance(found, ServiceId)
    return found.service


def test_bootstrap_serves_a_leaf_that_verifies_and_keeps_keys_private(a: Agent) -> None:
    a.identity.authority.bootstrap()
    body = a.identity.leaf_json("web")
    assert verifies(body, a.identity.trust_bundle(), a.clock.now) == "web"
    assert (
        body["ServiceURI"]
        == f"spiffe://{a.identity.roots_json()['TrustDomain']}/ns/default/dc/dc1/svc/web"
    )
    files = sorted(p for p in (a.folder / "identity").rglob("*") if p.is_file())
    assert {p.name for p in files} == {
        "agent-key.pem", "agent.pem", "intermediate-key.pem", "intermediate.pem",
        "web.json", "root-key.pem",
    }  # fmt: skip
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert stat.S_IMODE((a.folder / "identity").stat().st_mode) == 0o700
    tls = a.identity.agent_tls()
    assert tls is not None and "PRIVATE KEY" in tls.key_pem
    agent_chain = load_pem_chain(tls.chain_pem)
    verify_chain(agent_chain[0], agent_chain[1:], a.identity.trust_bundle(), a.clock.now)


def test_a_restarted_agent_serves_the_same_leaf(a: Agent) -> None:
    a.identity.authority.bootstrap()
    first = a.identity.leaf_json("web")
    a.reopen()
    again = a.identity.leaf_json("web")
    assert again["SerialNumber"] == first["SerialNumber"]
    assert again["PrivateKeyPEM"] == first["PrivateKeyPEM"]


def test_a_leaf_is_renewed_after_its_renewal_moment(tmp_path: Path, clock: Clock) -> None:
    agent = Agent(tmp_path / "short", clock, leaf_ttl=timedelta(seconds=60))
    agent.identity.authority.bootstrap()
    first = agent.identity.leaf_json("web")
    clock.ms += 20_000  # before 45 % of 60 s
    assert agent.identity.leaf_json("web")["SerialNumber"] == first["SerialNumber"]
    clock.ms += 20_000  # past 60 % of it
    second = agent.identity.leaf_json("web")
    assert second["SerialNumber"] != first["SerialNumber"]
    assert int(second["ModifyIndex"]) > int(first["ModifyIndex"])  # type: ignore[call-overload]
    assert second["CreateIndex"] == first["CreateIndex"]
    agent.close()


def test_racing_agents_converge_on_one_root_and_reissue_under_it(
    tmp_path: Path, clock: Clock
) -> None:
    one, two = Agent(tmp_path / "one", clock), Agent(tmp_path / "two", clock)
    one.identity.authority.bootstrap()
    clock.ms += 5
    two.identity.authority.bootstrap()  # a later root: it loses
    loser_leaf = two.identity.leaf_json("db")
    two.sync_from(one)
    one.sync_from(two)
    assert one.identity.roots_json()["ActiveRootID"] == two.identity.roots_json()["ActiveRootID"]
    assert len(trust.race_losers(two.identity.state)) == 1
    two.identity.step()
    fresh = two.identity.leaf_json("db")
    assert fresh["SerialNumber"] != loser_leaf["SerialNumber"]
    for agent in (one, two):
        assert verifies(fresh, agent.identity.trust_bundle(), clock.now) == "db"
        assert verifies(one.identity.leaf_json("web"), agent.identity.trust_bundle(), clock.now)
    with pytest.raises(CertificateError):  # the losing root is trusted nowhere
        verifies(loser_leaf, one.identity.trust_bundle(), clock.now)
    one.close()
    two.close()


def test_rotation_keeps_old_leaves_good_until_the_old_root_retires(
    tmp_path: Path, clock: Clock
) -> None:
    agent = Agent(tmp_path / "rot", clock, leaf_ttl=timedelta(seconds=60))
    agent.identity.authority.bootstrap()
    old_leaf = agent.identity.leaf_json("web")
    old_root = agent.identity.roots_json()["ActiveRootID"]
    heard: list[int] = []
    agent.identity.on_change(lambda: heard.append(agent.identity.ca.roots_index))
    agent.identity.step()
    heard.clear()
    apply_change(agent.identity, read_change(agent.identity, {"ForceRotate": True}))
    assert len(heard) == 1  # the TLS layer hears of the new bundle once
    roots = agent.identity.roots_json()
    assert roots["ActiveRootID"] != old_root and len(roots["Roots"]) == 2
    new_leaf = agent.identity.leaf_json("web")  # reissued at once under the new root
    assert new_leaf["SerialNumber"] != old_leaf["SerialNumber"]
    bundle = agent.identity.trust_bundle()
    assert verifies(old_leaf, bundle, clock.now) and verifies(new_leaf, bundle, clock.now)
    old_only = [c for c in bundle if certificate_pem(c) == roots["Roots"][1]["RootCert"]]
    cross = agent.identity.bundle_intermediates()
    chain = load_pem_chain(str(new_leaf["CertPEM"]))
    verify_chain(chain[0], [*chain[1:], *cross], old_only, clock.now)  # via the cross-signed copy
    clock.ms += 121_000  # past the leaf TTL and its margin
    assert [r["ID"] for r in agent.identity.roots_json()["Roots"]] == [roots["ActiveRootID"]]
    before = agent.identity.ca.roots_index
    agent.identity.step()  # the loop's next pass (it sleeps until the retirement moment)
    assert len(heard) >= 2 and agent.identity.ca.roots_index > before  # roots watchers woken
    agent.close()


def test_init_is_refused_once_a_root_exists_and_changes_nothing(a: Agent) -> None:
    a.identity.authority.bootstrap()
    before = a.identity.roots_json()
    with pytest.raises(CaExists, match="rotate it instead"):
        apply_change(a.identity, read_change(a.identity, {"InitOnly": True}))
    assert a.identity.roots_json() == before


def test_an_operator_root_becomes_the_first_root(a: Agent) -> None:
    root = create_root(
        generate_key(), trust_domain("0d1e2f30-aaaa-bbbb-cccc-000000000001"), a.clock.now
    )
    body = {"Config": {"RootCert": certificate_pem(root.certificate),
                       "PrivateKey": private_key_pem(root.key)}, "InitOnly": True}  # fmt: skip
    apply_change(a.identity, read_change(a.identity, body))
    assert a.identity.roots_json()["Roots"][0]["RootCert"] == certificate_pem(root.certificate)
    assert verifies(a.identity.leaf_json("web"), [root.certificate], a.clock.now) == "web"


def test_a_bad_configuration_changes_nothing(a: Agent) -> None:
    a.identity.authority.bootstrap()
    before = (a.identity.roots_json(), a.identity.config_json())
    for body in (
        {"Config": {"LeafCertTTL": "5m"}},
        {"ForceWithoutCrossSigning": True, "ForceRotate": True},
        {"Provider": "vault"},
        {"Config": {"RootCert": "junk", "PrivateKey": "junk"}},
    ):
        with pytest.raises(CaConfigError):
            apply_change(a.identity, read_change(a.identity, body))
    assert (a.identity.roots_json(), a.identity.config_json()) == before


def test_an_agent_with_another_join_token_cannot_open_the_root_key(
    tmp_path: Path, clock: Clock
) -> None:
    one = Agent(tmp_path / "one", clock, join_token="the right token, long enough")
    two = Agent(tmp_path / "two", clock, join_token="a wrong token, long enough!!")
    one.identity.authority.bootstrap()
    two.sync_from(one)
    with pytest.raises(IdentityNotReady):
        two.identity.leaf_json("web")
    three = Agent(tmp_path / "three", clock, join_token="the right token, long enough")
    three.sync_from(one)
    assert verifies(three.identity.leaf_json("web"), one.identity.trust_bundle(), clock.now)
    for agent in (one, two, three):
        agent.close()


def test_a_root_from_config_is_the_first_root_and_refused_after(
    tmp_path: Path, clock: Clock
) -> None:
    root = create_root(
        generate_key(), trust_domain("0d1e2f30-aaaa-bbbb-cccc-000000000002"), clock.now
    )
    pems = {
        "root_cert": certificate_pem(root.certificate),
        "private_key": private_key_pem(root.key),
    }
    first = Agent(tmp_path / "first", clock, configured_root=pems)
    first.identity.authority.bootstrap()
    assert first.identity.roots_json()["Roots"][0]["RootCert"] == pems["root_cert"]
    assert not first.identity.authority.configured_root_refused()
    other = create_root(
        generate_key(), trust_domain("0d1e2f30-aaaa-bbbb-cccc-000000000003"), clock.now
    )
    theirs = {
        "root_cert": certificate_pem(other.certificate),
        "private_key": private_key_pem(other.key),
    }
    late = Agent(tmp_path / "late", clock, configured_root=theirs)
    late.sync_from(first)
    assert late.identity.authority.configured_root_refused()  # a root exists: rotate instead
    assert verifies(late.identity.leaf_json("web"), [root.certificate], clock.now) == "web"
    first.close()
    late.close()


def test_a_revoked_agent_s_intermediate_is_named_everywhere(tmp_path: Path, clock: Clock) -> None:
    one, two = Agent(tmp_path / "one", clock), Agent(tmp_path / "two", clock)
    one.identity.authority.bootstrap()
    two.sync_from(one)
    two.identity.leaf_json("web")  # two signs (and publishes) its intermediate
    one.sync_from(two)
    one.identity.revoke("id-two", "two", "disk stolen")
    two.sync_from(one)
    inter = two.identity.authority.intermediate
    assert inter is not None
    wanted = {key_id(inter.public_key())}
    assert one.identity.revoked_key_ids() == two.identity.revoked_key_ids() == wanted
    assert two.identity.revoked_json() == [
        {"Node": "two", "NodeID": "id-two", "AtMs": clock.ms, "Reason": "disk stolen",
         "IntermediateKeyID": colon_hex(key_id(inter.public_key()))}
    ]  # fmt: skip
    one.close()
    two.close()


async def test_seals_follow_the_gossip_keyring(tmp_path: Path, clock: Clock) -> None:
    key_a, key_b = base64.b64encode(b"a" * 32).decode(), base64.b64encode(b"b" * 32).decode()
    ring = {key_a: 1}

    async def list_keys() -> KeyResponse:
        return KeyResponse({}, dict(ring), num_nodes=1, num_err=0, num_resp=1)

    one = Agent(tmp_path / "one", clock, encrypt=key_a, list_keys=list_keys)
    one.identity.authority.bootstrap()
    ring[key_b] = 1  # gossamer keyring --install B
    await one.identity.secrets.refresh()
    one.identity.step()
    assert len(one.identity.state.seals[one.identity.roots_json()["ActiveRootID"]]) == 2
    del ring[key_a]  # --use B, --remove A
    await one.identity.secrets.refresh()
    one.identity.step()
    assert len(one.identity.state.seals[one.identity.roots_json()["ActiveRootID"]]) == 1
    old_key = Agent(tmp_path / "old", clock, encrypt=key_a)
    new_key = Agent(tmp_path / "new", clock, encrypt=key_b)
    for agent in (old_key, new_key):
        agent.sync_from(one)
    with pytest.raises(IdentityNotReady):  # a removed key opens nothing any more
        old_key.identity.leaf_json("web")
    assert verifies(new_key.identity.leaf_json("web"), one.identity.trust_bundle(), clock.now)
    for agent in (one, old_key, new_key):
        agent.close()
