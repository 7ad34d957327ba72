"""What an IPv6 walk of gossamer found: agents, the catalog, `gossamer check` and sidecars on
IPv6 addresses (loopback `::1` and namespaces whose only addresses are IPv6).

Each test is the smallest reproduction of one fault; the ones that need a host without IPv4
run in a network namespace of their own (tests/ipv6_netns.py).
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import select
import subprocess
import sys
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gossamer.agent.cli.client import resolve_http_addr
from gossamer.agent.config import ConfigError as AgentConfigError
from gossamer.agent.config import add_agent_flags, load_agent_config
from gossamer.agent.config.advertise import resolve_advertise
from gossamer.agent.config.errors import ConfigProblem
from gossamer.agent.local.own_record import NodeIdentity, own_record
from gossamer.agent.preflight.agent_probe import dns_answers
from gossamer.agent.preflight.cluster_checks import judge_dns
from gossamer.agent.preflight.host_checks import PortFacts, SocketFacts, judge_port
from gossamer.agent.preflight.result import Status
from gossamer.catalog.registration import (
    RegistrationError,
    parse_check_registration,
    parse_service_registration,
)
from gossamer.catalog.tagged import node_tagged
from gossamer.gossip.addresses import other_family
from gossamer.gossip.serf_output import classify_exit
from gossamer.proxy.config import ProxyConfig, Upstream, distinct
from gossamer.proxy.config_error import ConfigError
from gossamer.proxy.node_ports import clash
from tests.harness.binaries import require
from tests.harness.cli import cli_env, expect, ok
from tests.harness.cluster import AgentProc, free_port
from tests.harness.poll import eventually
from tests.ipv6_support import agent_on, ipv6_loopback, ipv6_only_namespace, random_ula


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


@pytest.fixture
def agent6(tmp_path: Path) -> Iterator[AgentProc]:
    """One agent bound, advertised and answering on ::1."""
    ipv6_loopback()
    agent = agent_on("::1", tmp_path, "a6").start()
    try:
        yield agent
    finally:
        agent.stop()


def test_check_finds_the_dns_answer_of_an_ipv6_agent(agent6: AgentProc) -> None:
    """`gossamer check` against an agent on ::1 failed "DNS answering: consul.service.consul.:
    no address in the answer": it asked for A records only, and an IPv6 agent's DNS answers
    its node's address in AAAA. It now asks AAAA when there is no A."""
    question = "consul.service.consul."

    def answered() -> list[str] | None:
        return dns_answers("::1", agent6.dns_port, question)[0]

    assert eventually(answered, 10, what="consul.service.consul in the agent's DNS") == ["::1"]
    assert judge_dns(question, answered(), "").status == Status.OK


