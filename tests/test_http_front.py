"""The light HTTP front (agent/http/front.py) answers as aiohttp does, byte for byte.

One real app over a real catalog, served twice from one runner: by a plain
aiohttp `SockSite` and by the `FrontSite` the agent uses. The same raw
requests go to both over real sockets and the answers must be equal but for
`Date`: status line, every header in order, body. Hypothesis draws the
query strings (good and bad parameters, blocking ones included); other
tests show pipelining, the hand-over to aiohttp mid-connection, a parked
query woken by a change, TLS, and py-consul's blocking `health.service`.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import consul
import pytest
import uvloop
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossamer.agent.acl.rules import parse_rules
from gossamer.agent.acl.tokens import Policy, Token, hash_secret, initial_management
from gossamer.agent.config.acl_section import AclConfig, AclTokens
from gossamer.agent.http import front
from gossamer.agent.http.acl_access import AclAccess
from gossamer.agent.http.acl_enforce import install_acl
from gossamer.agent.http.app import make_app
from gossamer.agent.http.front_head import HEALTH_SERVICE, hot_route, plain_get
from gossamer.agent.http.front_site import FrontSite
from gossamer.agent.http.metrics_routes import FIGURES_KEY
from gossamer.agent.lifecycle.listeners import bind_socket
from gossamer.agent.local.node import LocalNode, NodeIdentity
from gossamer.agent.replicated.acl_store import AclStore
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import Check, NodeRecord, Service
from gossamer.catalog.store import CatalogStore
from tests.harness.binaries import require
from tests.harness.poll import eventually_async
from tests.harness.served_agent import FakeAgent

HOT = ["/v1/health/service/web", "/v1/catalog/service/web", "/v1/catalog/services",
       "/v1/agent/services"]  # fmt: skip


def _record(i: int, status: str) -> NodeRecord:
    services = (
        Service(f"web-{i}", "web", tags=("v1", f"t{i % 2}"), port=8000 + i, meta={"z": str(i)}),
        Service(f"db-{i}", "db", port=5432),
    )
    checks = (
        Check(f"c-{i}", "alive", status, service_id=f"web-{i}", service_name="web"),
        Check(f"n-{i}", "node", "passing"),
    )
    return NodeRecord(
        f"n{i}", "", "dc1", f"198.18.0.{i}", 1, f"n{i}", meta={"rack": f"r{i % 2}"},
        services=services, checks=checks,
    )  # fmt: skip


@dataclass
class Pair:
    catalog: LiveCatalog
    aio: int  # port served by aiohttp
    front: int  # port served by the light front
    site: FrontSite
    local: LocalNode
    tls: int = 0
    tls_site: FrontSite | None = None


@asynccontextmanager
async def two_fronts(
    tmp_path: Path, context: ssl.SSLContext | None = None, acl: bool = False
) -> AsyncIterator[Pair]:
    store = CatalogStore.open(tmp_path / "catalog.db")
    catalog = LiveCatalog("dc1", store, wall_ms=lambda: 1_000)
    catalog.apply([_record(i, ("passing", "warning", "critical")[i % 3]) for i in range(1, 6)])
    identity = NodeIdentity(node="n1", node_id="id-1", datacenter="dc1", address="127.0.0.1")
    local = LocalNode(identity, store, catalog, wall_ms=lambda: 1_000, on_version=lambda v: None)
    app = make_app(FakeAgent(local), catalog)
    if acl:
        install_acl(app, acl_access(store))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    aio_sock, front_sock = (bind_socket("test", "127.0.0.1", 0) for _ in range(2))
    await web.SockSite(runner, aio_sock).start()
    site = FrontSite(runner, front_sock)
    await site.start()
    pair = Pair(catalog, aio_sock.getsockname()[1], front_sock.getsockname()[1], site, local)
    if context is not None:
        tls_sock = bind_socket("test", "127.0.0.1", 0)
        pair.tls_site = FrontSite(runner, tls_sock, ssl_context=context)
        await pair.tls_site.start()
        pair.tls = tls_sock.getsockname()[1]
    try:
        yield pair
    finally:
        catalog.release_all()
        await runner.cleanup()
        store.close()


POLICIES = {
    "all": 'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }',
    "web": 'service "web" { policy = "read" }\nnode "n1" { policy = "read" }',
    "db": 'service "db" { policy = "read" }\nnode_prefix "" { policy = "read" }',
}


def acl_access(db: CatalogStore) -> AclAccess:
    """default deny; secret "m" management, and one token per policy, its secret the name."""
    store = AclStore(db, node="n1", wall_ms=lambda: 1_000, notify=lambda keys: 1)
    for n, (name, rules) in enumerate(POLICIES.items()):
        store.put_policy(Policy(name, name, "", rules, parse_rules(rules)))
        accessor = f"00000000-0000-4000-8000-00000000000{n}"
        store.put_token(Token(accessor, hash_secret(name), policies=(name,)))
    store.put_token(initial_management("m", ""))
    config = AclConfig(enabled=True, default_policy="deny", tokens=AclTokens())
    return AclAccess(store, lambda: config, datacenter="dc1", node="n1")


async def exchange(
    port: int, raw: bytes | list[bytes], answers: int = 1, tls: ssl.SSLContext | None = None
) -> list[bytes]:
    """Send `raw` in one write (or each piece in its own); read `answers` responses (each
    head + Content-Length body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    try:
        for piece in [raw] if isinstance(raw, bytes) else raw:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.002)  # its own segment
        out = []
        for _ in range(answers):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
            out.append(head + await reader.readexactly(length))
        return out
    finally:
        writer.close()


