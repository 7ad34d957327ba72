"""What answering a read needs of a request, so two HTTP fronts share one answering code.

An aiohttp `web.Request` has it, and so does the light front's parsed head
(front.py); the read handlers' cores (`read_query`, `query_flag`,
`blocking_json`) take an `Asked`, never a second copy per front.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web
from multidict import MultiMapping


class Asked(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def query(self) -> MultiMapping[str]: ...

    @property
    def app(self) -> web.Application: ...
