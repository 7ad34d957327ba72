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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import consul
import uvloop
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossamer.agent.http.app import make_app
from gossamer.agent.http.front_site import FrontSite
from gossamer.agent.lifecycle.listeners import bind_socket
from gossamer.agent.local.node import LocalNode, NodeIdentity
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import Check, NodeRecord, Service
from gossamer.catalog.store import CatalogStore
from tests.harness.binaries import require
from tests.harness.served_agent import FakeAgent

HOT = ["/v1/health/service/web", "/v1/catalog/service/web", "/v1/catalog/services"]


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
    tls: int = 0
    tls_site: FrontSite | None = None


@asynccontextmanager
async def two_fronts(tmp_path: Path, context: ssl.SSLContext | None = None) -> AsyncIterator[Pair]:
    store = CatalogStore.open(tmp_path / "catalog.db")
    catalog = LiveCatalog("dc1", store, wall_ms=lambda: 1_000)
    catalog.apply([_record(i, ("passing", "warning", "critical")[i % 3]) for i in range(1, 6)])
    identity = NodeIdentity(node="n1", node_id="id-1", datacenter="dc1", address="127.0.0.1")
    local = LocalNode(identity, store, catalog, wall_ms=lambda: 1_000, on_version=lambda v: None)
    runner = web.AppRunner(make_app(FakeAgent(local), catalog), access_log=None)
    await runner.setup()
    aio_sock, front_sock = (bind_socket("test", "127.0.0.1", 0) for _ in range(2))
    await web.SockSite(runner, aio_sock).start()
    site = FrontSite(runner, front_sock)
    await site.start()
    pair = Pair(catalog, aio_sock.getsockname()[1], front_sock.getsockname()[1], site)
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


async def exchange(
    port: int, raw: bytes, answers: int = 1, tls: ssl.SSLContext | None = None
) -> list[bytes]:
    """Send `raw` in one write; read `answers` responses (each head + Content-Length body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    try:
        writer.write(raw)
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


async def test_pipelined_hot_reads_then_another_route_are_answered_in_order(
    tmp_path: Path,
) -> None:
    raw = get(HOT[0] + "?passing") + get(HOT[2]) + get("/v1/catalog/nodes") + get(HOT[1])
    async with two_fronts(tmp_path) as pair:
        answers = await same_answers(pair, raw, answers=4)
        assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 4
        assert pair.site.front.taken == 2 and pair.site.front.handed == 1


async def test_bad_parameter_is_aiohttps_400_naming_it(tmp_path: Path) -> None:
    async with two_fronts(tmp_path) as pair:
        (answer,) = await same_answers(pair, get(HOT[0] + "?index=x"))
        assert answer.startswith(b"HTTP/1.1 400 ") and b"Invalid index" in answer


async def test_parked_query_wakes_on_change_and_keeps_the_connection(tmp_path: Path) -> None:
    async with two_fronts(tmp_path) as pair:
        (first,) = await exchange(pair.front, get(HOT[0]))
        index = int(re.search(rb"X-Consul-Index: (\d+)", first)[1])  # type: ignore[index]
        reader, writer = await asyncio.open_connection("127.0.0.1", pair.front)
        writer.write(get(f"{HOT[0]}?index={index}&wait=30s") + get(HOT[2]))
        await asyncio.sleep(0)  # parked, with the next request waiting behind it
        pair.catalog.apply([_record(7, "passing")])
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert int(re.search(rb"X-Consul-Index: (\d+)", head)[1]) > index  # type: ignore[index]
        await reader.readexactly(int(re.search(rb"Content-Length: (\d+)", head)[1]))  # type: ignore[index]
        second = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert second.startswith(b"HTTP/1.1 200 OK")
        writer.close()


async def test_py_consul_blocking_health_service(tmp_path: Path) -> None:
    async with two_fronts(tmp_path) as pair:
        client = consul.Consul(host="127.0.0.1", port=pair.front)
        index, nodes = await asyncio.to_thread(client.health.service, "web", passing=True)
        assert [n["Node"]["Node"] for n in nodes] == ["n3"]
        waiting = asyncio.create_task(
            asyncio.to_thread(client.health.service, "web", index=index, wait="30s")
        )
        await asyncio.sleep(0.2)
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
