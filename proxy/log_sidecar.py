"""Which sidecar a log line of `connect proxy --node` is about.

One node proxy serves many sidecars in one process and one log, and most of
a sidecar's lines name an upstream or a count, not the sidecar ("upstream db
listening on ...", "draining 2 open connection(s)"): with two sidecars
calling db, or twenty being drained, nobody could tell whose line it was.
node.py runs each sidecar's work in a context (`tagged`) naming it; every
task and connection callback it starts inherits it (asyncio and uvloop copy
the context into each task and into a server's protocol callbacks), and the
handler's filter (`SidecarTag`) puts the name in front of the message. A
process serving one sidecar never sets it, so its lines are as they were.
"""

from __future__ import annotations

import contextvars
import logging

SIDECAR: contextvars.ContextVar[str] = contextvars.ContextVar("gossamer_sidecar", default="")


def tagged(proxy_id: str) -> contextvars.Context:
    """A copy of the current context in which log lines name sidecar `proxy_id`."""
    context = contextvars.copy_context()
    context.run(SIDECAR.set, proxy_id)
    return context


class SidecarTag(logging.Filter):
    """Sets `%(sidecar)s` on every record: "[<proxy id>] ", or "" outside a sidecar's work."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = SIDECAR.get()
        record.sidecar = f"[{name}] " if name else ""
        return True
