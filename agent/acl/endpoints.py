"""Which permission each HTTP endpoint needs, as Consul documents per endpoint.

One table, keyed by (method, route pattern), read by the enforcement
middleware. A row says what to check before the handler runs:
- `kind` and `access`: the permission (`service:write`, `node:read` ...);
  an empty kind means the endpoint is open (CA roots, status, datacenters).
- where the resource's name comes from: a path parameter (`param`), a query
  parameter (`query`), this agent's own node name (`own_node`), or nowhere
  (scalar kinds such as `operator`).
- `filtered`: a read whose answer is cut down to what the token may see;
  the middleware only checks that a token resolves, the route filters.
- `nodes_filtered`: a named service read, whose instances on nodes the
  token may not read are dropped as Consul does;
- `by_body`: the name is in the request body (a registration, an intention
  by ID); the route checks it once it has parsed the body.
Routes missing from this table are refused for any token but a management
one, so a new endpoint is closed until someone decides its permission.
"""

from __future__ import annotations

from dataclasses import dataclass

from gossamer.agent.acl.rules import Access

R, W = Access.READ, Access.WRITE


@dataclass(frozen=True)
class Need:
    kind: str
    access: Access = R
    param: str = ""
    query: str = ""
    own_node: bool = False
    filtered: bool = False
    by_body: bool = False
    nodes_filtered: bool = False  # a named service read: also drop nodes without node:read


OPEN = Need("")


def _filtered(kind: str) -> Need:
    return Need(kind, R, filtered=True)


def _body(kind: str) -> Need:
    return Need(kind, W, by_body=True)


def _service_nodes() -> Need:
    return Need("service", R, param="name", nodes_filtered=True)


def _agent(access: Access) -> Need:
    return Need("agent", access, own_node=True)


