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
