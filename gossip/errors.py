"""Errors of the Serf RPC client, one type per kind of fault.

Callers need to tell "serf refused this" (retrying the same request will not
help) from "serf is unreachable" (retry later, the client may reconnect).
"""

from __future__ import annotations

from typing import Any


class SerfError(Exception):
    """Base of every error the Serf RPC client raises."""


class SerfRpcError(SerfError):
    """Serf answered with an Error in the response header.

    `body` keeps the response body when serf sent one with the error, e.g.
    the per-node messages of a failed key operation or the join count.
    """

    def __init__(self, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.body = body


class SerfConnectionError(SerfError):
    """The RPC connection could not be made, was lost, or the client is closed."""


class SerfTimeoutError(SerfConnectionError, TimeoutError):
    """serf did not answer a call in time: stopped (SIGSTOP), wedged or overloaded.

    A SerfConnectionError, so every caller that copes with an unreachable serf
    (the member watch, the tag publisher, the HTTP error table) copes with
    this too; a plain TimeoutError once killed those loops and came out of the
    HTTP API as "internal error". Still a TimeoutError for callers that ask.
    """
