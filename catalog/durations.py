"""Go durations ("300ms", "1.5h", "2h45m"): the one parser and the one formatter. Pure.

Consul writes every duration as Go does, so gossamer reads and prints them
the same way everywhere: check definitions, `?wait=`, config files, probe
outputs. Rules this module keeps:

- The grammar is Go's `time.ParseDuration`: an optional sign, then one or
  more segments of a decimal number (ASCII digits, "1", "1.5", ".5", "1.")
  and a unit: ns, us, µs (U+00B5), μs (U+03BC), ms, s, m, h. The only number
  allowed without a unit is "0" (signed or not) — so a bare "30" is an error,
  as in Go and Consul; callers that accept JSON numbers (nanoseconds) handle
  those themselves.
- Values are whole nanoseconds (Go's int64 `time.Duration`): fractions below
  a nanosecond are dropped, and a value beyond ±2^63 ns (about 292 years) is
  `DurationRangeError`, distinct from a malformed string (`DurationError`),
  so callers can say "out of range" rather than "not a duration".
- The formatter is Go's `Duration.String()`: "0s", "1.5µs", "500ms", "10s",
  "1m30s", "1h0m0s" — what Consul's API shows for a check's Interval and
  Timeout. `parse_ns(format_ns(n)) == n` for every int64 n.
- One other form exists, for people rather than Consul clients: the config
  display (`gossamer` reload diffs, config error messages) writes only the
  non-zero parts to the millisecond, "1m", "1m30s", "1s500ms" (`format_compact`;
  tests pin it). It parses back to the same value, to the millisecond.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

NS_PER_S: Final = 1_000_000_000
MAX_NS: Final = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds
MIN_NS: Final = -(2**63)

_UNIT_NS: Final[dict[str, int]] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu; Go accepts both
    "ms": 1_000_000,
    "s": NS_PER_S,
    "m": 60 * NS_PER_S,
    "h": 3_600 * NS_PER_S,
}
# A number with at least one digit, then a unit. [0-9], not \d: Go reads ASCII only.
_SEGMENT = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)")


class DurationError(ValueError):
    """The text is not a Go duration."""


class DurationRangeError(DurationError):
    """The text is a Go duration, but beyond what an int64 of nanoseconds holds."""


def parse_ns(text: str) -> int:
    """Nanoseconds in a Go duration string; DurationError if it is not one."""
    sign = -1 if text.startswith("-") else 1
    body = text[1:] if text[:1] in ("-", "+") else text
    if body == "0":
        return 0
    if not body:
        raise DurationError(f"{text!r} is not a duration like 100ms, 30s or 5m")
    pos, total = 0, 0
    while pos < len(body):
        match = _SEGMENT.match(body, pos)
        if match is None or not (match[1] or match[2]):
            raise DurationError(f"{text!r} is not a duration like 100ms, 30s or 5m")
        whole, frac, unit = match[1] or "0", match[2] or "", _UNIT_NS[match[3]]
        total += int(whole) * unit + int(frac or "0") * unit // 10 ** len(frac)
        pos = match.end()
    if total > (MAX_NS if sign > 0 else -MIN_NS):
        raise DurationRangeError(f"{text!r} is out of range (at most about 292 years)")
    return sign * total


def parse_seconds(text: str) -> float:
    """Seconds in a Go duration string; DurationError if it is not one."""
    return parse_ns(text) / NS_PER_S


def stored_seconds(text: object) -> float:
    """Seconds of a duration field of a stored (already checked) entry; 0 when it is unset."""
    return parse_seconds(text) if isinstance(text, str) and text else 0.0


def parse_timedelta(text: str) -> timedelta:
    """A Go duration string as a timedelta (to the microsecond)."""
    whole, rest = divmod(parse_ns(text), 1_000)
    return timedelta(microseconds=whole + round(rest / 1_000))


def format_ns(ns: int) -> str:
    """`ns` as Go's Duration.String() writes it: "0s", "500ms", "1.5s", "1h0m0s"."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_decimal(ns, 1_000)}µs"
    if ns < NS_PER_S:
        return f"{sign}{_decimal(ns, 1_000_000)}ms"
    hours, rest = divmod(ns, 3_600 * NS_PER_S)
    minutes, rest = divmod(rest, 60 * NS_PER_S)
    secs = f"{_decimal(rest, NS_PER_S)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    return f"{sign}{minutes}m{secs}" if minutes else f"{sign}{secs}"


def format_seconds(seconds: float) -> str:
    """Seconds (rounded to the nanosecond) as Go prints the duration."""
    return format_ns(round(seconds * NS_PER_S))


def format_compact(value: timedelta) -> str:
    """The config display form: non-zero parts to the millisecond ("1h", "1m30s", "1s500ms")."""
    millis = round(value.total_seconds() * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    seconds, millis = divmod(millis, 1000)
    parts = zip((hours, minutes, seconds, millis), ("h", "m", "s", "ms"), strict=True)
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


def _decimal(value: int, unit: int) -> str:
    """value/unit with the fraction's trailing zeros cut: 1500, 1000 -> "1.5"."""
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"
