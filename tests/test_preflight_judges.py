"""The pure judges of `gossamer check` and the clock query's arithmetic, as tables.

The real-agent cases (each failure made on purpose) are in test_check_cli.py;
these pin the edges that a live cluster cannot reach quickly: an old serf, a
clock 45 s off, a keyring that differs, a root about to expire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gossamer.agent.preflight import cluster_checks as cc
from gossamer.agent.preflight import host_checks as hc
from gossamer.agent.preflight import identity_checks as ic
from gossamer.agent.preflight import proxy_cert
from gossamer.agent.preflight import proxy_checks as pc
from gossamer.agent.preflight.render import json_text, text_lines
from gossamer.agent.preflight.result import (
    Status,
    exit_code,
    fail,
    ok,
    pointed_at,
    skip,
    warn,
)
from gossamer.gossip import clock_query
from gossamer.proxy.ca.keys import certificate_pem, generate_key
from gossamer.proxy.ca.leaf import issue_leaf
from gossamer.proxy.ca.profile import common_name, end_entity_builder, sign, uri_sans
from tests.ca_support import DC, make_mesh
from tests.proxy_pki import CLUSTER_B

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("facts", "status", "text"),
    [
        (hc.SerfFacts(None), Status.FAIL, "no serf binary on PATH"),
        (hc.SerfFacts("/bin/serf", "Serf v0.6.4\n"), Status.FAIL, "older than 0.7.0"),
        (hc.SerfFacts("/bin/serf", "", error="exit code 2"), Status.FAIL, "failed"),
        (hc.SerfFacts("/bin/serf", "garbage"), Status.FAIL, "cannot read a version"),
        (hc.SerfFacts("/bin/serf", "0.8.2-dev\nAgent Protocol: 5"), Status.OK, "version 0.8.2"),
    ],
)
def test_serf(facts: hc.SerfFacts, status: Status, text: str) -> None:
    result = hc.judge_serf(facts)
    assert result.status is status and text in result.detail
    assert (result.hint != "") is (status is not Status.OK)


@pytest.mark.parametrize(
    ("facts", "running", "status", "text"),
    [
        (hc.DataDirFacts("/d", False), False, Status.OK, "will be created"),
        (hc.DataDirFacts("/d", False, writable=False), False, Status.FAIL, "cannot be created"),
        (hc.DataDirFacts("/d", False), True, Status.FAIL, "does not exist"),
        (hc.DataDirFacts("/d", True, is_dir=False), False, Status.FAIL, "not a directory"),
        (hc.DataDirFacts("/d", True, writable=False), True, Status.FAIL, "not writable"),
        (hc.DataDirFacts("/d", True, exposed=(("serf", 0o755),)), True, Status.FAIL, "0755"),
        (hc.DataDirFacts("/d", True, lock_holder=42), False, Status.FAIL, "pid 42"),
        (hc.DataDirFacts("/d", True, lock_holder=42), True, Status.OK, "secrets private"),
    ],
)
def test_data_dir(facts: hc.DataDirFacts, running: bool, status: Status, text: str) -> None:
    result = hc.judge_data_dir(facts, running)
    assert result.status is status and text in result.detail


def _port(running: bool, *sockets: hc.SocketFacts) -> hc.PortFacts:
    return hc.PortFacts("serf", "10.0.0.1", 8301, sockets, frozenset({100, 101}))


@pytest.mark.parametrize(
    ("sockets", "running", "status", "text"),
    [
        ((hc.SocketFacts("tcp"), hc.SocketFacts("udp")), False, Status.OK, "free"),
        ((hc.SocketFacts("tcp", ((7, "nginx"),), True),), False, Status.FAIL, "pid 7 (nginx)"),
        ((hc.SocketFacts("tcp", (), True),), False, Status.FAIL, "another process"),
        ((hc.SocketFacts("tcp", error="cannot bind: x"),), False, Status.FAIL, "cannot bind"),
        ((hc.SocketFacts("tcp", ((101, "serf"),), True),), True, Status.OK, "held by this agent"),
        ((hc.SocketFacts("tcp", ((7, "nginx"),), True),), True, Status.FAIL, "pid 7"),
        ((hc.SocketFacts("udp"),), True, Status.FAIL, "nothing listens"),
    ],
)
def test_ports(
    sockets: tuple[hc.SocketFacts, ...], running: bool, status: Status, text: str
) -> None:
    result = hc.judge_port(_port(running, *sockets), running)
    assert result.status is status and text in result.detail


@pytest.mark.parametrize(
    ("offsets", "status"),
    [
        ({}, Status.OK),
        ({"b": 0.004, "c": -0.2}, Status.OK),
        ({"b": 0.004, "c": -2.5}, Status.WARN),
        ({"b": 45.0}, Status.FAIL),
        (None, Status.FAIL),
    ],
)
def test_clock(offsets: dict[str, float] | None, status: Status) -> None:
    assert cc.judge_clock(offsets, [], "404").status is status


def test_clock_names_the_worst_peer_and_the_silent_ones() -> None:
    assert "-2.500 s (c)" in cc.judge_clock({"b": 0.004, "c": -2.5}, [], "").detail
    result = cc.judge_clock({"b": 0.004}, ["old"], "")
    assert result.status is Status.WARN and "no answer from old" in result.detail
    assert cc.judge_clock({}, ["old"], "").detail == "no peer answered; no answer from old"


def test_members_name_the_failed_ones_sorted() -> None:
    members = [{"Name": n, "Status": s} for n, s in (("a", 1), ("z", 4), ("m", 4), ("l", 3))]
    result = cc.judge_members(members, "a", 4)
    assert result.status is Status.FAIL and result.detail == "1 alive, failed: m, z"
    assert cc.left_members(members) == ["l"]


TOKEN = "GOSSAMER_HTTP_TOKEN (CONSUL_HTTP_TOKEN)"


@pytest.mark.parametrize(
    ("listed", "known", "status", "text"),
    [
        (("a", "b"), 2, Status.OK, "2 alive, none failed"),
        (("a", "b"), None, Status.OK, "2 alive, none failed"),
        (("a", "b", "c"), 2, Status.OK, "3 alive"),  # one joined between the two requests
        # found by a review: ACLs empty the list, and that passed as "0 alive"
        ((), 3, Status.FAIL, "cannot see the members: the token lacks node:read"),
        (("b", "c"), 3, Status.FAIL, "cannot see the members: the token lacks node:read"),
        (("a",), 3, Status.FAIL, "(1 of 3 listed)"),
    ],
)
def test_members_the_token_cannot_see(
    listed: tuple[str, ...], known: int | None, status: Status, text: str
) -> None:
    members = [{"Name": n, "Status": 1} for n in listed]
    result = cc.judge_members(members, "a", known)
    assert result.status is status and text in result.detail
    assert (TOKEN in result.hint) is (status is Status.FAIL)


@pytest.mark.parametrize(
    ("services", "registered", "denied", "status", "text"),
    [
        ({"web": {}, "web-sidecar-proxy": {"Kind": "connect-proxy"}}, 2, False, Status.OK, "2 "),
        ({}, 0, False, Status.OK, "0 registered, 0 sidecar(s)"),
        # found by a review: ACLs filtered the list to {} and no sidecar was checked
        ({}, 2, False, Status.FAIL, "0 of 2 listed: the token may not read the others"),
        (None, 2, True, Status.FAIL, "cannot list them"),
        (None, 2, False, Status.FAIL, "cannot list them"),
    ],
)
def test_services_the_token_cannot_see(
    services: dict[str, object] | None,
    registered: int,
    denied: bool,
    status: Status,
    text: str,
) -> None:
    result = cc.judge_services(services, registered, "boom", denied)  # type: ignore[arg-type]
    assert result.status is status and text in result.detail
    assert (TOKEN in result.hint) is (denied or (services is not None and status is Status.FAIL))


@pytest.mark.parametrize(
    ("encrypted", "keyring", "status", "text"),
    [
        (False, None, Status.WARN, "not encrypted"),
        (True, None, Status.FAIL, "could not be listed"),
        (True, [{"Keys": {"k1": 3}, "NumNodes": 3}], Status.OK, "1 key(s)"),
        (True, [{"Keys": {"k1": 3, "k2xxxxxxxx": 2}, "NumNodes": 3}], Status.FAIL, "2 of 3"),
    ],
)
def test_encryption(encrypted: bool, keyring: object, status: Status, text: str) -> None:
    result = cc.judge_encryption(encrypted, keyring)  # type: ignore[arg-type]
    assert result.status is status and text in result.detail


def test_reachable_tells_a_consul_agent_and_a_waiting_one() -> None:
    debug = dict.fromkeys(cc.GOSSAMER_DEBUG_KEYS, 1)
    ready = {"Config": {"NodeName": "a"}, "DebugConfig": debug, "Gossamer": {"Ready": True}}
    assert cc.judge_reachable("u", ready, "").status is Status.OK
    waiting = {**ready, "Gossamer": {"Ready": False}}
    assert "not ready yet" in cc.judge_reachable("u", waiting, "").detail
    consul = {"Config": {"NodeName": "a"}, "DebugConfig": {"DataDir": "/d"}}
    assert "not a gossamer agent" in cc.judge_reachable("u", consul, "").detail
    assert cc.judge_reachable("u", None, "refused").status is Status.FAIL


def test_an_agent_that_refuses_the_token_is_not_told_to_start() -> None:
    """Found by a review: a 403 on /v1/agent/self got "start the agent"."""
    down = cc.judge_reachable("u", None, "connection refused")
    assert "start the agent" in down.hint and TOKEN not in down.hint
    denied = cc.judge_reachable("u", None, "Permission denied (HTTP 403)", denied=True)
    assert denied.status is Status.FAIL and "start the agent" not in denied.hint
    assert "agent:read" in denied.hint and "--token" in denied.hint and TOKEN in denied.hint


def test_a_token_refused_the_leaf_or_the_keyring_warns() -> None:
    leaf = ic.judge_leaf("web", None, "Permission denied (HTTP 403)", NOW, denied=True)
    assert leaf.status is Status.WARN and "service:write on web" in leaf.hint
    keyring = cc.judge_encryption(True, None, denied=True)
    assert keyring.status is Status.WARN and "keyring:read" in keyring.hint


def test_default_policy_allow_warns_deny_passes() -> None:
    assert cc.judge_default_policy("allow").status is Status.WARN
    assert cc.judge_default_policy("deny").status is Status.OK


def _root(active: bool, before: datetime, after: datetime) -> dict[str, object]:
    return {
        "ID": "ab:cd:ef:01",
        "Active": active,
        "NotBefore": before.isoformat(),
        "NotAfter": after.isoformat().replace("+00:00", "Z"),
    }


@pytest.mark.parametrize(
    ("roots", "status", "text"),
    [
        ([], Status.FAIL, "no active root"),
        ([_root(True, NOW - timedelta(days=1), NOW + timedelta(days=3650))], Status.OK, "3650"),
        ([_root(True, NOW - timedelta(days=1), NOW + timedelta(days=10))], Status.WARN, "10.0"),
        (
            [
                _root(True, NOW - timedelta(days=1), NOW + timedelta(days=3650)),
                _root(False, NOW - timedelta(days=9), NOW - timedelta(days=1)),
            ],
            Status.FAIL,
            "expired",
        ),
    ],
)
def test_roots(roots: list[dict[str, object]], status: Status, text: str) -> None:
    result = ic.judge_roots({"Roots": roots, "TrustDomain": "x.consul"}, "", NOW)
    assert result.status is status and text in result.detail


@pytest.mark.parametrize(
    ("after", "before", "status", "text"),
    [
        # 72 h leaves back-dated a minute: fresh, nearly out (renewal failing), expired, future
        (NOW - timedelta(minutes=1), NOW + timedelta(hours=72), Status.OK, "3.0 days"),
        (NOW - timedelta(hours=62), NOW + timedelta(hours=10), Status.WARN, "renewed"),
        (NOW - timedelta(hours=73), NOW - timedelta(hours=1), Status.FAIL, "expired 1.0 hours"),
        (NOW + timedelta(hours=1), NOW + timedelta(hours=73), Status.FAIL, "not valid before"),
    ],
)
def test_leaf_validity(after: datetime, before: datetime, status: Status, text: str) -> None:
    leaf = {"ValidAfter": after.isoformat(), "ValidBefore": before.isoformat()}
    result = ic.judge_leaf("web", leaf, "", NOW)
    assert result.status is status and text in result.detail


def test_a_10s_test_leaf_is_not_taken_for_one_whose_renewal_fails() -> None:
    # NotBefore is a minute back: 70 s of window but 10 s of life; 6 s left is fine
    leaf = {
        "ValidAfter": (NOW - timedelta(seconds=64)).isoformat(),
        "ValidBefore": (NOW + timedelta(seconds=6)).isoformat(),
    }
    assert ic.judge_leaf("web", leaf, "", NOW).status is Status.OK


def test_leaf_the_agent_cannot_issue() -> None:
    result = ic.judge_leaf("web", None, "internal error (HTTP 500)", NOW)
    assert result.status is Status.FAIL and "HTTP 500" in result.detail


def test_rpc_identity() -> None:
    good = {
        "AgentCertificate": {"Valid": True, "NotAfter": (NOW + timedelta(days=3)).isoformat()},
        "Peers": {"a": {"State": "valid"}, "b": {"State": "not-enrolled"}},
    }
    assert ic.judge_rpc_identity(good, NOW).status is Status.OK
    revoked = {**good, "Peers": {"a": {"State": "valid"}, "b": {"State": "revoked"}}}
    result = ic.judge_rpc_identity(revoked, NOW)
    assert result.status is Status.FAIL and "b (revoked)" in result.detail
    assert "`gossamer force-leave NODE`" in result.hint
    assert ic.judge_rpc_identity({"AgentCertificate": {}}, NOW).status is Status.FAIL


@pytest.mark.parametrize(
    ("gone", "status", "text"),
    [
        ((), Status.FAIL, "b (revoked), c (untrusted)"),  # alive or failed: still failing
        (("c",), Status.FAIL, "b (revoked)"),
        # found by a review: the hint's own `force-leave` leaves b listed as left, and the
        # line kept failing
        (("b", "c"), Status.OK, "1 peer(s) trusted, 2 that left not judged"),
    ],
)
def test_rpc_identity_passes_over_members_that_left(
    gone: tuple[str, ...], status: Status, text: str
) -> None:
    identity = {
        "AgentCertificate": {"Valid": True, "NotAfter": (NOW + timedelta(days=3)).isoformat()},
        "Peers": {"a": {"State": "valid"}, "b": {"State": "revoked"}, "c": {"State": "untrusted"}},
    }
    result = ic.judge_rpc_identity(identity, NOW, gone)
    assert result.status is status and text in result.detail


def test_sidecars_and_their_services_from_agent_services() -> None:
    services = {
        "web": {"Kind": "", "Service": "web"},
        "web-sidecar-proxy": {
            "Kind": "connect-proxy",
            "ID": "web-sidecar-proxy",
            "Proxy": {"DestinationServiceName": "web"},
        },
        "db-sidecar-proxy": {
            "Kind": "connect-proxy",
            "ID": "db-sidecar-proxy",
            "Proxy": {"DestinationServiceName": "db"},
        },
    }
    assert [s["ID"] for s in ic.sidecars(services)] == ["db-sidecar-proxy", "web-sidecar-proxy"]
    assert ic.connect_services(services) == ["db", "web"]


@dataclass(frozen=True)
class Certs:
    """This mesh (dc1) and another cluster's, and the sidecar certificates the table shows."""

    trust: pc.MeshTrust
    web: x509.Certificate  # this mesh's leaf of web
    ca: x509.Certificate  # the agent's intermediate that signed it
    db: x509.Certificate
    web_dc2: x509.Certificate
    web_expired: x509.Certificate
    foreign_web: x509.Certificate  # another cluster's leaf of web
    foreign_ca: x509.Certificate
    forged_web: x509.Certificate  # this mesh's exact SPIFFE ID of web, signed by the other CA


