"""The denials pane's rows and where each leads. Pure.

A row shows source, destination, the rule that denied, the count and how
long ago it was last seen (`ago`, from a clock the screen passes in). A row
leads to the rule that denied: the pair of the intention with its ID, when
the list still holds it; otherwise (the default policy, intentions not yet
known, or an intention deleted since) to a new intention that would allow
the pair (`allow_draft`).

Below the list, the edge figures: from `GET /v1/agent/metrics/proxies`
(the agent gathers its sidecars' `/stats`), one row per inbound edge that
denied anything since its proxy started, requests or connections denied by
intention and connections cut by a policy change, most denied first
(`edge_denials`). The list is what was reported lately, by rule; the
figures are every denial each edge counted, including what the list's
10-minute window has dropped. A proxy whose figures could not be read is
named (`unread`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gossamer.intentions.denials import Denial
from gossamer.intentions.model import Intention
from gossamer.intentions.tui.form import Draft
from gossamer.intentions.tui.rows import Pair

COLUMNS = ("Source", "Destination", "Rule", "Count", "Last seen")
EDGE_COLUMNS = ("Source", "Destination", "Denied", "Cut by a change", "Proxy")


def ago(then_ms: int, now_ms: int) -> str:
    """`5s ago`, `3m ago`, `2h ago`; a time ahead of the clock is `now`."""
    seconds = max(now_ms - then_ms, 0) // 1000
    if seconds < 60:
        return f"{seconds}s ago" if seconds else "now"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def cells(denial: Denial, now_ms: int) -> tuple[str, str, str, str, str]:
    return (denial.source, denial.destination, denial.rule, str(denial.count),
            ago(denial.last_ms, now_ms))  # fmt: skip


def rule_pair(denial: Denial, intentions: Mapping[Pair, Intention]) -> Pair | None:
    """The pair of the intention that denied, if the list holds it (found by ID)."""
    if not denial.intention_id:
        return None
    for pair, ixn in intentions.items():
        if ixn.id == denial.intention_id:
            return pair
    return None


def allow_draft(denial: Denial) -> Draft:
    """A new intention that would let the denied pair through."""
    return Draft(denial.source, denial.destination, "allow",
                 f"allows what {denial.rule} denied")  # fmt: skip


@dataclass(frozen=True)
class EdgeDenials:
    """One inbound edge's deny counts, as its proxy counted them since it started."""

    source: str
    destination: str
    denied: int
    terminated: int
    proxy: str

    def cells(self) -> tuple[str, str, str, str, str]:
        return (self.source, self.destination, str(self.denied), str(self.terminated),
                self.proxy)  # fmt: skip


def edge_denials(answer: object) -> list[EdgeDenials]:
    """The inbound edges with denials in a `/v1/agent/metrics/proxies` answer, most denied
    first; anything not shaped like a proxy's figures is skipped (the agent says what it
    could not read, `unread`)."""
    found = []
    for proxy in _dicts(answer):
        stats = proxy.get("Stats")
        for figures in _dicts(stats.get("Proxies") if isinstance(stats, dict) else None):
            for e in _dicts(figures.get("Edges")):
                denied, cut = _count(e.get("Denied")), _count(e.get("Terminated"))
                if e.get("Direction") == "inbound" and denied + cut:
                    found.append(EdgeDenials(str(e.get("Source", "")),
                                             str(e.get("Destination", "")), denied, cut,
                                             str(proxy.get("ProxyID", ""))))  # fmt: skip
    return sorted(found, key=lambda r: (-(r.denied + r.terminated), r.source, r.destination))


def unread(answer: object) -> list[str]:
    """`proxy-id (why)` for each proxy the agent could not read."""
    return [f"{p.get('ProxyID', '?')} ({p['Error']})" for p in _dicts(answer) if p.get("Error")]


def _dicts(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
