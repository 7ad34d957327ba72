"""A service-splitter walked as a Consul user writes one, while traffic flows.

The canary mesh of tests/split_support.py (two agents; `api` and
`api-canary` apps behind their sidecars on s1; web's HTTP upstream of `api`
on s2). Entries are written with plain HTTP on s1, as `curl` would: three
legs in hundredths (33.33 / 33.33 / 33.34, one to a service with no
instance), a 0-weight leg, bad entries refused with Consul's 400 naming the
field while the entry in force stays in force, and the entry changed and
then deleted under a request in flight, which finishes where it was sent.
"""

from __future__ import annotations

import http.client
import json
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.poll import eventually
from tests.proxy_support import status_of
from tests.split_support import Mesh, one, split_mesh


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with split_mesh(tmp_path_factory.mktemp("resilience-split")) as ready:
        yield ready


def _http(mesh: Mesh, method: str, path: str, body: object = None) -> tuple[int, str]:
    host, port = mesh.writer.http.base_uri.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body))
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _write(mesh: Mesh, splits: list[dict[str, Any]]) -> tuple[int, str]:
    return _http(mesh, "PUT", "/v1/config",
                 {"Kind": "service-splitter", "Name": "api", "Splits": splits})  # fmt: skip


def test_three_legs_in_hundredths_one_with_no_instance_and_a_zero_leg(mesh: Mesh) -> None:
    """33.33 / 33.33 / 33.34 sum to 100 in hundredths (Consul's scaleWeight): accepted. The
    leg to `api-ghost` (no instance) gets its third, answered 503; then a 0-weight leg to
    the canary never gets a request."""
    legs = [{"Weight": 33.33, "Service": "api"}, {"Weight": 33.33, "Service": "api-canary"},
            {"Weight": 33.34, "Service": "api-ghost"}]  # fmt: skip
    assert _write(mesh, legs) == (200, "true")
    try:
        eventually(lambda: "api 33.33%, api-canary 33.33%, api-ghost 33.34%"
                   in mesh.client_proxy.log(), 20, what="the split in web's proxy")  # fmt: skip
        n = 600
        before = len(mesh.api.seen), len(mesh.canary.seen)
        statuses = [status_of(mesh.http_up[1], "GET", f"/echo/third{i}") for i in range(n)]
        to_api = len(mesh.api.seen) - before[0]
        to_canary = len(mesh.canary.seen) - before[1]
        failed = statuses.count(503)
        assert statuses.count(200) == to_api + to_canary and to_api + to_canary + failed == n
        sd = math.sqrt(n * (1 / 3) * (2 / 3))  # 11.5: each count within 4 sd of 200
        print(f"\n33.33/33.33/33.34: api {to_api}, canary {to_canary}, ghost 503s {failed}")
        for count in (to_api, to_canary, failed):
            assert abs(count - n / 3) <= 4 * sd, (to_api, to_canary, failed)

        zero = [{"Weight": 100, "Service": "api"}, {"Weight": 0, "Service": "api-canary"}]
        assert _write(mesh, zero) == (200, "true")
        eventually(lambda: "upstream api split: api 100%, api-canary 0%"
                   in mesh.client_proxy.log(), 20, what="the 100/0 split")  # fmt: skip
        assert all(one(mesh) == "api" for _ in range(200))
    finally:
        _http(mesh, "DELETE", "/v1/config/service-splitter/api")


@pytest.mark.parametrize(("splits", "field", "said"), [
    ([{"Weight": 50, "Service": "api"}, {"Weight": 49.99, "Service": "api-canary"}],
     "Splits", "must sum to 100"),
    ([{"Weight": 110, "Service": "api"}, {"Weight": -10, "Service": "api-canary"}],
     "Splits[1].Weight", "from 0 to 100"),
    ([{"Weight": 100, "Service": "api", "Wieght": 5}], "Splits[0]", "Wieght"),
    ([{"Weight": 100, "Service": "api", "ServiceSubset": "v2"}],
     "Splits[0].ServiceSubset", "service-resolver"),
    ([{"Weight": 33.333, "Service": "api"}, {"Weight": 33.333, "Service": "api-canary"},
      {"Weight": 33.333, "Service": "api-v3"}], "Splits", "must sum to 100"),
])  # fmt: skip
def test_a_bad_entry_is_a_400_naming_the_field_and_the_split_in_force_stays(
    mesh: Mesh, splits: list[dict[str, Any]], field: str, said: str
) -> None:
    all_canary = [{"Weight": 0, "Service": "api"}, {"Weight": 100, "Service": "api-canary"}]
    assert _write(mesh, all_canary) == (200, "true")
    try:
        eventually(lambda: all(one(mesh) == "api-canary" for _ in range(10)), 20,
                   what="0/100 in force")  # fmt: skip
        status, body = _write(mesh, splits)
        assert status == 400, body
        assert field in body and said in body, body
        stored = json.loads(_http(mesh, "GET", "/v1/config/service-splitter/api")[1])
        assert stored["Splits"] == all_canary
        assert all(one(mesh) == "api-canary" for _ in range(20))
    finally:
        _http(mesh, "DELETE", "/v1/config/service-splitter/api")


def test_changed_then_deleted_under_a_request_in_flight(mesh: Mesh) -> None:
    """A request in flight on the canary when the entry changes (then is deleted) finishes
    there, answered 200; the requests after it follow the new entry, then none (the upstream's
    own service)."""
    assert _write(mesh, [{"Weight": 0, "Service": "api"},
                         {"Weight": 100, "Service": "api-canary"}]) == (200, "true")  # fmt: skip
    try:
        eventually(lambda: all(one(mesh) == "api-canary" for _ in range(10)), 20,
                   what="0/100 in force")  # fmt: skip
        slow: list[int] = []
        mesh.canary.delay_s = 1.5  # (the canary's intention lets `/echo` paths in, no others)

        def send_slow() -> None:
            slow.append(status_of(mesh.http_up[1], "GET", "/echo/inflight"))

        flight = threading.Thread(target=send_slow)
        flight.start()
        eventually(lambda: "GET /echo/inflight" in mesh.canary.seen, 5, what="the slow request")
        mesh.canary.delay_s = 0.0  # (read when a request comes: the one in flight sleeps on)
        assert _write(mesh, [{"Weight": 100, "Service": "api"},
                             {"Weight": 0, "Service": "api-canary"}]) == (200, "true")  # fmt: skip
        eventually(lambda: all(one(mesh) == "api" for _ in range(10)), 20, what="100/0")
        assert _http(mesh, "DELETE", "/v1/config/service-splitter/api") == (200, "{}")  # Consul
        eventually(lambda: "upstream api split: none" in mesh.client_proxy.log(), 20,
                   what="the deletion in web's proxy")  # fmt: skip
        assert all(one(mesh) == "api" for _ in range(20))
        flight.join(10)
        assert slow == [200]
        assert "GET /echo/inflight" not in mesh.api.seen  # it was not sent again elsewhere
    finally:
        mesh.canary.delay_s = 0.0
        _http(mesh, "DELETE", "/v1/config/service-splitter/api")