@pytest.fixture(scope="module")
def certs() -> Certs:
    made = NOW - timedelta(days=10)
    mesh, other = make_mesh(now=made), make_mesh(CLUSTER_B, now=made)
    roots = {
        "TrustDomain": mesh.root.trust_domain,
        "Roots": [{"RootCert": certificate_pem(mesh.root.certificate)}],
    }
    trust = pc.mesh_trust(roots, DC)
    assert trust is not None
    key = generate_key()
    uri = f"spiffe://{mesh.root.trust_domain}/ns/default/dc/{DC}/svc/web"
    forged = end_entity_builder(common_name("web"), key.public_key(), uri)
    return Certs(
        trust,
        issue_leaf(mesh.intermediate, DC, "web", NOW - timedelta(hours=1)).certificate,
        mesh.intermediate.certificate,
        issue_leaf(mesh.intermediate, DC, "db", NOW - timedelta(hours=1)).certificate,
        issue_leaf(mesh.intermediate, "dc2", "web", NOW - timedelta(hours=1)).certificate,
        issue_leaf(mesh.intermediate, DC, "web", NOW - timedelta(hours=80)).certificate,
        issue_leaf(other.intermediate, DC, "web", NOW - timedelta(hours=1)).certificate,
        other.intermediate.certificate,
        sign(forged, other.intermediate, NOW - timedelta(hours=1), timedelta(hours=72)),
    )


