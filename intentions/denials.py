"""Denied connections counted per (source, destination, deciding rule). Pure.

One shape serves three places: a proxy records each denial in a
`DenialTable` and hands its rows to the agent about once a second (then
starts a fresh count); the agent merges every proxy's rows into its own
table and serves them; the terminal UI and the CLI read them back.

Rules the table keeps:
- A row is keyed by source, destination and the rule that decided: the
  intention's ID, or the rule's text when no intention did (the default
  policy, or intentions not known yet). Merging two rows of one key adds
  the counts, keeps the earliest first-seen and the latest last-seen, and
  takes rule text, precedence and reason from the more recent one.
- Bounded: a row not seen for `WINDOW_MS` is dropped (`expire`), and beyond
  `MAX_ROWS` distinct rows the one seen longest ago goes first, so a
  scanner trying many identities cannot grow the agent's memory.
- The wire form is JSON objects `{Source, Destination, IntentionID,
  Precedence, Rule, Reason, Count, FirstSeen, LastSeen}` (times RFC 3339,
  UTC, milliseconds). `denials_from_json` lists every problem of a report at
  once, each naming the row and field, in one `DenialError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeGuard

from gossamer.intentions.model import Decision

WINDOW_MS = 10 * 60 * 1000  # "the last minutes": ten of them, then a quiet row is forgotten
MAX_ROWS = 4096  # distinct rows the agent keeps (~1 MiB); one proxy's batch has the same cap
MAX_REPORT = 1000  # rows one report may carry; a proxy sends at most this many per second
MAX_PROBLEMS = 20  # a report this broken is not worth listing further
DEFAULT_POLICY = "default policy"
NOT_KNOWN = "intentions not known yet"
_FIELDS = ("Source", "Destination", "IntentionID", "Rule", "Reason")


class DenialError(ValueError):
    """A report that cannot be read; `problems` name the row and field of each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Denial:
    source: str
    destination: str
    intention_id: str  # "" when no intention decided
    precedence: int  # 0 when no intention decided
    rule: str  # "web => db (deny)", "default policy (deny)", "intentions not known yet"
    reason: str  # why the rule denied, as the intentions core says it
    count: int
    first_ms: int
    last_ms: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.source, self.destination, self.intention_id or self.rule)

    @property
    def by_default(self) -> bool:
        """No intention decided: allowing it means writing a new one."""
        return not self.intention_id


def denial_of(decision: Decision, source: str, destination: str, now_ms: int) -> Denial:
    """One denied connection, named by the rule that decided it."""
    rule = decision.intention
    if rule is None:
        return Denial(source, destination, "", 0, f"{DEFAULT_POLICY} (deny)", decision.reason,
                      1, now_ms, now_ms)  # fmt: skip
    action = rule.action or "L7 permissions"
    shown = f"{rule.source} => {rule.destination} ({action})"
    return Denial(source, destination, rule.id, rule.precedence, shown, decision.reason,
                  1, now_ms, now_ms)  # fmt: skip


def not_known(source: str, destination: str, now_ms: int) -> Denial:
    """A connection refused because the proxy has no intentions answer yet."""
    return Denial(source, destination, "", 0, NOT_KNOWN, "the proxy has not read the "
                  "intentions from its agent yet", 1, now_ms, now_ms)  # fmt: skip


def merged(old: Denial, new: Denial) -> Denial:
    """Two counts of one key as one (see the module's rules)."""
    latest = new if new.last_ms >= old.last_ms else old
    return replace(
        latest,
        count=old.count + new.count,
        first_ms=min(old.first_ms, new.first_ms),
        last_ms=max(old.last_ms, new.last_ms),
    )