ENDPOINTS: dict[tuple[str, str], Need] = {
    ("GET", "/"): OPEN,
    ("GET", "/v1/status/leader"): OPEN,
    ("GET", "/v1/status/peers"): OPEN,
    ("GET", "/v1/catalog/datacenters"): OPEN,
    ("GET", "/v1/connect/ca/roots"): OPEN,
    ("GET", "/v1/agent/connect/ca/roots"): OPEN,
    ("GET", "/v1/connect/ca/revoked"): OPEN,
    # agent: the agent's own rules, on this agent's node name
    ("GET", "/v1/agent/self"): _agent(R),
    ("GET", "/v1/agent/clock"): _agent(R),
    ("GET", "/v1/agent/metrics"): _agent(R),
    ("GET", "/v1/agent/metrics/proxies"): _agent(R),
    ("GET", "/v1/agent/monitor"): _agent(R),
    ("PUT", "/v1/agent/join/{address}"): _agent(W),
    ("PUT", "/v1/agent/leave"): _agent(W),
    ("PUT", "/v1/agent/reload"): _agent(W),
    ("PUT", "/v1/agent/maintenance"): Need("node", W, own_node=True),
    ("PUT", "/v1/agent/force-leave/{node}"): Need("operator", W),
    ("GET", "/v1/agent/members"): _filtered("node"),
    ("GET", "/v1/agent/services"): _filtered("service"),
    ("GET", "/v1/agent/checks"): _filtered("service"),
    ("GET", "/v1/agent/service/{service_id}"): _filtered("service"),
    ("GET", "/v1/agent/health/service/{by}/{value}"): _filtered("service"),
    ("PUT", "/v1/agent/service/register"): _body("service"),
    ("PUT", "/v1/agent/service/deregister/{service_id}"): _body("service"),
    ("PUT", "/v1/agent/service/maintenance/{service_id}"): _body("service"),
    ("PUT", "/v1/agent/check/register"): _body("service"),
    ("PUT", "/v1/agent/check/deregister/{check_id}"): _body("service"),
    ("PUT", "/v1/agent/check/update/{check_id}"): _body("service"),
    ("PUT", "/v1/agent/check/{verb}/{check_id}"): _body("service"),
    ("GET", "/v1/agent/connect/ca/leaf/{service}"): Need("service", W, param="service"),
    ("POST", "/v1/agent/connect/authorize"): _body("service"),
    # catalog and health
    ("GET", "/v1/catalog/nodes"): _filtered("node"),
    ("GET", "/v1/catalog/services"): _filtered("service"),
    ("GET", "/v1/catalog/service/{name}"): _service_nodes(),
    ("GET", "/v1/catalog/connect/{name}"): _service_nodes(),
    ("GET", "/v1/catalog/node/{node}"): Need("node", R, param="node"),
    ("GET", "/v1/catalog/node-services/{node}"): Need("node", R, param="node"),
    ("PUT", "/v1/catalog/register"): _body("node"),
    ("PUT", "/v1/catalog/deregister"): _body("node"),
    ("GET", "/v1/health/service/{name}"): _service_nodes(),
    ("GET", "/v1/health/connect/{name}"): _service_nodes(),
    ("GET", "/v1/health/ingress/{name}"): _service_nodes(),
    ("GET", "/v1/health/checks/{name}"): _service_nodes(),
    ("GET", "/v1/health/node/{node}"): Need("node", R, param="node"),
    ("GET", "/v1/health/state/{state}"): _filtered("service"),
    # intentions: `intentions = ...` on the destination service
    ("GET", "/v1/connect/intentions"): _filtered("intention"),
    ("POST", "/v1/connect/intentions"): _body("intention"),
    ("GET", "/v1/connect/intentions/check"): Need("intention", R, query="destination"),
    ("GET", "/v1/connect/intentions/match"): _filtered("intention"),
    ("GET", "/v1/connect/intentions/history"): _filtered("intention"),
    ("GET", "/v1/connect/intentions/exact"): Need("intention", R, query="destination"),
    ("PUT", "/v1/connect/intentions/exact"): Need("intention", W, query="destination"),
    ("DELETE", "/v1/connect/intentions/exact"): Need("intention", W, query="destination"),
    ("GET", "/v1/connect/intentions/{id}"): _filtered("intention"),
    ("PUT", "/v1/connect/intentions/{id}"): _body("intention"),
    ("DELETE", "/v1/connect/intentions/{id}"): _body("intention"),
    ("GET", "/v1/connect/intentions/denials"): _filtered("intention"),
    ("PUT", "/v1/connect/intentions/denials"): _body("service"),
    # config entries: service-* kinds are the entry's service (Consul's CanRead/CanWrite)
    ("PUT", "/v1/config"): _body("service"),  # (a service-intentions entry: intention)
    ("GET", "/v1/config/service-intentions"): _filtered("intention"),
    ("GET", "/v1/config/service-intentions/{name}"): Need("intention", R, param="name"),
    ("DELETE", "/v1/config/service-intentions/{name}"): Need("intention", W, param="name"),
    ("GET", "/v1/config/{kind}"): _filtered("service"),
    ("GET", "/v1/config/{kind}/{name}"): Need("service", R, param="name"),
    ("DELETE", "/v1/config/{kind}/{name}"): Need("service", W, param="name"),
    # operator
    ("GET", "/v1/connect/ca/configuration"): Need("operator", R),
    ("PUT", "/v1/connect/ca/configuration"): Need("operator", W),
    ("PUT", "/v1/connect/ca/revoke-agent/{node}"): Need("operator", W),
    ("GET", "/v1/operator/keyring"): Need("keyring", R),
    ("POST", "/v1/operator/keyring"): Need("keyring", W),
    ("PUT", "/v1/operator/keyring"): Need("keyring", W),
    ("DELETE", "/v1/operator/keyring"): Need("keyring", W),
}
UNLISTED = Need("acl", W)  # closed by default: only a management token passes


def need_for(method: str, route: str) -> Need:
    """The row for a request (`route` is the canonical pattern, `{verb}` without its regex);
    HEAD is checked as GET, as aiohttp routes it."""
    return ENDPOINTS.get(("GET" if method == "HEAD" else method, route), UNLISTED)