def parse_agent_flags(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gossamer agent")
    add_agent_flags(parser)
    return parser.parse_args(argv)


WEBHOOK_CERT = Path(__file__).resolve().parent.parent / "kubernetes" / "webhook-cert.sh"
# The end of each listener script below: dial the listener at the namespace's IPv6 address and
# at 127.0.0.1, saying which answered.
DIAL_BOTH = """
async def probe(address: str, port: int) -> None:
    for host in (address, "127.0.0.1"):
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            print(f"refused at {host}: {exc}")
            continue
        writer.close()
        print(f"reached at {host}")

logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

INBOUND_DEFAULT = (
    """
import asyncio, logging, sys
from gossamer.proxy import tally
from gossamer.proxy.config import ProxyConfig
from gossamer.proxy.inbound import Inbound, Policy

async def main(address: str, port: int) -> None:
    config = ProxyConfig(service="db", bind_port=port, local_port=1)  # (no bind address)
    inbound = Inbound(config, lambda: None, Policy(), tally.Tally())
    await inbound.start()
    await probe(address, port)
"""
    + DIAL_BOTH
)


@pytest.mark.netns
def test_a_sidecar_with_no_address_is_reached_at_the_ipv6_address_of_its_host() -> None:
    """A sidecar registered without an address listened on 0.0.0.0, which on a host whose only
    IPv4 address is loopback serves 127.0.0.1 alone: a peer dialling the node's IPv6 address
    (what the catalog gives for such a sidecar) was refused, while its default check at
    127.0.0.1 kept passing. There it now listens on both families."""
    address = random_ula()
    port = free_port("::1")
    with ipv6_only_namespace(address) as prefix:
        run = subprocess.run([*prefix, sys.executable, "-c", INBOUND_DEFAULT, address, str(port)],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    assert f"reached at {address}" in run.stdout, run.stdout + run.stderr
    assert "reached at 127.0.0.1" in run.stdout, run.stdout + run.stderr
    assert f"[::]:{port}" in run.stdout and f"0.0.0.0:{port}" in run.stdout  # its log line


ADVERTISED = """
from gossamer.agent.config.advertise import local_addresses, pick_advertise_address
print(pick_advertise_address("::", local_addresses()))
"""


@pytest.mark.netns
def test_bind_on_every_ipv6_address_advertises_the_global_one_of_the_host() -> None:
    """`--bind ::` on a host with a global IPv6 address (and no IPv4 but loopback) refused to
    start: "bind is :: but this host has no private address to advertise (found:
    127.0.0.1)". The host's addresses were the IPv4 default route's source and what the
    host name resolves to; the interfaces' IPv6 addresses are now among them, and Consul's
    rule for :: (the first global IPv6 address) picks it."""
    # (global; the namespace has no route out; written as the agent writes it: a group
    # such as 0f2b loses its leading zero, which failed a CI rehearsal 1 time in 16)
    address = str(ipaddress.IPv6Address(f"2a0f:{secrets.token_hex(2)}:6::11"))
    with ipv6_only_namespace(address) as prefix:
        run = subprocess.run([*prefix, sys.executable, "-c", ADVERTISED],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    assert run.stdout.split() == [address], run.stdout + run.stderr


@dataclass(frozen=True)
class _Gossip:
    node: str = "a6"
    bind: str = "::1"
    port: int = 8301


def test_an_ipv6_address_with_a_port_is_written_in_brackets(agent6: AgentProc) -> None:
    """`gossamer members` showed a member on ::1 as `::1:18301`, `gossamer check` its ports as
    `http port ::1:18500/tcp`, and logs wrote `fd6e:77::11:8300` (agent RPC peers, the CA
    bundle, recursors), `fd6e:77::12:21000` (sidecar listeners and peers): an IPv6 address
    and a port that cannot be told apart. Consul writes `[::1]:8301`, as these now do."""
    listed = ok("members", "--http-addr", agent6.http)
    assert f"[::1]:{agent6.serf_port}" in listed, listed
    facts = PortFacts("http", "::1", 8500, (SocketFacts("tcp", in_use=True),))
    assert judge_port(facts, running=True).name == "http port [::1]:8500/tcp"
    taken = classify_exit(["bind: address already in use"], _Gossip(), "127.0.0.1:7373")
    assert "gossip port [::1]:8301: address already in use" in taken.message


def test_an_agent_address_of_ipv6_and_port_without_brackets_reaches_the_agent(
    agent6: AgentProc,
) -> None:
    """The injector gives sidecars GOSSAMER_HTTP_ADDR=$(HOST_IP):8500, and Kubernetes' downward
    API writes an IPv6 node's address without brackets: `fd00::5:8500` was read as the address
    fd00::5:8500 on port 80 (`::1:<5-digit port>` was refused as no IP address). It is split
    at the last colon now, as Go's URL parser and so Consul's client split it."""
    assert resolve_http_addr("fd00::5:8500", {}) == "http://[fd00::5]:8500"
    assert resolve_http_addr(None, {"GOSSAMER_HTTP_ADDR": "https://fd00::5:8501"}) == (
        "https://[fd00::5]:8501"
    )
    assert resolve_http_addr("fd00::5", {}) == "http://[fd00::5]:80"  # (no port: the address)
    listed = expect("members", env={"CONSUL_HTTP_ADDR": f"::1:{agent6.http_port}"})
    assert f"[::1]:{agent6.serf_port}" in listed


def test_a_bracketed_ipv6_service_address_is_refused_with_the_bare_form() -> None:
    """`"Address": "[::1]"` was accepted as a host name: DNS answered a CNAME to `[::1].`
    and a sidecar could neither dial nor bind it. It is refused at registration, naming the
    form that works; the bare address is taken as before."""
    with pytest.raises(RegistrationError) as refused:
        parse_service_registration({"Name": "web", "Address": "[::1]"},
                                   node_address="::1", used_sidecar_ports=set())  # fmt: skip
    assert refused.value.field == "Address"
    assert '"::1", not "[::1]"' in refused.value.message
    taken = parse_service_registration({"Name": "web", "Address": "fd00::2"},
                                       node_address="::1", used_sidecar_ports=set())  # fmt: skip
    assert taken.service.address == "fd00::2"


def test_a_check_target_of_ipv6_and_port_without_brackets_says_how_to_write_it() -> None:
    """`"TCP": "fd00::2:80"` was refused with `got "fd00::2:80" (no port)` (it is one valid
    IPv6 address) and `"::1:18080"` with `'::1:18080': '::1:18080' is not a valid IP
    address`: true, but neither says that brackets are what is missing."""
    for target, bracketed in (("fd00::2:80", "[fd00::2]:80"), ("::1:18080", "[::1]:18080")):
        with pytest.raises(RegistrationError) as refused:
            parse_check_registration({"Name": "t", "TCP": target, "Interval": "1s"},
                                     service_ids=set(), allow_script=False)  # fmt: skip
        assert refused.value.message.endswith(f"written {bracketed}"), refused.value.message
        assert refused.value.message.count(repr(target)) <= 1


def test_the_proxy_writes_ipv6_listeners_in_brackets_in_its_errors() -> None:
    """The proxy's own errors named IPv6 listeners `::1:9191` (an upstream clashing with the
    inbound listener, two sidecars of `--node` on one port), as its logs did for listeners,
    instances and local apps (`upstream db instance fd6e:77::12:21000 failed`)."""
    with pytest.raises(ConfigError) as clashing:
        distinct((Upstream(name="db", bind_address="::1", bind_port=9191),), ("::", 9191))
    assert str(clashing.value).endswith("[::1]:9191 clashes with the inbound listener on [::]:9191")
    one = ProxyConfig(service="a", bind_address="fd00::5", bind_port=21000, local_port=80)
    two = ProxyConfig(service="b", bind_address="::", bind_port=21000, local_port=80)
    said = clash(one, [("b-sidecar-proxy", two)]) or ""
    assert "on [fd00::5]:21000 clashes" in said and "on [::]:21000, served first" in said


def test_the_injector_on_ipv6_says_where_it_serves_in_brackets(tmp_path: Path) -> None:
    """`gossamer k8s injector --listen [::1]:8443` printed `serving https://::1:8443/mutate`,
    a URL no client can use."""
    require("openssl")
    made = [subprocess.run(["bash", str(WEBHOOK_CERT), *args], capture_output=True, text=True,
                           timeout=30)
            for args in (("root", str(tmp_path), "mesh.test"),
                         ("webhook", str(tmp_path / "root.pem"), str(tmp_path / "root-key.pem"),
                          str(tmp_path)))]  # fmt: skip
    assert all(m.returncode == 0 for m in made), [m.stderr for m in made]
    port = free_port("::1")
    argv = [sys.executable, "-m", "gossamer.agent", "k8s", "injector", "--listen",
            f"[::1]:{port}", "--tls-cert", str(tmp_path / "tls.crt"), "--tls-key",
            str(tmp_path / "tls.key"), "--image", "gossamer:test"]  # fmt: skip
    proc = subprocess.Popen(argv, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)  # (a line once it serves)
        first = proc.stdout.readline() if ready else "(nothing within 20 s)"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert first.strip() == f"gossamer injector: serving https://[::1]:{port}/mutate", first


def test_no_address_to_advertise_lists_what_was_found_of_the_family_wanted() -> None:
    """Once IPv6 interface addresses were among the candidates, `bind: 0.0.0.0` with no private
    IPv4 listed every link-local IPv6 address as "found"; each bind lists its own family."""
    for bind, found in (("0.0.0.0", "found: 127.0.0.1)"), ("::", "found: fd00::2, ::1)")):
        problems: list[ConfigProblem] = []
        resolve_advertise({"bind": bind}, {}, problems, ["127.0.0.1", "fd00::2", "::1"])
        assert len(problems) == 1 and found in problems[0].message, problems


def test_a_join_across_address_families_is_refused_saying_why(agent6: AgentProc) -> None:
    """An agent gossiping on 198.19.251.14 (in a dual-stack namespace) joined [fd6e:77::11], an
    IPv6-only cluster: the join said "joined" (its first exchange is TCP, from any source),
    then serf logged "Failed to send ping: ... non-IPv4 address" every second on one side and
    "network is unreachable" on the other, for good. Such a join is refused now, from the
    config (exit 2) and from /v1/agent/join (400), naming the two families."""
    with pytest.raises(AgentConfigError) as refused:
        load_agent_config(parse_agent_flags(["--bind", "198.19.0.5", "--data-dir", "/d",
                                             "--retry-join", "[fd00::9]"]))  # fmt: skip
    assert "[fd00::9]:8301 is an IPv6 address and this agent gossips over IPv4" in str(
        refused.value
    )
    assert other_family("::1", "[::1]:8301") == other_family("10.0.0.1", "db.example") == ""
    with pytest.raises(urllib.error.HTTPError) as join:
        agent6.put("/v1/agent/join/127.0.0.1")
    said = join.value.read().decode()
    assert join.value.code == 400 and "over IPv6 (::1)" in said, said


EXPOSE_DEFAULT = (
    """