def presented(*chain: x509.Certificate) -> pc.Presented:
    """What the probe makes of a listener sending `chain` (leaf first)."""
    leaf = chain[0]
    return pc.Presented(
        "",
        leaf.not_valid_before_utc,
        leaf.not_valid_after_utc,
        tuple(uri_sans(leaf)),
        tuple(c.public_bytes(serialization.Encoding.DER) for c in chain),
    )


FOREIGN = "not issued by this mesh's CA: a stale proxy from another cluster"


@pytest.mark.parametrize(
    ("case", "status", "text", "hint"),
    [
        ("refused", Status.FAIL, "refused", "gossamer connect proxy --sidecar-for web"),
        ("web", Status.OK, "certificate of web, expires in 3.0 days", ""),
        ("db", Status.FAIL, "/svc/db, not for web", "restart it"),
        ("expired", Status.FAIL, "expired 8.0 hours ago", "SIGHUP asks the agent again"),
        # found by a review: these passed on the URI's `/svc/web` alone
        ("foreign", Status.FAIL, "55555555.consul/ns/default/dc/dc1/svc/web, not spiffe", FOREIGN),
        ("dc2", Status.FAIL, "/dc/dc2/svc/web, not spiffe", FOREIGN),
        ("forged", Status.FAIL, "its chain does not verify", FOREIGN),
        ("no intermediate", Status.FAIL, "its chain does not verify", FOREIGN),
        ("no roots", Status.WARN, "its chain is not checked", "CA and roots valid"),
    ],
)
def test_proxy(certs: Certs, case: str, status: Status, text: str, hint: str) -> None:
    shown = {
        "refused": pc.Presented(error="1.2.3.4:5: Connection refused"),
        "web": presented(certs.web, certs.ca),
        "db": presented(certs.db, certs.ca),
        "expired": presented(certs.web_expired, certs.ca),
        "foreign": presented(certs.foreign_web, certs.foreign_ca),
        "dc2": presented(certs.web_dc2, certs.ca),
        "forged": presented(certs.forged_web, certs.foreign_ca),
        "no intermediate": presented(certs.web),
        "no roots": presented(certs.web, certs.ca),
    }[case]
    trust = None if case == "no roots" else certs.trust
    result = proxy_cert.judge_proxy("web-sidecar-proxy", "web", "1.2.3.4:5", shown, NOW, trust)
    assert result.status is status and text in result.detail, result
    assert hint in result.hint


