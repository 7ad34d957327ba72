"""What a README walk of service routers found: bodies a Consul user may write that were
stored although every request the route took then failed, and Consul fields read wrong.
Pure: the agent's `PUT /v1/config` stores what `read_entry` returns and nothing when it
raises (catalog/config_entries.py)."""

from __future__ import annotations

from typing import Any

import pytest

from gossamer.catalog.config_entries import ConfigEntryError, read_entry


def router(*routes: dict[str, Any]) -> dict[str, Any]:
    return {"Kind": "service-router", "Name": "api", "Routes": list(routes)}


def problems_of(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigEntryError) as caught:
        read_entry(body)
    return dict(caught.value.problems)


def prefix_route(rewrite: str) -> dict[str, Any]:
    return {"Match": {"HTTP": {"PathPrefix": "/v2/"}},
            "Destination": {"Service": "api-v2", "PrefixRewrite": rewrite}}  # fmt: skip


@pytest.mark.parametrize("rewrite", [
    "v1/",  # the request line would carry `GET v1/users`: the far side answers 400
    "/a b/",  # a space ends the request target: the rest reads as the HTTP version
    "/a\r\nx-evil: 1\r\nx-pad: ",  # a line break writes fields of its own into the head
    "/\u20ac/",  # not latin-1: the sidecar's own re-encoding raised, each request got 400
    "/a#b",  # a fragment is never part of a request target
])  # fmt: skip
def test_a_prefix_rewrite_that_cannot_start_a_request_target_is_refused(rewrite: str) -> None:
    found = problems_of(router(prefix_route(rewrite)))
    assert list(found) == ["Routes[0].Destination.PrefixRewrite"], found


@pytest.mark.parametrize("rewrite", ["/", "/v1/", "/v1", "/a%20b/", "/x?y=1&", "/~user/"])
def test_a_prefix_rewrite_that_starts_a_path_is_stored(rewrite: str) -> None:
    entry = read_entry(router(prefix_route(rewrite)))
    assert entry["Routes"][0]["Destination"]["PrefixRewrite"] == rewrite


@pytest.mark.parametrize("num", [-1, 2**32, 2.5, "3", True])
def test_num_retries_out_of_range_names_the_range_consul_takes(num: object) -> None:
    route = {"Destination": {"Service": "api-v2", "NumRetries": num}}
    found = problems_of(router(route))
    why = found["Routes[0].Destination.NumRetries"]
    assert "0-4294967295" in why, why  # "0 or more" said nothing to the one who wrote 2**32


def test_num_retries_at_consul_s_largest_is_stored() -> None:
    entry = read_entry(router({"Destination": {"Service": "api-v2", "NumRetries": 2**32 - 1}}))
    assert entry["Routes"][0]["Destination"]["NumRetries"] == 2**32 - 1
