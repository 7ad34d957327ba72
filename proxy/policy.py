"""What a sidecar decides with: the intentions it watches and the agent's default. Pure.

One `Policy` per sidecar, shared by its inbound listener (inbound.py,
inbound_http.py) and replaced field by field as the intentions watch
answers (runtime.py): until the first answer it is not `known`, and every
connection is refused rather than decided on a guess.
"""

from __future__ import annotations

from gossamer.intentions.decide import IntentionSet


class Policy:
    """The intentions and default policy the proxy currently decides with."""

    def __init__(self) -> None:
        self.intentions = IntentionSet(())
        self.default_allow = False
        self.known = False  # no intentions answer yet: refuse rather than guess
