"""What a service-router route does to the tries and the answer of each request it takes. Pure.

`RouteRules` rides on each request such a route takes (`Exchange.rules`, set
by router_plan.RouterPlan.target_for); it is None on every other request,
so the HTTP path of an upstream with no router (or a route with none of
these fields) pays one attribute test per answer.

Retries, from the route's `Destination` as Consul's Envoy config reads it:
- `NumRetries`: the most retries of one request, in place of the sidecar's
  own number (http_app_link.MAX_RETRIES); unset (0), the sidecar's own;
- `RetryOnStatusCodes`, and `RetryOn` `5xx` (500-599), `gateway-error`
  (502-504), `retriable-4xx` (409): an answer with one of these statuses
  is sent again elsewhere whatever the request's method, as Envoy does;
- `RetryOn` `reset` (and `5xx`, which includes it): a request whose try
  ended with no answer begun (its connection lost, or gone silent past the
  idle limit) is sent again whatever its method;
- `RetryOnConnectFailure`, `RetryOn` `connect-failure` and
  `refused-stream` ask for what the sidecar does for every request: a
  failed connection is tried on another instance, and a request the far
  sidecar says never reached its app is sent again whatever its method.
The sidecar's own rule stays beside these (an idempotent request is sent
again after a 502 or 503 or a lost try). Every retry still needs an answer
not yet begun, the request kept (its body up to http1.KEPT_BODY: Envoy
too retries only what it buffered), and the upstream's retry budget.

`ResponseHeaders`: removed, then set (replacing), then added, as Envoy
edits them, on the final answer only (not an interim 1xx).

`IdleTimeout`: a try of the request with no byte either way this long is
sent again under these rules (as `reset`), else answered 504, in place of
the upstream's `request_idle_timeout_ms` (http_deadlines.py). Envoy's
route idle timeout spans the whole stream; here it is per try, as the
upstream's own limit is.
"""

from __future__ import annotations

from dataclasses import dataclass

from gossamer.catalog.config_router import Destination, HeaderEdits
from gossamer.proxy.http_codec import CRLF, RETRY_STATUSES, SEP

# The statuses each RetryOn condition retries, and the conditions that retry a lost try
_STATUSES = {"5xx": range(500, 600), "gateway-error": (502, 503, 504), "retriable-4xx": (409,)}
_ON_LOST = frozenset(("5xx", "reset"))


@dataclass(frozen=True, slots=True)
class RouteRules:
    num_retries: int  # 0: the sidecar's own number
    statuses: frozenset[int]  # answers sent again elsewhere whatever the method
    on_lost: bool  # a try that ended with no answer is sent again whatever the method
    gone: frozenset[bytes]  # answer fields removed (lower case): Remove and Set's names
    added: tuple[bytes, ...]  # answer fields appended, flat (name, ": ", value, CRLF each)
    idle_s: float = 0.0  # a try's idle limit (IdleTimeout); 0: the upstream's

    def may_retry(self, retries: int, own_max: int, safe: bool, status: int,
                  lost: bool) -> bool:  # fmt: skip
        """Whether a request tried `retries` times may be sent again after an answer of
        `status` (0: none, and `lost` when its try ended with none begun). `safe`: the
        sidecar's own rule would send it again (idempotent, or it reached no app)."""
        if retries >= (self.num_retries or own_max):
            return False
        if status:
            return status in self.statuses or (safe and status in RETRY_STATUSES)
        return safe or (lost and self.on_lost)

    def answer_head(self, head: list[bytes]) -> list[bytes]:
        """A flat answer head (name, ": ", value, CRLF per field) with the edits made."""
        gone, added = self.gone, self.added
        if not gone:
            return [*head, *added] if added else head
        kept: list[bytes] = []
        for i in range(0, len(head), 4):
            if head[i].lower() not in gone:
                kept += head[i : i + 4]
        kept += added
        return kept


def rules_of(d: Destination) -> RouteRules | None:
    """The rules of a route's destination; None when it sets no retry field, no answer edit
    and no IdleTimeout (its requests carry none)."""
    edits = d.response_headers
    if not (d.retries or d.idle_timeout_s or edits.add or edits.set or edits.remove):
        return None
    statuses = set(d.retry_on_status_codes)
    for cond in d.retry_on:
        statuses.update(_STATUSES.get(cond, ()))
    return RouteRules(d.num_retries, frozenset(statuses), bool(_ON_LOST.intersection(d.retry_on)),
                      *_answer_edits(edits), d.idle_timeout_s)  # fmt: skip


def _answer_edits(edits: HeaderEdits) -> tuple[frozenset[bytes], tuple[bytes, ...]]:
    gone = {n.lower().encode("latin-1") for n in (*edits.remove, *(n for n, _ in edits.set))}
    added: list[bytes] = []
    for name, value in (*edits.set, *edits.add):
        added += (name.encode("latin-1"), SEP, value.encode("utf-8"), CRLF)
    return frozenset(gone), tuple(added)
