"""The SPIFFE ID parser: tables of what the spec accepts and refuses, and a fuzz harness."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.intentions.spiffe import (
    AgentId,
    ServiceId,
    SpiffeError,
    SpiffeId,
    check_trust_domain,
    parse_agent_uri,
    parse_id,
    parse_identity,
    parse_service_uri,
    parse_trust_domain_uri,
    trust_domain_uri,
)

TD = "11111111-2222-3333-4444-555555555555.consul"
WEB = f"spiffe://{TD}/ns/default/dc/dc1/svc/web"
AGENT = f"spiffe://{TD}/agent/client/dc/dc1/id/0b5c5e1c-7a5e-4bd7-9d2b-2b7b7a4a8a11"

ACCEPTED = [
    (f"spiffe://{TD}", SpiffeId(TD)),
    ("spiffe://a", SpiffeId("a")),
    ("spiffe://x_y.z-1/A.b_c-9", SpiffeId("x_y.z-1", ("A.b_c-9",))),
    ("spiffe://td/a/b/c", SpiffeId("td", ("a", "b", "c"))),
    ("spiffe://td/...", SpiffeId("td", ("...",))),  # only "." and ".." are dot segments
]


@pytest.mark.parametrize(("uri", "expected"), ACCEPTED)
def test_well_formed_ids_parse(uri: str, expected: SpiffeId) -> None:
    assert parse_id(uri) == expected
    assert expected.uri == uri


REFUSED = [
    ("", "does not start with"),
    ("td/ns/default", "does not start with"),
    ("https://td/x", "scheme must be 'spiffe', got 'https'"),
    ("SPIFFE://td/x", "lower-case 'spiffe', got 'SPIFFE'"),
    ("Spiffe://td/x", "lower-case 'spiffe'"),
    ("spiffe:td/x", "followed by '//'"),
    ("spiffe:/td/x", "followed by '//'"),
    ("spiffe://", "trust domain is empty"),
    ("spiffe:///ns/default", "trust domain is empty"),
    ("spiffe://Example.org/x", "upper-case"),
    ("spiffe://td:8443/x", "has a port"),
    ("spiffe://user@td/x", "user info"),
    ("spiffe://user:pw@td/x", "user info"),
    ("spiffe://t%41d/x", "may hold only a-z"),
    ("spiffe://t d/x", "may hold only a-z"),
    ("spiffe://tëd/x", "may hold only a-z"),
    (f"spiffe://{'a' * 256}", "longer than 255"),
    ("spiffe://td/", "trailing slash"),
    ("spiffe://td/a/", "trailing slash"),
    ("spiffe://td//a", "segment 1 is empty"),
    ("spiffe://td/a//b", "segment 2 is empty"),
    ("spiffe://td/./a", "segment 1 is '.'"),
    ("spiffe://td/a/..", "segment 2 is '..'"),
    ("spiffe://td/a%2Fb", "segment 1 ('a%2Fb') may hold only"),
    ("spiffe://td/a b", "may hold only"),
    ("spiffe://td/a?x=1", "no query"),
    ("spiffe://td?x", "no query"),
    ("spiffe://td/a#frag", "no fragment"),
    ("spiffe://td#", "no fragment"),
    (f"spiffe://td/{'a' * 2100}", "at most 2048 bytes"),
]


@pytest.mark.parametrize(("uri", "message"), REFUSED)
def test_the_spec_refusals_name_the_problem(uri: str, message: str) -> None:
    with pytest.raises(SpiffeError) as caught:
        parse_id(uri)
    assert message in str(caught.value)


def test_a_non_string_is_a_spiffe_error() -> None:
    with pytest.raises(SpiffeError, match="is a string"):
        parse_id(b"spiffe://td")  # type: ignore[arg-type]


# --- service IDs (Consul's shape; the authorize endpoint's tests cover it over HTTP too) ------


def test_service_ids_parse_and_round_trip() -> None:
    web = parse_service_uri(WEB)
    assert web == ServiceId(trust_domain=TD, datacenter="dc1", service="web")
    assert web.uri == WEB
    with_partition = parse_service_uri(f"spiffe://{TD}/ap/default/ns/default/dc/dc1/svc/web")
    assert with_partition == web


SERVICE_REFUSED = [
    (f"spiffe://{TD}", "does not name a service"),
    (AGENT, "does not name a service"),
    (f"spiffe://{TD}/ns/default/dc/dc1/svc", "does not name a service"),
    (f"spiffe://{TD}/ns/default/dc/dc1/svc/web/extra", "does not name a service"),
    (f"spiffe://{TD}/ns/default/dc/dc1/api/web", "does not name a service"),
    (f"spiffe://{TD}/ap", "does not name a service"),
    (f"spiffe://{TD}/ns/team/dc/dc1/svc/web", "ns must be 'default'"),
    (f"spiffe://{TD}/ap/part/ns/default/dc/dc1/svc/web", "ap must be 'default'"),
    (f"spiffe://{TD}/ns/default/dc/dc1/svc/-web", "not a valid service name"),
    (f"spiffe://{TD}/ns/default/dc/dc1/svc/web.x", "not a valid service name"),
    (f"SPIFFE://{TD}/ns/default/dc/dc1/svc/web", "lower-case"),
    (f"spiffe://{TD.upper()}/ns/default/dc/dc1/svc/web", "upper-case"),
    (f"spiffe://{TD}/ns/default/dc/dc1/svc/web/", "trailing slash"),
    (f"spiffe://{TD}/ns/default/dc/./svc/web", "dot segments"),
]


@pytest.mark.parametrize(("uri", "message"), SERVICE_REFUSED)
def test_service_refusals_name_the_problem(uri: str, message: str) -> None:
    with pytest.raises(SpiffeError) as caught:
        parse_service_uri(uri)
    assert message in str(caught.value)


# --- agent IDs and trust-domain IDs ------------------------------------------------------


def test_agent_ids_parse_and_round_trip() -> None:
    agent = parse_agent_uri(AGENT)
    assert agent == AgentId(TD, "dc1", "0b5c5e1c-7a5e-4bd7-9d2b-2b7b7a4a8a11")
    assert agent.uri == AGENT
    assert parse_identity(AGENT) == agent
    assert parse_identity(WEB) == parse_service_uri(WEB)


@pytest.mark.parametrize(
    "uri",
    [
        WEB,
        f"spiffe://{TD}/agent/server/dc/dc1/id/n1",
        f"spiffe://{TD}/agent/client/dc/dc1/id",
        f"spiffe://{TD}/agent/client/dc/dc1/node/n1",
        f"spiffe://{TD}/agent/client/dc/dc1/id/n1/x",
    ],
)
def test_agent_refusals_name_the_shape(uri: str) -> None:
    with pytest.raises(SpiffeError, match="does not name an agent"):
        parse_agent_uri(uri)


def test_trust_domain_ids() -> None:
    assert trust_domain_uri(TD) == f"spiffe://{TD}"
    assert parse_trust_domain_uri(f"spiffe://{TD}") == TD
    with pytest.raises(SpiffeError, match="has a path"):
        parse_trust_domain_uri(WEB)
    with pytest.raises(SpiffeError, match="upper-case"):
        trust_domain_uri("Mesh.consul")
    assert check_trust_domain("a.b") == "a.b"
    with pytest.raises(SpiffeError, match="empty"):
        check_trust_domain("")


# --- fuzz: garbage parses or raises SpiffeError, never anything else --------------------------

PARSERS = [parse_id, parse_service_uri, parse_agent_uri, parse_identity, parse_trust_domain_uri]
_NEAR = st.sampled_from(["spiffe://", "SPIFFE://", "spiffe:", "spiffe://td/", f"spiffe://{TD}/"])
_PIECES = st.sampled_from(
    [
        "/",
        ".",
        "..",
        "ns",
        "default",
        "dc",
        "svc",
        "agent",
        "client",
        "id",
        "ap",
        "@",
        ":",
        "?",
        "#",
        "%",
        "A",
        "x",
        "-",
        "_",
        "é",
        "\x00",
    ]
)


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_spiffe_error(garbage: str) -> None:
    for parse in PARSERS:
        with contextlib.suppress(SpiffeError):
            parse(garbage)


@given(_NEAR, st.lists(_PIECES, max_size=20))
def test_near_misses_parse_or_raise_spiffe_error(prefix: str, pieces: list[str]) -> None:
    uri = prefix + "".join(pieces)
    for parse in PARSERS:
        try:
            found = parse(uri)
        except SpiffeError:
            continue
        assert isinstance(found, SpiffeId | ServiceId | AgentId | str)
        assert parse_id(uri).uri == uri  # what any parser accepts is a valid ID, kept as is


_TD_ST = st.from_regex(r"[a-z0-9._-]{1,40}", fullmatch=True)
_SEGMENT_ST = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)
_NAME_ST = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(_TD_ST, st.lists(_SEGMENT_ST, max_size=8))
def test_generated_valid_ids_round_trip(trust_domain: str, segments: list[str]) -> None:
    spiffe_id = SpiffeId(trust_domain, tuple(segments))
    assert parse_id(spiffe_id.uri) == spiffe_id


@given(_TD_ST, _SEGMENT_ST, _NAME_ST)
def test_generated_service_and_agent_ids_round_trip(td: str, dc: str, name: str) -> None:
    service = ServiceId(trust_domain=td, datacenter=dc, service=name)
    assert parse_service_uri(service.uri) == service
    assert parse_identity(service.uri) == service
    agent = AgentId(trust_domain=td, datacenter=dc, node_id=name)
    assert parse_agent_uri(agent.uri) == agent
    assert parse_identity(agent.uri) == agent
