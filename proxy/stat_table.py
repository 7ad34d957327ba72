"""The table `gossamer stat` and `top` print: its headers, and a row's cells as text. Pure.

Apart from the rows (stat_rows.py) because it is presentation only: the
figures are computed once and `--json` prints them without these cells.
"""

from __future__ import annotations

from gossamer.proxy.stat_rows import EdgeRow


def cells(row: EdgeRow) -> list[str]:
    """The table cells: success rate, rate, latencies in ms, open, denied."""
    return [
        row.direction, row.source, row.destination, row.protocol.upper(),
        *figures(row.success_rate, row.per_second, (row.p50, row.p95, row.p99)),
        str(row.open), str(row.denied),
    ]  # fmt: skip


def figures(rate: float | None, per_second: float,
            latencies: tuple[float | None, ...]) -> list[str]:  # fmt: skip
    """Success rate, requests a second and latencies in ms, as cells (stat_routes.py too)."""
    return ["-" if rate is None else f"{rate * 100:.2f}%", f"{per_second:.1f}",
            *(_ms(v) for v in latencies)]  # fmt: skip


def stacked(row: EdgeRow) -> list[str]:
    """One edge as a block of short lines, each figure beside its name: the layout for a
    terminal too narrow for the table, where folding every cell left "inb/oun/d" and
    "75./84%" stacked in columns three characters wide. The longest line that does not
    hold a service name is 37 characters."""
    c = dict(zip(HEADERS, cells(row), strict=True))
    return [
        f"{c['DIRECTION']} {c['SOURCE']} -> {c['DESTINATION']} ({c['PROTO']})",
        f"  success {c['SUCCESS']}  rps {c['RPS']}",
        f"  p50 {c['P50']}  p95 {c['P95']}  p99 {c['P99']}",
        f"  open {c['OPEN']}  denied {c['DENIED']}",
    ]


HEADERS = ["DIRECTION", "SOURCE", "DESTINATION", "PROTO", "SUCCESS", "RPS", "P50", "P95", "P99",
           "OPEN", "DENIED"]  # fmt: skip


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000.0
    return f"{ms:.1f}ms" if ms < 100 else f"{ms:.0f}ms"
