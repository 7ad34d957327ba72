"""How long a retry of an HTTP request waits before it goes: Envoy's back-off. Pure.

Envoy (Consul's data plane) waits before each retry a uniform draw in
[0, (2^n - 1) x base] for retry n (1: the first), the interval capped at
ten times the base; Consul leaves Envoy's defaults, a 25 ms base, so the
longest waits run 25, 75, 175, 250, 250 ... ms. With no wait, a request
to a single failing instance spent all its tries within milliseconds
(`NumRetries: 5`: six tries in a burst), which only adds load to an app
that is already failing, and gives one that is restarting no time to come
back.

A retry of a try that reached no app (its sidecar said so) waits nothing
when another instance can take it (`at_once`): the app is spared either
way. Retries still stop at the request's deadline: a wait that would end
at or past it is not made (`delay_s` says None), and the request keeps the
answer it has. The random draw and the time left are passed in.
"""

from __future__ import annotations

from typing import Final

BASE_S: Final = 0.025  # Envoy's default base interval
CAP_S: Final = 10 * BASE_S  # Envoy's default max interval: ten times the base
_FLAT_FROM: Final = 60  # past this many retries the interval is the cap for any base in use


def interval_s(retry: int, base_s: float = BASE_S, cap_s: float = CAP_S) -> float:
    """The longest wait before retry number `retry` (1: the first; 0 or less: none)."""
    if retry < 1:
        return 0.0
    if retry >= _FLAT_FROM:  # (2^n - 1) x base would only grow past the cap
        return cap_s
    return min(cap_s, ((1 << retry) - 1) * base_s)


def delay_s(retry: int, draw: float, left_s: float, *, at_once: bool = False,
            base_s: float = BASE_S, cap_s: float = CAP_S) -> float | None:  # fmt: skip
    """The wait before retry number `retry`, for a `draw` in [0, 1] (clamped there), with
    `left_s` seconds left before the request's deadline (inf: it has none). None: no retry,
    the wait would end at or past the deadline (or it has passed)."""
    wait = 0.0 if at_once else min(max(draw, 0.0), 1.0) * interval_s(retry, base_s, cap_s)
    return None if wait >= left_s else wait