def test_mesh_trust_needs_readable_roots() -> None:
    assert pc.mesh_trust(None, DC) is None
    assert pc.mesh_trust({"TrustDomain": "td", "Roots": []}, DC) is None
    assert pc.mesh_trust({"TrustDomain": "td", "Roots": [{"RootCert": "junk"}]}, DC) is None


def _sidecar(address: str = "", **config: object) -> dict[str, object]:
    return {
        "Kind": "connect-proxy",
        "ID": "pay-sidecar-proxy",
        "Port": 21000,
        "Address": address,
        "Proxy": {"DestinationServiceName": "pay", "LocalServicePort": 9, "Config": config},
    }


@pytest.mark.parametrize(
    ("registration", "dialled"),
    [
        (_sidecar("10.0.0.5"), "10.0.0.5:21000"),
        # found by a review: the proxy binds Proxy.Config.bind_address first, not Address
        (_sidecar("203.0.113.9", bind_address="10.0.0.5"), "10.0.0.5:21000"),
        (_sidecar("10.0.0.5", bind_port=21005), "10.0.0.5:21005"),
        (_sidecar(""), "127.0.0.1:21000"),  # the proxy binds 0.0.0.0
        (_sidecar("203.0.113.9", bind_address="0.0.0.0"), "127.0.0.1:21000"),
        (_sidecar("", bind_address="::"), "[::1]:21000"),
    ],
)
def test_the_proxy_is_dialled_where_it_binds(registration: dict[str, object], dialled: str) -> None:
    target = pc.dial_target(registration)
    assert not target.error and target.shown == dialled


