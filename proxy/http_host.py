"""What an HTTP session is served by (http1.py): the inbound path or a pooled upstream."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gossamer.intentions.model import Decision, HttpRequest
    from gossamer.proxy.http1 import HttpSession
    from gossamer.proxy.http_codec import Exchange, Outcome
    from gossamer.proxy.http_limits import Limits
    from gossamer.proxy.side import Side


class HttpHost(Protocol):
    """Where a session's requests go: the local app (inbound.py) or a pool of mTLS
    connections to an upstream's instances (http_upstream.py, `pooled`)."""

    headers_timeout_s: float
    max_header_bytes: int
    pooled: bool  # the app connection goes back to the host after each answer
    draining: bool  # answers say `Connection: close`, and each session ends after its own
    limits: Limits  # the session's timeouts (http_deadlines.py)
    refusal: tuple[int, bytes]  # the answer to a request `decide_request` refuses

    def decide_request(self, source: str, request: Callable[[], HttpRequest]) -> Decision: ...
    def http_outcome(self, outcome: Outcome) -> None: ...
    def http_closed(self, session: HttpSession) -> None: ...
    def http_event(self, name: str) -> None: ...  # a timeout of http_deadlines.py, counted
    # For the request `ex`: its `failed_on` (where its earlier attempts failed) are avoided
    # while there is another; its `target` is the split's draw for it, made once.
    def take_idle(self, ex: Exchange) -> Side | None: ...  # ready now, no await
    async def open_backend(self, ex: Exchange) -> Side: ...  # OSError, TimeoutError
    def release_backend(self, side: Side, *, failed: bool = False, timed: bool = True,
                        status: int = 0) -> object: ...  # fmt: skip  # instance
    def may_retry(self) -> bool: ...
    def elsewhere(self, ex: Exchange) -> bool: ...  # an instance none of its tries failed on
