"""Hostile bodies at the HTTP edge: nesting past the documented limit is a 400, never a 500.

Served through the real app of tests/test_http_errors.py (real socket, real
stores). Every route that reads a JSON body is listed here and each must
name the problem; the agent keeps answering afterwards.
"""

from __future__ import annotations

import pytest

from gossamer.catalog.plain_json import BODY_MAX_DEPTH
from tests.harness.served_agent import Served

JSON_WRITES = [
    ("PUT", "/v1/agent/service/register"),
    ("PUT", "/v1/agent/check/register"),
    ("PUT", "/v1/agent/check/update/nope"),
    ("PUT", "/v1/catalog/register"),
    ("PUT", "/v1/catalog/deregister"),
    ("POST", "/v1/connect/intentions"),
    ("PUT", "/v1/connect/intentions/exact?source=web&destination=db"),
    ("PUT", "/v1/connect/intentions/some-id"),
    ("PUT", "/v1/connect/intentions/denials"),
    ("POST", "/v1/agent/connect/authorize"),
    ("POST", "/v1/operator/keyring"),
    ("PUT", "/v1/operator/keyring"),
    ("DELETE", "/v1/operator/keyring"),
    ("PUT", "/v1/connect/ca/configuration"),
]
SAYS = f"Request decode failed: JSON nested deeper than {BODY_MAX_DEPTH} levels\n"


@pytest.mark.parametrize(("method", "path"), JSON_WRITES)
async def test_a_body_nested_100000_deep_is_a_400_naming_the_limit(
    served: Served,
    method: str,
    path: str,
) -> None:
    for body in ("[" * 100_000, '{"Name": ' + "[" * 100_000 + "]" * 100_000 + "}"):
        assert await served.call(method, path, body) == (400, SAYS)
    assert (await served.call("GET", "/v1/agent/services"))[0] == 200


async def test_nesting_up_to_the_limit_is_read_and_brackets_in_strings_do_not_count(
    served: Served,
) -> None:
    at_limit = "[" * BODY_MAX_DEPTH + "]" * BODY_MAX_DEPTH
    status, text = await served.call("PUT", "/v1/agent/service/register", at_limit)
    assert status == 400 and "nested" not in text  # decoded, then refused as a registration
    in_string = '{"Name": "w", "Port": 1, "Meta": {"k": "' + "[{" * 100 + '"}}'
    assert await served.call("PUT", "/v1/agent/service/register", in_string) == (200, "null")
