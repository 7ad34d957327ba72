"""A service-router's routes applied to each balanced HTTP/2 (gRPC) call. Pure.

Consul's Envoy routes gRPC calls as it routes HTTP/1 requests: by `:path`
(`/pkg.Service/Method`), method, headers and query. The splitter asks its
shell's `route_of(fields)` once per new call, with the call's request head
as the client sent it (h2_routes.py matches it with the HTTP/1 code), and
gets a `CallRoute` back, or None (no router, or no route takes it: the call
goes as before). A route's call:

- goes to the route's target (drawn once per call, through its splitter
  and resolver chain, as an HTTP/1 request's), or, for a route to the
  upstream itself, where a call no route takes goes; a call sent again
  (h2_balanced_replay.py) keeps the target it drew;
- has its head rewritten before it is kept or sent: `:path`'s matched
  prefix replaced (`PrefixRewrite`) and the `RequestHeaders` edits made
  (names lower-cased, as HTTP/2 wants them; pseudo-headers never edited,
  and a connection's fields, `Connection: keep-alive` written for HTTP/1,
  never added: RFC 9113 §8.2.2 makes a call carrying one malformed, and
  the far gate would reset it);
- has the `ResponseHeaders` edits made on its answer's final head (not a
  1xx, nor trailers; an answer made here, a timeout's, is not edited);
- runs under the route's own limits (`RequestTimeout`, `IdleTimeout`);
- is recorded with the route's label (`route 1 -> api-v2/canary`).

The chooser is asked `choose(exclude, target)`: target '' for a call no
route took (or one to the upstream itself), the shell's own draw.

Retries, within what the replay can do (h2_balanced_replay.py: a call
whose request had ended, at most REPLAY_MAX bytes, and whose answer had
not begun): every call refused unbegun is sent again, as before; a route
with `RetryOn` `reset` (or `5xx`, which includes it) also sends again a
call its instance reset, or whose connection was lost, before any of its
answer came, as Envoy's `reset` does; `NumRetries` bounds how often (unset:
the replay's AGAIN_MAX). Not done: sending again a call by its answer's
status (`RetryOnStatusCodes`, `5xx` and `gateway-error` on a `:status`;
a gRPC answer's is 200 and its outcome in trailers), and a try cut by
`IdleTimeout` is answered, not sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic

from gossamer.proxy.h2_balanced_replay import ReplayingSplitter
from gossamer.proxy.h2_frames import REFUSED_STREAM
from gossamer.proxy.h2_split_calls import Call, K, Upstream
from gossamer.proxy.h2_split_wire import Event, Fields, Headers
from gossamer.proxy.http_limits import NO_LIMITS, Limits


@dataclass(frozen=True, slots=True)
class CallRoute:
    """What a route does to one call."""

    label: str  # its metrics `route` label
    target: str  # where it goes ('': the upstream's own draw)
    fields: Fields  # its request head as it goes on
    gone: frozenset[bytes] = frozenset()  # answer fields removed (lower case)
    added: tuple[tuple[bytes, bytes], ...] = ()  # answer fields appended
    limits: Limits | None = None  # its own timeouts; None: the upstream's
    on_lost: bool = False  # RetryOn reset (or 5xx): a try lost unanswered is sent again
    retries: int = 0  # NumRetries: times it may be sent again (0: the replay's own)


# Fields of a connection, which an HTTP/2 message must not carry (RFC 9113 §8.2.2; `te` but
# for "trailers"): an edit that adds one is left out
HOP_FIELDS = frozenset((b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding",
                        b"upgrade"))  # fmt: skip


def addable(name: bytes, value: bytes) -> bool:
    """Whether an edit may add field `name` (lower case) to an HTTP/2 message."""
    if name[:1] == b":" or name in HOP_FIELDS:
        return False
    return name != b"te" or value == b"trailers"


def request_fields(fields: Fields, prefix: str, rewrite: str, remove: tuple[str, ...],
                   put: tuple[tuple[str, str], ...],
                   add: tuple[tuple[str, str], ...]) -> Fields:  # fmt: skip
    """An HTTP/2 request head with `:path`'s `prefix` replaced by `rewrite` (when both are
    given and the path starts with it, in any ASCII case as routes.rewritten_head reads it),
    then `remove`d, `put` (replacing) and `add`ed fields (Envoy's order), names lower case;
    pseudo-headers are left as they are."""
    out = list(fields)
    if rewrite and prefix:
        old, new = prefix.encode("latin-1"), rewrite.encode("latin-1")
        for i, (name, value) in enumerate(out):
            if name == b":path" and value[: len(old)].lower() == old.lower():
                path = new + value[len(old) :]
                out[i] = (name, path[1:] if path.startswith(b"//") else path)
    if remove or put or add:
        gone = {n.lower().encode("latin-1") for n in (*remove, *(n for n, _ in put))}
        gone = {n for n in gone if n[:1] != b":"}
        out = [(n, v) for n, v in out if n not in gone]
        more = [(n.lower().encode("latin-1"), v.encode("utf-8")) for n, v in (*put, *add)]
        out += [(n, v) for n, v in more if addable(n, v)]
    return out


def _final_head(fields: Fields) -> bool:
    """Whether an instance's header block is an answer's final head (:status 2xx-5xx)."""
    if not fields or fields[0][0] != b":status" or len(fields[0][1]) != 3:
        return False
    return fields[0][1][:1] in (b"2", b"3", b"4", b"5")


def _nothing(status: int, route: str, seconds: float) -> None:
    """An `outcome` that keeps nothing."""


class RoutedSplitter(ReplayingSplitter[K], Generic[K]):
    """ReplayingSplitter whose calls each take the route `route_of` names for them.
    `outcome(status, route, seconds)`: each call's, and each answered here before it was
    routed (a 431)."""

    def __init__(self, choose: Callable[[set[K], str], K | None], *,
                 clock: Callable[[], float],
                 route_of: Callable[[Fields], CallRoute | None],
                 outcome: Callable[[int, str, float], None] = _nothing,
                 limits: Limits = NO_LIMITS) -> None:  # fmt: skip
        super().__init__(self._choose_for_call, clock=clock, done=_none, limits=limits)
        self._choose_in, self._route_of, self._report = choose, route_of, outcome
        self._routes: dict[int, CallRoute] = {}  # by stream: the calls a route took
        self._target = ""  # the target of the call being routed now
        self.shortest = soonest_of(limits)  # the soonest a call opened here may run out

    def _choose_for_call(self, exclude: set[K]) -> K | None:
        return self._choose_in(exclude, self._target)

    def _new_call(self, stream: int, event: Headers) -> None:
        route = self._route_of(event.fields)
        if route is not None:
            self._routes[stream] = route
            if route.limits is not None:
                self._own_limits[stream] = route.limits
                self.shortest = min(self.shortest, soonest_of(route.limits))
            event = event._replace(fields=route.fields)
        super()._new_call(stream, event)

    def _route(self, call: Call[K]) -> None:
        route = self._routes.get(call.stream)
        self._target = "" if route is None else route.target
        try:
            super()._route(call)
        finally:
            self._target = ""

    def _upstream_call_event(self, key: K, up: Upstream[K], call: Call[K], event: Event) -> None:
        route = self._routes.get(call.stream)
        if (route is not None and (route.gone or route.added) and isinstance(event, Headers)
                and not call.answered and _final_head(event.fields)):  # fmt: skip
            fields = [(n, v) for n, v in event.fields if n not in route.gone]
            event = event._replace(fields=fields + list(route.added))
        super()._upstream_call_event(key, up, call, event)

    def _settle(self, call: Call[K]) -> None:
        super()._settle(call)
        if call.stream not in self._calls:
            self._routes.pop(call.stream, None)

    def _again_max(self, call: Call[K]) -> int:
        route = self._routes.get(call.stream)
        if route is None or not route.retries:
            return super()._again_max(call)
        return route.retries

    def _lost_again(self, call: Call[K]) -> bool:
        """Whether `call`, its try lost unanswered, is sent again (its route's RetryOn)."""
        route = self._routes.get(call.stream)
        return route is not None and route.on_lost and self._replayable(call)

    def _upstream_reset(self, key: K, call: Call[K], code: int) -> None:
        up = self._ups.get(key)
        if code != REFUSED_STREAM and up is not None and self._lost_again(call):
            self._detach(key, up, call)
            self._send_again(call)
            return
        super()._upstream_reset(key, call, code)

    def _lose(self, key: K, up: Upstream[K], *, quiet: bool) -> None:
        again = [c for c in up.calls.values() if c.stream <= up.goaway and self._lost_again(c)]
        for call in again:
            self._detach(key, up, call)
        super()._lose(key, up, quiet=quiet)
        for call in again:
            self._send_again(call)

    def _label(self, stream: int) -> str:
        route = self._routes.get(stream)
        return "" if route is None else route.label

    def _outcome(self, key: K | None, status: int, route: str, seconds: float) -> None:
        self._report(status, route, seconds)


def _none(key: object, status: int, seconds: float) -> None:
    """(outcomes go through `_outcome`)"""


def soonest_of(limits: Limits) -> float:
    """The shorter of a call's request and idle limits (inf: neither)."""
    return min([s for s in (limits.request_s, limits.idle_s) if s] or [float("inf")])
