"""What an IPv6 walk of gossamer found: agents, the catalog, `gossamer check` and sidecars on
IPv6 addresses (loopback `::1` and namespaces whose only addresses are IPv6).

Each test is the smallest reproduction of one fault; the ones that need a host without IPv4
run in a network namespace of their own (tests/ipv6_netns.py).
"""

from __future__ import annotations

from gossamer.agent.local.own_record import NodeIdentity, own_record
from gossamer.catalog.tagged import node_tagged


def test_an_ipv6_agent_node_is_tagged_lan_ipv6_and_never_lan_ipv4() -> None:
    """An agent advertising fd00::5 showed `"lan_ipv4": "fd00::5"` in /v1/catalog/nodes (its
    own record named the address lan_ipv4 whatever its family); Consul tags it lan_ipv6. A
    record published so by an earlier agent is shown without the misfiled tag too."""
    record = own_record(NodeIdentity("n6", "id-6", "dc1", "fd00::5"), 1, (), ())
    six = {"lan": "fd00::5", "lan_ipv6": "fd00::5", "wan": "fd00::5", "wan_ipv6": "fd00::5"}
    assert node_tagged(record.address, record.tagged_addresses, external=False) == six
    earlier = {"lan": "fd00::5", "lan_ipv4": "fd00::5"}
    assert node_tagged("fd00::5", earlier, external=False) == six
    four = own_record(NodeIdentity("n4", "id-4", "dc1", "10.0.0.5"), 1, (), ())
    assert node_tagged(four.address, four.tagged_addresses, external=False) == {
        "lan": "10.0.0.5", "lan_ipv4": "10.0.0.5", "wan": "10.0.0.5", "wan_ipv4": "10.0.0.5",
    }  # fmt: skip
