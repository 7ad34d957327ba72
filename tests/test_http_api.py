"""The HTTP API with real clients: py-consul, aiohttp, raw sockets for bad input."""

from __future__ import annotations

import socket

import aiohttp
import consul

from tests.harness.cluster import AgentProc


def consul_client(agent: AgentProc) -> consul.Consul:
    return consul.Consul(host=agent.ip, port=agent.http_port)


def test_py_consul_reads_self_members_and_status(trio: list[AgentProc]) -> None:
    a = trio[0]
    c = consul_client(a)
    me = c.agent.self()
    assert me["Config"]["NodeName"] == "node1"
    assert me["Config"]["Datacenter"] == "dc1"
    major, minor, _patch = (int(x) for x in me["Config"]["Version"].split("."))
    assert (major, minor) >= (1, 0)
    assert me["Member"]["Name"] == "node1" and me["Member"]["Status"] == 1
    members = c.agent.members()
    assert {m["Name"] for m in members} == {"node1", "node2", "node3"}
    for m in members:
        assert set(m) >= {"Name", "Addr", "Port", "Tags", "Status", "ProtocolMin", "ProtocolMax",
                          "ProtocolCur", "DelegateMin", "DelegateMax", "DelegateCur"}  # fmt: skip
    assert c.status.leader() == f"{a.ip}:{a.rpc_port}"
    assert sorted(c.status.peers()) == sorted(f"{x.ip}:{x.rpc_port}" for x in trio)


async def test_status_codes_for_bad_input(trio: list[AgentProc]) -> None:
    a = trio[0]
    async with aiohttp.ClientSession() as s:

        async def call(method: str, path: str, **kw: object) -> tuple[int, str]:
            async with s.request(method, a.http + path, **kw) as r:  # type: ignore[arg-type]
                return r.status, await r.text()

        assert (await call("GET", "/"))[0] == 200
        assert (await call("GET", "/v1/no/such/thing"))[0] == 404
        assert (await call("POST", "/v1/agent/members"))[0] == 405
        assert (await call("GET", "/v1/agent/join/1.2.3.4"))[0] == 405
        status, text = await call("PUT", "/v1/agent/join/300.1.1.1")
        assert status == 400 and "300.1.1.1" in text
        status, text = await call("PUT", "/v1/agent/join/host:99999")
        assert status == 400 and "99999" in text
        status, text = await call("PUT", "/v1/agent/force-leave/ghost")
        assert status == 404 and "ghost" in text
        status, text = await call("PUT", "/v1/agent/force-leave/node2?prune=maybe")
        assert status == 400 and "prune" in text
        for body in (b"{not json", b"[]", b'{"Key": 5}', b'{"Key": "c2hvcnQ="}'):
            status, text = await call("POST", "/v1/operator/keyring", data=body)
            assert status == 400, body
            assert "Traceback" not in text
        # The agent keeps serving after all of that.
        assert (await call("GET", "/v1/agent/self"))[0] == 200


def test_garbage_on_the_http_socket_gets_400_and_the_agent_lives(trio: list[AgentProc]) -> None:
    a = trio[0]
    with socket.create_connection((a.ip, a.http_port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01garbage that is not http\r\n\r\n")
        reply = sock.recv(1024)
    assert reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n")[0]
    assert a.get("/v1/agent/self")["Config"]["NodeName"] == "node1"


def test_wan_members_is_empty_there_is_no_wan_pool(trio: list[AgentProc]) -> None:
    assert trio[0].get("/v1/agent/members?wan=1") == []
