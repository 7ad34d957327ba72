"""Which route of its service-router one balanced HTTP/2 call takes (h2_split_routed.py).

The upstream's router plan (router_plan.RouterPlan, the one an HTTP/1
upstream of the service would get) is matched against the call's
`:method`, `:path` and fields by the HTTP/1 code (routes.Matcher), which
sees the call as the far gate's intentions do (h2_fields.request_of: the
path normalized, the authority under `host` and `:authority` both, a
binary `-bin` value as base64); the route's destination is drawn as an
HTTP/1 request's (router_plan.destination).
Reads the listener's instance lists and draws from its random source; no
I/O. Loaded only by a sidecar whose balanced upstream has a router.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gossamer.proxy.h2_fields import request_of
from gossamer.proxy.h2_split_routed import CallRoute, addable, request_fields
from gossamer.proxy.h2_split_wire import Fields
from gossamer.proxy.http_limits import Limits
from gossamer.proxy.http_target import BadTarget, normal_path
from gossamer.proxy.router_plan import RouterPlan, RouteTo, destination

if TYPE_CHECKING:
    from gossamer.proxy.outbound import UpstreamListener


def call_route(plan: RouterPlan, listener: UpstreamListener, fields: Fields) -> CallRoute | None:
    """The route a call with request head `fields` takes, ready for the splitter; None when
    no route takes it (it goes as with no router)."""
    try:  # (the path as the far gate judges it, and as HTTP/1's route is matched and sent)
        fields = normal_path(fields)
    except BadTarget:
        return None  # no path: the far gate answers it 400
    i = plan.matcher.first(request_of(fields))
    if i < 0:
        return None
    to = plan.routes[i]
    e = to.edits
    head = request_fields(fields, to.prefix, to.rewrite, e.remove, e.set, e.add)
    gone, added = (frozenset(), ()) if to.rules is None else _answer(to)
    rules = to.rules
    return CallRoute(plan.decisions[i].route, "" if to.own else destination(to, listener),
                     head, gone, added, _limits(to, listener),
                     rules is not None and rules.on_lost,
                     0 if rules is None else rules.num_retries)  # fmt: skip


def _answer(to: RouteTo) -> tuple[frozenset[bytes], tuple[tuple[bytes, bytes], ...]]:
    """The route's `ResponseHeaders` as (names removed, fields appended), names lower case
    as HTTP/2 wants them (its RouteRules keeps them as HTTP/1 lines), none that would make
    the answer malformed (`addable`)."""
    assert to.rules is not None
    flat = to.rules.added  # name, ": ", value, CRLF per field
    pairs = [(flat[i].lower(), flat[i + 2]) for i in range(0, len(flat), 4)]
    added = tuple((n, v) for n, v in pairs if addable(n, v))
    return frozenset(n for n in to.rules.gone if n[:1] != b":"), added


def _limits(to: RouteTo, listener: UpstreamListener) -> Limits | None:
    """The route's own timeouts (its RequestTimeout, its IdleTimeout), None when it has
    neither: the upstream's bind it."""
    idle_s = to.rules.idle_s if to.rules is not None else 0.0
    if not to.request_s and not idle_s:
        return None
    u = listener.upstream
    return Limits(to.request_s or listener.request_timeout_s, idle_s or u.request_idle_s,
                  u.client_idle_s)  # fmt: skip
