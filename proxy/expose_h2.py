"""An `http2` exposed path: an h2c connection joined to the app through the h2c gate. Shell.

Imported by expose.py for the first h2c connection only. The gate (h2_gate.py)
is the inbound port's, with its decisions made by the exposed path instead
of the intentions: a stream for the path goes to the app, any other is
answered by the gate as Envoy answers a request no route matches (`404`;
gRPC: UNIMPLEMENTED), and bytes that are not h2c (no HTTP/2 preface) close
the connection.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from gossamer.intentions.model import Decision, HttpRequest
from gossamer.proxy.h2_gate import H2Gate
from gossamer.proxy.h2_relay import GatedRelay, with_timer
from gossamer.proxy.relay import Relay
from gossamer.proxy.side import Side

if TYPE_CHECKING:
    from gossamer.proxy.expose import ExposeListener

log = logging.getLogger("gossamer.proxy")


def relay_h2(listener: ExposeListener, client: Side, app: Side, source: str) -> GatedRelay:
    """`client` joined to `app`, each of its streams decided by `listener`'s path."""

    def decide(request: HttpRequest) -> Decision:
        return listener.decide_request(source, lambda: request)

    def opaque() -> bool:
        log.info("proxy: exposed path %s: %s does not speak h2c: closed", listener.path.path,
                 source)  # fmt: skip
        return False

    def broken(message: str) -> None:
        listener.tally.add("expose.http2_broken")
        log.info("proxy: exposed path %s: HTTP/2 from %s ended: %s", listener.path.path,
                 source, message)  # fmt: skip

    def done(status: int, route: str, seconds: float) -> None:
        listener.tally.add("expose.requests")

    def closed(relay: Relay) -> None:
        gate.close(time.perf_counter())
        listener.relay_closed(relay)

    gate = H2Gate(decide, listener.max_header_bytes, done, b"", listener.limits,
                  refusal=listener.refusal[0])  # fmt: skip
    made = GatedRelay(client, app, closed, gate, opaque, broken)
    with_timer(made, gate.calls, listener.limits, listener.http_event)
    return made
