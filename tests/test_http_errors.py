"""The HTTP error table (agent/http/errors.py), one bad request per row, through the real app.

The app is `make_app` as the agent builds it, served in-process on a real
socket, with a real LiveCatalog, LocalNode, ExternalNodes and IntentionStore
over SQLite files; only serf and the agent's reload are stand-ins (a serf
that refuses, or cannot be reached, is what these requests need). Each case
names the table row it exercises, and a test checks every row has one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gossamer.agent.acl.api_bodies import AclBodyError
from gossamer.agent.acl.resolve import AclDisabled, AclNotFound, PermissionDenied, TooManyGuesses
from gossamer.agent.checks.runner import NotTTLCheck
from gossamer.agent.config import ConfigError
from gossamer.agent.http.errors import ERRORS, BadRequest, NotFound, ServerError
from gossamer.agent.identity.mesh_identity import IdentityNotReady, ServiceNotHere
from gossamer.agent.local.registry import UnknownId
from gossamer.agent.replicated.intention_store import (
    DuplicateIntention,
    IntentionNotFound,
)
from gossamer.catalog.blocking import QueryParamError
from gossamer.catalog.config_entries import ConfigEntryNotFound
from gossamer.catalog.filter import FilterError
from gossamer.catalog.registration import (
    SIDECAR_PORT_RANGE,
    RegistrationConflict,
    RegistrationError,
    ServiceNotRegistered,
)
from gossamer.catalog.store import StoreError
from gossamer.gossip.addresses import AddressError
from gossamer.gossip.errors import SerfConnectionError, SerfRpcError
from gossamer.gossip.keyring import InvalidKeyError, generate_key
from gossamer.intentions.validate import IntentionError
from gossamer.proxy.ca.errors import CaConfigError, LeafRequestError
from tests.harness.served_agent import UUID, Served

KEY = generate_key()


@dataclass(frozen=True)
class Case:
    row: type[BaseException]
    method: str
    path: str
    body: str | None
    status: int
    says: str  # what the answer's body starts with


WEB_DB = '{"SourceName": "web", "DestinationName": "db", "Action": "allow"}'
ALIAS = '{"Name": "alias", "AliasService": "web"}'

CASES = [
    Case(BadRequest, "GET", "/v1/agent/members?wan=maybe", None, 400,
         "query parameter 'wan': expected true or false, got 'maybe'"),
    Case(NotFound, "PUT", "/v1/agent/force-leave/ghost", None, 404, "unknown node: ghost"),
    Case(ServerError, "GET", "/v1/catalog/nodes?dc=dc9", None, 500, "No path to datacenter"),
    Case(QueryParamError, "GET", "/v1/catalog/nodes?index=abc", None, 400,
         "Invalid index: 'abc' is not an unsigned integer"),
    Case(QueryParamError, "GET", "/v1/agent/service/web?hash=x&wait=soon", None, 400,
         "Invalid wait: 'soon' is not a duration"),
    Case(FilterError, "GET", "/v1/agent/services?filter=Port%20%3D%3D", None, 400,
         'filter: expected a value after "==", found end of input'),
    Case(FilterError, "GET", "/v1/catalog/nodes?filter=Port%20%3D%3D", None, 400,
         'filter: expected a value after "==", found end of input'),
    Case(RegistrationError, "PUT", "/v1/agent/service/register", '{"Port": 80}', 400,
         "Name: missing required field"),
    Case(RegistrationError, "PUT", "/v1/catalog/register", '{"Address": "a"}', 400,
         "Node: missing required field"),
    Case(ServiceNotRegistered, "PUT", "/v1/agent/check/register",
         '{"Name": "c", "TTL": "10s", "ServiceID": "nope"}', 404,
         'ServiceID: service "nope" is not registered on this agent'),
    Case(RegistrationConflict, "PUT", "/v1/catalog/register", '{"Node": "n2", "Address": "a"}',
         409, 'Node: "n2" is an agent of the cluster'),
    Case(RegistrationConflict, "PUT", "/v1/catalog/deregister", '{"Node": "ext2"}', 409,
         'Node: external node "ext2" is owned by agent "n2"'),
    Case(RegistrationConflict, "PUT", "/v1/catalog/register",
         f'{{"Node": "x", "Address": "a", "ID": "{UUID}"}}', 409,
         f'ID: "{UUID}" is already used by node "n2"'),
    Case(UnknownId, "PUT", "/v1/agent/service/deregister/nope", None, 404,
         "Unknown service ID 'nope'"),
    Case(UnknownId, "PUT", "/v1/agent/service/maintenance/nope?enable=true", None, 404,
         "Unknown service ID 'nope'"),
    Case(UnknownId, "GET", "/v1/agent/service/nope", None, 404, "Unknown service ID 'nope'"),
    Case(UnknownId, "PUT", "/v1/agent/check/deregister/nope", None, 404,
         "Unknown check ID 'nope'"),
    Case(UnknownId, "PUT", "/v1/agent/check/pass/nope", None, 404, "Unknown check ID 'nope'"),
    Case(IntentionError, "POST", "/v1/connect/intentions",
         '{"SourceName": "web", "DestinationName": "db", "Action": "maybe"}', 400,
         "Invalid intention:\n  Action: "),
    Case(IntentionNotFound, "PUT", "/v1/connect/intentions/no-such-id", WEB_DB, 404,
         "Intention not found: no-such-id"),
    Case(ConfigEntryNotFound, "GET", "/v1/config/service-splitter/nope", None, 404,
         "Config entry not found for 'service-splitter' / 'nope'"),
    Case(IntentionNotFound, "GET", "/v1/connect/intentions/no-such-id", None, 404,
         "Intention not found: no-such-id"),
    Case(AddressError, "PUT", "/v1/agent/join/300.1.1.1", None, 400,
         "invalid join address: "),
    Case(InvalidKeyError, "POST", "/v1/operator/keyring", '{"Key": "c2hvcnQ="}', 400, "Key: "),
    Case(SerfRpcError, "PUT", "/v1/agent/join/10.0.0.9", None, 500,
         "join 10.0.0.9 failed: Failed to join 10.0.0.9:8301: dial tcp: i/o timeout"),
    Case(SerfRpcError, "PUT", "/v1/agent/force-leave/n2", None, 500,
         "force-leave n2 failed: node not found"),
    Case(SerfRpcError, "POST", "/v1/operator/keyring", f'{{"Key": "{KEY}"}}', 500,
         "install key failed: 2/3 nodes reported failure\n"
         "  n2: key is not valid\n  n3: no keyring"),
    Case(SerfConnectionError, "GET", "/v1/operator/keyring", None, 500,
         "listing gossip keys failed: serf is not reachable: connection refused"),
    Case(CaConfigError, "PUT", "/v1/connect/ca/configuration",
         '{"Provider": "consul", "Config": {"LeafCertTTL": "5m"}}', 400,
         "LeafCertTTL: must be between 1h and 8760h"),
    Case(LeafRequestError, "GET", "/v1/agent/connect/ca/leaf/web~1", None, 400,
         "service 'web~1' in datacenter 'dc1': "),
    Case(ServiceNotHere, "GET", "/v1/agent/connect/ca/leaf/db", None, 403,
         "service 'db' is not registered on this agent"),
    Case(IdentityNotReady, "GET", "/v1/agent/connect/ca/leaf/api", None, 503,
         "this agent holds no intermediate under the mesh's active root yet"),
    Case(AclDisabled, "PUT", "/v1/acl/token", "{}", 401, "ACL support disabled"),
    Case(ConfigError, "PUT", "/v1/agent/reload", None, 500,
         "Failed reloading: the new configuration is invalid:\n"
         "/etc/gossamer/a.yaml: log_level: must be info"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.row.__name__}-{c.method}-{c.path}")
async def test_each_row_answers_its_status_and_words(served: Served, case: Case) -> None:
    status, text = await served.call(case.method, case.path, case.body)
    assert (status, text.startswith(case.says)) == (case.status, True), text
    assert text.endswith("\n") and "Traceback" not in text


def test_every_row_of_the_table_has_a_request_here() -> None:
    covered = {c.row for c in CASES} | {DuplicateIntention, NotTTLCheck, StoreError}
    # the ACL rows need ACLs on: tests/test_acl_http.py tries each against a real agent
    covered |= {AclNotFound, PermissionDenied, TooManyGuesses, AclBodyError}
    assert covered == set(ERRORS)


async def test_a_pair_taken_twice_is_409_with_consuls_words(served: Served) -> None:
    assert (await served.call("POST", "/v1/connect/intentions", WEB_DB))[0] == 200
    status, text = await served.call("POST", "/v1/connect/intentions", WEB_DB)
    assert status == 409 and text.startswith("duplicate intention found: web => db (allow)")


async def test_a_ttl_update_of_another_kind_of_check_is_400(served: Served) -> None:
    assert (await served.call("PUT", "/v1/agent/check/register", ALIAS))[0] == 200
    status, text = await served.call("PUT", "/v1/agent/check/warn/alias")
    assert (status, text) == (400, "check 'alias' does not have an associated TTL\n")


async def test_a_write_the_store_refuses_is_500_naming_the_file(served: Served) -> None:
    served.intention_db.close()
    status, text = await served.call("POST", "/v1/connect/intentions", WEB_DB)
    assert status == 500 and text.startswith("not stored: catalog store ")
    assert "intentions.db: store is closed" in text


async def test_a_bug_is_a_short_500_not_an_api_answer(served: Served) -> None:
    """RefusingSerf.members raises a bare KeyError: no row, so no KeyError text leaks."""
    assert await served.call("GET", "/v1/agent/members") == (
        500,
        "internal error; see the agent log\n",
    )


async def test_a_registration_conflict_is_409_on_both_register_routes(served: Served) -> None:
    """Regression: the agent route answered a conflict 400 while the catalog route said 409."""
    low, high = SIDECAR_PORT_RANGE
    for port in range(low, high + 1):  # every sidecar port taken by a proxy
        served.local.register_service(
            {
                "Name": f"p{port}",
                "Kind": "connect-proxy",
                "Port": port,
                "Proxy": {"DestinationServiceName": "web"},
            },
            publish=False,
        )
    body = '{"Name": "web", "Port": 80, "Connect": {"SidecarService": {}}}'
    agent_route = await served.call("PUT", "/v1/agent/service/register", body)
    catalog_route = await served.call(
        "PUT", "/v1/catalog/register", '{"Node": "n2", "Address": "10.0.0.2"}'
    )
    assert agent_route[0] == catalog_route[0] == 409, (agent_route, catalog_route)
    assert agent_route[1].startswith("Connect.SidecarService.Port: not given and no free port")