def test_a_registration_the_proxy_refuses_fails_its_line() -> None:
    target = pc.dial_target(_sidecar("10.0.0.5", bind_port="x"))
    assert "Proxy.Config.bind_port" in target.error
    result = pc.judge_registration("pay-sidecar-proxy", "pay", target)
    assert result.status is Status.FAIL and "refuses its registration" in result.detail


def test_upstreams() -> None:
    assert pc.judge_upstreams("p", []).status is Status.OK
    assert pc.judge_upstreams("p", [("db", 2)]).status is Status.OK
    result = pc.judge_upstreams("p", [("db", 2), ("cache", 0), ("q", None)])
    assert result.status is Status.FAIL and "cache, q" in result.hint


def test_exit_code_and_rendering() -> None:
    results = [ok("host", "a"), warn("host", "b", "d", "h"), skip("agent", "c", "why")]
    assert exit_code(results) == 0
    lines = text_lines(results)
    assert lines[0] == "[bold]host[/]" and "    [dim]hint:[/] h" in lines
    assert lines[-1] == "[green]Status check results are ✔[/]"
    results.append(fail("agent", "e", "[x]", "fix"))
    assert exit_code(results) == 1
    assert "e: \\[x]" in "\n".join(text_lines(results))  # rich markup in details is escaped
    body = json.loads(json_text(results))
    assert body["Success"] is False
    assert [c["Status"] for c in body["Checks"]] == ["ok", "warn", "skip", "fail"]


