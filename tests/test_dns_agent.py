"""DNS against real agents, with dnspython and dig."""

from __future__ import annotations

import shutil
import socket
import subprocess

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.harness.cluster import AgentProc
from tests.harness.poll import eventually


def query(agent: AgentProc, name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(q, agent.ip, port=agent.dns_port, timeout=5)


def addresses(resp: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in resp.answer for rd in rrset)


def test_node_and_agent_service_lookups(trio: list[AgentProc]) -> None:
    a = trio[0]
    # DNS answers from the agent's member table, which follows serf's events.
    eventually(lambda: len(addresses(query(a, "consul.service.consul."))) == 3, 10)
    assert addresses(query(a, "node2.node.consul.")) == [trio[1].ip]
    assert addresses(query(a, "node3.node.dc1.consul.", tcp=True)) == [trio[2].ip]
    assert addresses(query(a, "consul.service.consul.")) == sorted(x.ip for x in trio)
    srv = query(a, "consul.service.consul.", "SRV")
    ports = sorted(int(rd.port) for rrset in srv.answer for rd in rrset)
    assert ports == sorted(x.rpc_port for x in trio)
    assert query(a, "nobody.node.consul.").rcode() == dns.rcode.NXDOMAIN
    assert query(a, "example.com.").rcode() == dns.rcode.REFUSED


def test_garbage_datagram_gets_formerr_and_the_server_keeps_answering(
    trio: list[AgentProc],
) -> None:
    a = trio[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"\xab\xcd" + b"\xff" * 30, (a.ip, a.dns_port))
        reply = dns.message.from_wire(sock.recv(512))
    assert reply.id == 0xABCD and reply.rcode() == dns.rcode.FORMERR
    with socket.create_connection((a.ip, a.dns_port), timeout=5) as tcp:
        tcp.sendall(b"\x00\x05junk")  # short frame, then close
    assert addresses(query(a, "node1.node.consul.")) == [a.ip]


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed (bind9-dnsutils)")
def test_dig_reads_the_answers(trio: list[AgentProc]) -> None:
    a = trio[0]
    out = subprocess.run(
        ["dig", f"@{a.ip}", "-p", str(a.dns_port), "+short", "node1.node.consul"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout.split()  # fmt: skip
    assert out == [a.ip]