def undated(answer: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*", b"", answer)


def get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


async def same_answers(pair: Pair, raw: bytes, answers: int = 1) -> list[bytes]:
    ours, theirs = await asyncio.gather(
        exchange(pair.front, raw, answers), exchange(pair.aio, raw, answers)
    )
    assert [undated(a) for a in ours] == [undated(a) for a in theirs]
    return ours


PARAMS = st.sampled_from(
    ["passing", "tag", "node-meta", "near", "filter", "dc", "peer", "index", "wait", "stale", "u"]
)
VALUES = st.sampled_from([
    "", "1", "0", "true", "no", "bogus", "v1", "t0", "rack:r1", "rack", "n2", "dc1", "dc9",
    "10ms", "-1", "99999999999999999999999", "ServiceTags contains v1",
    'Service.Tags contains "t1"', "Node.Meta.rack == r0", "Checks.Status ==",
    "x%20y", "%zz", "a+b", "_agent",
])  # fmt: skip


@given(
    path=st.sampled_from(HOT),
    params=st.lists(st.tuples(PARAMS, VALUES), max_size=4),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_front_answers_as_aiohttp_for_any_query(path: str, params: list[tuple[str, str]]) -> None:
    query = "&".join(f"{k}={v.replace(' ', '+')}" if v else k for k, v in params)
    target = f"{path}?{query}" if query else path

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with two_fronts(Path(tmp)) as pair:
                front = pair.site.front
                (answer,) = await same_answers(pair, get(target))
                assert front.taken + front.handed == 1  # one or the other answered
                if answer.startswith(b"HTTP/1.1 200 ") and "%" not in target:
                    assert front.taken == 1  # a good hot read is the front's own

    uvloop.run(run())  # the agent's loop


def counts(app: web.Application) -> Counter[str]:
    """The HTTP request counters by labels, as /v1/agent/metrics reports them."""
    return Counter({str(c["Labels"]): c["Count"] for c in app[FIGURES_KEY].counters()})


@given(cuts=st.lists(st.integers(min_value=1, max_value=200), max_size=6))
@settings(max_examples=25, deadline=None)
def test_requests_split_anywhere_are_answered_the_same(cuts: list[int]) -> None:
    """Heads arriving in pieces (split at drawn offsets, each piece its own write): the
    front buffers them and answers as aiohttp does."""
    raw = get(HOT[0] + "?passing") + get("/v1/catalog/nodes")
    offsets = sorted({c for c in cuts if c < len(raw)})
    pieces = [raw[a:b] for a, b in zip([0, *offsets], [*offsets, len(raw)], strict=True)]

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with two_fronts(Path(tmp)) as pair:
                ours = await exchange(pair.front, pieces, answers=2)
                theirs = await exchange(pair.aio, [raw], answers=2)
                assert [undated(a) for a in ours] == [undated(a) for a in theirs]
                assert pair.site.front.taken == 1 and pair.site.front.handed == 1

    uvloop.run(run())


async def test_pipelined_hot_reads_then_another_route_are_answered_in_order(
    tmp_path: Path,
) -> None:
    raw = get(HOT[0] + "?passing") + get(HOT[2]) + get("/v1/catalog/nodes") + get(HOT[1])
    async with two_fronts(tmp_path) as pair:
        app = pair.site.front.app
        before = counts(app)
        ours = await exchange(pair.front, raw, answers=4)
        middle = counts(app)
        theirs = await exchange(pair.aio, raw, answers=4)
        assert [undated(a) for a in ours] == [undated(a) for a in theirs]
        assert [a.split(b"\r\n", 1)[0] for a in ours] == [b"HTTP/1.1 200 OK"] * 4
        assert pair.site.front.taken == 2 and pair.site.front.handed == 1
        # the same HTTP figures, whichever front answered
        assert middle - before == counts(app) - middle and middle - before


async def test_closing_and_http10_requests_get_aiohttps_answer(tmp_path: Path) -> None:
    async with two_fronts(tmp_path) as pair:
        for raw in (
            b"GET /v1/catalog/services HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /v1/catalog/services HTTP/1.0\r\nHost: x\r\n\r\n",
            b"GET /v1/catalog/services HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
        ):
            (answer,) = await same_answers(pair, raw)
            assert answer.split(b"\r\n", 1)[0].endswith(b" 200 OK")
        assert pair.site.front.taken == 0 and pair.site.front.handed == 3


async def test_bad_parameter_is_aiohttps_400_naming_it(tmp_path: Path) -> None:
    async with two_fronts(tmp_path) as pair:
        (answer,) = await same_answers(pair, get(HOT[0] + "?index=x"))
        assert answer.startswith(b"HTTP/1.1 400 ") and b"Invalid index" in answer


async def test_acl_answers_as_the_middleware(tmp_path: Path) -> None:
    """Allowed, denied, unknown and filtered tokens, by header, bearer and query: the front
    answers what the ACL middleware would, or leaves the filtered read to it."""
    asks = [
        (f"{HOT[0]}?passing", "X-Consul-Token: m", True),
        (HOT[1], "X-Consul-Token: all", True),
        (HOT[0], "Authorization: Bearer all", True),
        (f"{HOT[0]}?token=all", "", True),
        (HOT[0], "X-Consul-Token: db", True),  # 403: may not read web
        (HOT[0], "X-Consul-Token: nope", True),  # 403: ACL not found
        (HOT[0], "", True),  # anonymous, default deny: 403
        (HOT[0], "X-Consul-Token: web", False),  # reads node n1 only: the middleware filters
        (HOT[2], "X-Consul-Token: all", False),  # a filtered route
        (HOT[3], "X-Consul-Token: m", False),  # a filtered route
    ]
    async with two_fronts(tmp_path, acl=True) as pair:
        front = pair.site.front
        for target, header, taken in asks:
            before = front.taken
            raw = f"GET {target} HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n".encode()
            raw = raw.replace(b"\r\n\r\n\r\n", b"\r\n\r\n")
            (answer,) = await same_answers(pair, raw)
            assert (front.taken == before + 1) == taken, (target, header, answer[:80])
            allowed = header.endswith(("m", "all")) or target.endswith("all")
            assert answer.startswith(b"HTTP/1.1 200 ") == (allowed or not taken), target


async def test_agent_services_by_the_front_as_by_aiohttp(tmp_path: Path) -> None:
    """Local services with a sidecar, filtered or not, any `?hash=` but the current one: the
    front's answer; the current hash (a wait) is aiohttp's, and both wake on a change."""
    async with two_fronts(tmp_path) as pair:
        pair.local.register_service({"Name": "web", "Port": 80, "Connect": {"SidecarService": {}}})
        pair.local.register_service({"Name": "db", "Port": 5432})
        front = pair.site.front
        (first,) = await same_answers(pair, get(HOT[3]))
        digest = re.search(rb"X-Consul-ContentHash: (\w+)", first)[1].decode()  # type: ignore[index]
        for query in ("", "?filter=Service==web", "?hash=old&wait=1s", "?wait=2s"):
            before = front.taken
            (answer,) = await same_answers(pair, get(HOT[3] + query))
            assert answer.startswith(b"HTTP/1.1 200 ") and front.taken == before + 1, query
        (answer,) = await same_answers(pair, get(f"{HOT[3]}?hash={digest}&wait=50ms"))
        assert digest.encode() in answer and front.handed >= 1  # waited, by aiohttp
        (answer,) = await same_answers(pair, get(HOT[3] + "?filter=Port=="))
        assert answer.startswith(b"HTTP/1.1 400 ")


async def test_parked_query_wakes_on_change_and_keeps_the_connection(tmp_path: Path) -> None:
    async with two_fronts(tmp_path) as pair:
        (first,) = await exchange(pair.front, get(HOT[0]))
        index = int(re.search(rb"X-Consul-Index: (\d+)", first)[1])  # type: ignore[index]
        reader, writer = await asyncio.open_connection("127.0.0.1", pair.front)
        writer.write(get(f"{HOT[0]}?index={index}&wait=30s") + get(HOT[2]))
        await eventually_async(lambda: pair.catalog.watchers == 1)  # parked, the next behind it
        pair.catalog.apply([_record(7, "passing")])
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert int(re.search(rb"X-Consul-Index: (\d+)", head)[1]) > index  # type: ignore[index]
        await reader.readexactly(int(re.search(rb"Content-Length: (\d+)", head)[1]))  # type: ignore[index]
        second = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert second.startswith(b"HTTP/1.1 200 OK")
        writer.close()


async def test_many_pipelined_behind_a_parked_query_are_all_answered(tmp_path: Path) -> None:
    """More than the front buffers (reading pauses) and more than the client reads at once
    (writing pauses): every answer arrives, in order."""
    async with two_fronts(tmp_path) as pair:
        (first,) = await exchange(pair.front, get(HOT[2]))
        index = int(re.search(rb"X-Consul-Index: (\d+)", first)[1])  # type: ignore[index]
        behind = 8_000  # ~330 KB of requests
        reader, writer = await asyncio.open_connection("127.0.0.1", pair.front)
        writer.write(get(f"{HOT[2]}?index={index}&wait=30s") + get(f"{HOT[2]}?u=1") * behind)
        await eventually_async(lambda: pair.catalog.watchers == 1)  # parked in the catalog
        pair.catalog.apply([_record(8, "passing")])
        answered = 0
        while answered <= behind:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200 OK")
            await reader.readexactly(int(re.search(rb"Content-Length: (\d+)", head)[1]))  # type: ignore[index]
            answered += 1
        assert pair.site.front.taken == behind + 2 and pair.site.front.handed == 0
        writer.close()


async def test_idle_connections_close_after_keepalive_and_at_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(front, "SWEEP_S", 0.05)
    monkeypatch.setattr(front, "KEEPALIVE_S", 0.2)
    async with two_fronts(tmp_path) as pair:
        idle_reader, idle = await asyncio.open_connection("127.0.0.1", pair.front)
        idle.write(get(HOT[2]))
        first = await idle_reader.readuntil(b"\r\n\r\n")
        index = int(re.search(rb"X-Consul-Index: (\d+)", first)[1])  # type: ignore[index]
        parked_reader, parked = await asyncio.open_connection("127.0.0.1", pair.front)
        parked.write(get(f"{HOT[2]}?index={index}&wait=30s"))
        assert await asyncio.wait_for(idle_reader.read(), 5) != b""  # the rest of the body
        assert await asyncio.wait_for(idle_reader.read(), 5) == b""  # then closed
        assert len(pair.site.front.connections) == 1  # the parked one stays
        pair.catalog.release_all()  # as the agent does when it stops, then the runner
        await pair.site.stop()
        head = await asyncio.wait_for(parked_reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 OK")
        await parked_reader.readexactly(int(re.search(rb"Content-Length: (\d+)", head)[1]))  # type: ignore[index]
        assert await asyncio.wait_for(parked_reader.read(), 5) == b""  # answered, then closed
        idle.close()
        parked.close()


async def test_py_consul_blocking_health_service(tmp_path: Path) -> None:
    async with two_fronts(tmp_path) as pair:
        client = consul.Consul(host="127.0.0.1", port=pair.front)
        index, nodes = await asyncio.to_thread(client.health.service, "web", passing=True)
        assert [n["Node"]["Node"] for n in nodes] == ["n3"]
        waiting = asyncio.create_task(
            asyncio.to_thread(client.health.service, "web", index=index, wait="30s")
        )
        await eventually_async(lambda: pair.catalog.watchers == 1)  # parked in the catalog
        assert not waiting.done()
        pair.catalog.apply([_record(9, "passing")])
        new_index, nodes = await asyncio.wait_for(waiting, 10)
        assert int(new_index) > int(index) and "n9" in [n["Node"]["Node"] for n in nodes]
        assert pair.site.front.taken >= 2


def test_https_front_answers_as_aiohttp(tmp_path: Path) -> None:
    require("openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))

    async def run() -> None:
        async with two_fronts(tmp_path, server) as pair:
            raw = get(HOT[0] + "?passing") + get("/v1/catalog/nodes")
            ours = await exchange(pair.tls, raw, answers=2, tls=client)
            theirs = await exchange(pair.aio, raw, answers=2)
            assert [undated(a) for a in ours] == [undated(a) for a in theirs]
            assert pair.tls_site.front.taken == 1 and pair.tls_site.front.handed == 1

    uvloop.run(run())  # the agent's loop


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /v1/catalog/services HTTP/1.0\r\nHost: x\r\n\r\n",  # aiohttp words 1.0
        b"GET /v1/catalog/services HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"HEAD /v1/catalog/services HTTP/1.1\r\n\r\n",
        b"GET /v1/catalog/services HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET /v1/catalog/services HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /v1/catalog/services HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
        b"GET /v1/catalog/services HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"GET /v1/catalog/services HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ],
)
def test_front_leaves_every_other_head_to_aiohttp(raw: bytes) -> None:
    assert plain_get(raw) is None


@pytest.mark.parametrize(
    "target",
    ["http://x/v1/catalog/services", "/v1/health/service/we%62", "/v1/health/service/..",
     "/v1/health/service/a/b", "/v1/health/service/", "/v1/catalog/services/",
     "/v1/catalog/services#x", "/v1/health/service/{x}", "/v1/catalog/nodes"],
)  # fmt: skip
def test_front_routes_only_plain_hot_paths(target: str) -> None:
    assert hot_route(target) is None


def test_front_takes_a_plain_get_with_its_token() -> None:
    raw = b"GET /v1/health/service/web?passing HTTP/1.1\r\n"
    raw += b"x-consul-TOKEN: t\r\nX-Consul-Token: u\r\n\r\n"
    got = plain_get(raw)
    assert got is not None and got.headers == {"X-Consul-Token": "t"}  # the first, as aiohttp
    assert hot_route(got.target) == (HEALTH_SERVICE, "web", "/v1/health/service/web", "passing")