@pytest.mark.parametrize(
    ("hint", "pointed"),
    [
        ("or `gossamer force-leave NODE` for one gone for good",
         "or `gossamer force-leave NODE --http-addr http://h:1` for one gone for good"),
        ("`gossamer keyring --install KEY` again", "`gossamer keyring --install KEY --http-addr "
         "http://h:1` again"),
        ("rotate: `gossamer ca rotate`", "rotate: `gossamer ca rotate --http-addr http://h:1`"),
        ("as root (`sudo gossamer check`)", "as root (`sudo gossamer check --http-addr http://h:1`)"),
        # asks no agent, or points at one already: as it was
        ("`gossamer keygen`, then --encrypt", "`gossamer keygen`, then --encrypt"),
        ("`gossamer agent ...`; `gossamer check --pre`",
         "`gossamer agent ...`; `gossamer check --pre`"),
        ("`gossamer catalog x --http-addr http://o:2`", "`gossamer catalog x --http-addr http://o:2`"),
        ("", ""),
    ],
)  # fmt: skip
def test_hints_name_the_agent_that_was_checked(hint: str, pointed: str) -> None:
    """A hint's agent command copied as shown must reach the agent the checks asked; the
    proxy's hints did, the others asked the CLI's default agent."""
    result = fail("cluster", "members", "x", hint)
    assert [r.hint for r in pointed_at([result], "http://h:1")] == [pointed]
    assert pointed_at([result], "") == [result]  # the default agent: nothing to add


def test_clock_payload_and_offset() -> None:
    assert (
        clock_query.decode(clock_query.encode(1_733_000_000_123_456_789))
        == 1_733_000_000_123_456_789
    )
    assert clock_query.decode(b"not-a-number") is None
    # sent at 0, answered at 100 ms, peer read 2.08 s: 1.98 s ahead, within 0.1 s
    clock = clock_query.offset(0, 100_000_000, 2_080_000_000)
    assert clock.offset_s == pytest.approx(1.98) and clock.uncertainty_s == pytest.approx(0.1)