class DenialTable:
    """Rows by key, bounded in age and number."""

    def __init__(self, window_ms: int = WINDOW_MS, max_rows: int = MAX_ROWS) -> None:
        self.window_ms = window_ms
        self.max_rows = max_rows
        self._rows: dict[tuple[str, str, str], Denial] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, denial: Denial) -> None:
        """One row (the proxy's data path): a full table drops its stalest row, one pass."""
        key = denial.key
        old = self._rows.get(key)
        self._rows[key] = denial if old is None else merged(old, denial)
        if len(self._rows) > self.max_rows:
            stalest = min(self._rows.values(), key=lambda d: (d.last_ms, d.key))
            del self._rows[stalest.key]

    def add_all(self, denials: Iterable[Denial]) -> None:
        """Merge every row in, then trim once (a full table costs one sort, not one per row)."""
        for denial in denials:
            key = denial.key
            old = self._rows.get(key)
            self._rows[key] = denial if old is None else merged(old, denial)
        if len(self._rows) > self.max_rows:
            newest = sorted(self._rows.values(), key=lambda d: (-d.last_ms, d.key))
            for stale in newest[self.max_rows :]:
                del self._rows[stale.key]

    def expire(self, now_ms: int) -> bool:
        """Forget rows last seen more than the window ago; True when any went."""
        cutoff = now_ms - self.window_ms
        stale = [key for key, d in self._rows.items() if d.last_ms < cutoff]
        for key in stale:
            del self._rows[key]
        return bool(stale)

    def rows(self) -> list[Denial]:
        """Most recently seen first; ties by source, destination, rule."""
        return sorted(self._rows.values(), key=lambda d: (-d.last_ms, d.key))

    def take(self) -> list[Denial]:
        """Every row, oldest seen first, and an empty table (a proxy's batch is sent)."""
        rows = sorted(self._rows.values(), key=lambda d: (d.last_ms, d.key))
        self._rows.clear()
        return rows


def rfc3339_ms(wall_ms: int) -> str:
    moment = datetime.fromtimestamp(wall_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{wall_ms % 1000:03d}Z"


def denial_to_json(d: Denial) -> dict[str, Any]:
    return {
        "Source": d.source,
        "Destination": d.destination,
        "IntentionID": d.intention_id,
        "Precedence": d.precedence,
        "Rule": d.rule,
        "Reason": d.reason,
        "Count": d.count,
        "FirstSeen": rfc3339_ms(d.first_ms),
        "LastSeen": rfc3339_ms(d.last_ms),
    }


def denials_from_json(body: object) -> list[Denial]:
    """A report (a JSON list of rows); DenialError listing every problem found."""
    if not isinstance(body, list):
        raise DenialError(["the body must be a JSON list of denials"])
    if len(body) > MAX_REPORT:
        raise DenialError([f"a report carries at most {MAX_REPORT} rows, not {len(body)}"])
    rows, problems = [], []
    for at, raw in enumerate(body):
        found: list[str] = []
        row = _row(raw, found)
        problems += [f"[{at}].{p}" for p in found]
        if row is not None and not found:
            rows.append(row)
    if problems:
        raise DenialError(problems[:MAX_PROBLEMS])
    return rows


def _row(raw: object, problems: list[str]) -> Denial | None:
    if not isinstance(raw, dict):
        problems.append("Row: must be an object")
        return None
    text: dict[str, str] = {}
    for name in _FIELDS:
        value = raw.get(name, "")
        if not isinstance(value, str):
            problems.append(f"{name}: must be a string")
        text[name] = value if isinstance(value, str) else ""
    for name in ("Source", "Destination", "Rule"):
        if isinstance(raw.get(name, ""), str) and not text[name]:
            problems.append(f"{name}: must not be empty")
    precedence, count = raw.get("Precedence", 0), raw.get("Count", 0)
    if not _is_int(precedence) or precedence < 0:
        problems.append("Precedence: must be a non-negative integer")
    if not _is_int(count) or count < 1:
        problems.append("Count: must be a positive integer")
    first, last = _time(raw, "FirstSeen", problems), _time(raw, "LastSeen", problems)
    if first is not None and last is not None and first > last:
        problems.append("FirstSeen: must not be after LastSeen")
    if problems or first is None or last is None:
        return None
    return Denial(text["Source"], text["Destination"], text["IntentionID"], precedence,
                  text["Rule"], text["Reason"], count, first, last)  # fmt: skip


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _time(raw: dict[str, Any], name: str, problems: list[str]) -> int | None:
    value = raw.get(name)
    try:
        if not isinstance(value, str):
            raise ValueError
        moment = datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"{name}: must be an RFC 3339 time, like 2026-12-03T21:05:09.123Z")
        return None
    if moment.tzinfo is None:
        problems.append(f"{name}: must name its time zone (Z for UTC)")
        return None
    return round(moment.timestamp() * 1000)
