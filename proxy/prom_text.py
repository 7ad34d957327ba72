"""Prometheus's text exposition format (version 0.0.4), rendered from plain values. Pure.

One `Family` per metric name with its type and help; each sample has a
suffix (`_bucket`, `_sum`, `_count`, `_total` or nothing), labels and a
value. Rules kept here: label values are escaped (backslash, quote,
newline), names are checked once per family (a bad one is a bug, raised),
families and their samples come out in the order given so a caller that
sorts gets stable output, and a family with no samples still prints its
HELP and TYPE lines (Prometheus accepts that; readers see the name exists).
The proxy's edges and the agent's figures both render through here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
KINDS = ("counter", "gauge", "histogram", "summary", "untyped")
Labels = Sequence[tuple[str, str]]


@dataclass
class Family:
    name: str
    kind: str
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float, labels: Labels = (), suffix: str = "") -> None:
        self.samples.append((suffix, labels, value))

    def histogram(
        self, labels: Labels, bounds: Sequence[float], counts: Sequence[int], total: float
    ) -> None:
        """The `_bucket` (cumulative, `le`), `_sum` and `_count` samples of one histogram."""
        running = 0
        for bound, n in zip((*bounds, math.inf), counts, strict=True):
            running += n
            self.add(running, (*labels, ("le", number(bound))), "_bucket")
        self.add(total, labels, "_sum")
        self.add(running, labels, "_count")


def safe_name(text: str) -> str:
    """A metric name from a dotted one (`consul.api.http` -> `consul_api_http`)."""
    cleaned = re.sub(r"[^a-zA-Z0-9_:]", "_", text)
    return cleaned if _NAME.fullmatch(cleaned) else "_" + cleaned


def number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for f in families:
        if not _NAME.fullmatch(f.name) or f.kind not in KINDS:
            raise ValueError(f"not a metric family: {f.name!r} ({f.kind})")
        lines.append(f"# HELP {f.name} {f.help.replace(chr(92), chr(92) * 2)}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for suffix, labels, value in f.samples:
            shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{f.name}{suffix}{{{shown}}} {number(value)}" if shown
                         else f"{f.name}{suffix} {number(value)}")  # fmt: skip
    return "\n".join(lines) + "\n"
