"""Name forms (names.parse), hex addresses and TTL patterns: pure tables."""

from __future__ import annotations

import pytest

from gossamer.agent.dns import names
from gossamer.agent.dns.names import (
    AddrName,
    Apex,
    ConnectName,
    EmptyNonTerminal,
    Form,
    NodeName,
    ServiceName,
    Unknown,
)
from gossamer.agent.dns.settings import DnsSettings

PARSE_CASES = [
    ("", Apex()),
    ("web.service", ServiceName("web")),
    ("web.service.dc1", ServiceName("web")),
    ("v1.web.service", ServiceName("web", ("v1",))),
    ("a.b.web.service", ServiceName("web", ("a", "b"))),
    ("a.b.web.service.dc1", ServiceName("web", ("a", "b"))),
    ("service.service", ServiceName("service")),
    ("_web._tcp.service", ServiceName("web")),
    ("_web._udp.service", ServiceName("web")),
    ("_web._tcp", ServiceName("web")),
    ("_web._tcp.dc1", ServiceName("web")),
    ("_web._v1.service.dc1", ServiceName("web", ("v1",))),
    ("_web._v1", ServiceName("web", ("v1",))),
    ("a.node", NodeName("a")),
    ("a.node.dc1", NodeName("a")),
    ("web.prod.node", NodeName("web.prod")),
    ("web.connect", ConnectName("web")),
    ("web.connect.dc1", ConnectName("web")),
    ("0a000001.addr", AddrName("10.0.0.1")),
    ("0a000001.addr.dc1", AddrName("10.0.0.1")),
    ("fd000000000000000000000000000006.addr", AddrName("fd00::6")),
    # empty non-terminals: NODATA, never NXDOMAIN (QNAME minimisation walks them)
    ("dc1", EmptyNonTerminal()),
    ("service", EmptyNonTerminal()),
    ("service.dc1", EmptyNonTerminal()),
    ("node", EmptyNonTerminal()),
    ("connect", EmptyNonTerminal()),
    ("addr", EmptyNonTerminal()),
    ("_tcp.service", EmptyNonTerminal()),
    ("_tcp", EmptyNonTerminal()),
    ("_tcp.service.dc1", EmptyNonTerminal()),
    # unknown: NXDOMAIN
    ("query", Unknown()),
    ("web.query", Unknown()),
    ("dc2", Unknown()),
    ("web.service.dc2", Unknown()),
    ("a.node.dc2", Unknown()),
    ("_web._tcp.service.dc2", Unknown()),
    ("what.ever", Unknown()),
    ("web", Unknown()),
    ("a.b.connect", Unknown()),
    ("zz.addr", Unknown()),
    ("0a0000.addr", Unknown()),
    ("0a00000g.addr", Unknown()),
    ("x.0a000001.addr", Unknown()),
    ("_._tcp", Unknown()),
    ("_web._", Unknown()),
    ("_web._tcp.node", Unknown()),
    ("_a._b._c", Unknown()),
]


@pytest.mark.parametrize(
    ("relative", "form"), [pytest.param(r, f, id=r or "<apex>") for r, f in PARSE_CASES]
)
def test_parse(relative: str, form: Form) -> None:
    labels = relative.split(".") if relative else []
    assert names.parse(labels, "dc1") == form


def test_datacenter_label_matches_without_case() -> None:
    assert names.parse(["web", "service", "east"], "EAST") == ServiceName("web")


@pytest.mark.parametrize(
    ("label", "address"),
    [
        ("0a000001", "10.0.0.1"),
        ("7f000001", "127.0.0.1"),
        ("FFFFFFFF", "255.255.255.255"),
        ("fd000000000000000000000000000006", "fd00::6"),
        ("20010db8000000000000000000000001", "2001:db8::1"),
        ("0a00001", None),
        ("0a0000011", None),
        ("", None),
        ("nothexxx", None),
        ("fd00000000000000000000000000000", None),
    ],
)
def test_hex_addresses(label: str, address: str | None) -> None:
    assert names.parse_hex_address(label) == address
    if address is not None:
        assert names.hex_address(address) == label.lower()


@pytest.mark.parametrize(
    ("name", "ttl"),
    [
        ("web", 10),  # exact beats any pattern
        ("webx", 3),  # longest prefix wins
        ("wex", 2),
        ("wx", 1),
        ("db", 5),  # only "*"
        ("", 5),
    ],
)
def test_service_ttl_patterns(name: str, ttl: int) -> None:
    settings = DnsSettings(service_ttl={"w*": 1, "web": 10, "web*": 3, "we*": 2, "*": 5})
    assert settings.service_ttl_for(name) == ttl


def test_service_ttl_without_star_defaults_to_zero() -> None:
    settings = DnsSettings(service_ttl={"web": 10, "api*": 4})
    assert settings.service_ttl_for("db") == 0
    assert settings.service_ttl_for("apigw") == 4


def test_domains() -> None:
    assert DnsSettings().domains == ("consul.",)
    assert DnsSettings(alt_domain="mesh.internal.").domains == ("consul.", "mesh.internal.")