import asyncio, logging, sys
from gossamer.proxy import tally
from gossamer.proxy.config import ExposePath, ProxyConfig
from gossamer.proxy.expose import ExposeListener

async def main(address: str, port: int) -> None:
    config = ProxyConfig(service="db", bind_port=1, local_port=1)  # (no bind address)
    path = ExposePath(listener_port=port, path="/health", local_port=1)
    listener = ExposeListener(path, config.bind_address, config, tally.Tally(), lambda: None)
    await listener.start()
    await probe(address, port)
"""
    + DIAL_BOTH
)


@pytest.mark.netns
def test_an_exposed_path_of_a_sidecar_with_no_address_is_reached_on_an_ipv6_only_host() -> None:
    """The exposed path's listener binds where the inbound one does: on a host whose only IPv4
    address is loopback, 0.0.0.0 is both families there too (it served 127.0.0.1 alone, so a
    probe at the node's IPv6 address was refused)."""
    address = random_ula()
    port = free_port("::1")
    with ipv6_only_namespace(address) as prefix:
        run = subprocess.run([*prefix, sys.executable, "-c", EXPOSE_DEFAULT, address, str(port)],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    assert f"reached at {address}" in run.stdout, run.stdout + run.stderr
    assert "reached at 127.0.0.1" in run.stdout, run.stdout + run.stderr
