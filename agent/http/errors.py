"""HTTP errors as values the edge turns into plain-text answers.

Handlers raise these for bad input and known failures; the error middleware
renders them. Anything else becomes a 500 with a one-line reason, never a
traceback in the response.
"""

from __future__ import annotations


class HttpError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(HttpError):
    status = 400


class NotFound(HttpError):
    status = 404


class Conflict(HttpError):
    """The request is fine but collides with what is stored (a name another agent owns, a pair
    that already has an intention)."""

    status = 409


class ServerError(HttpError):
    status = 500
