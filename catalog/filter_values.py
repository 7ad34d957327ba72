"""A match's written value turned into what a field is compared with.

Pure. Rules it keeps:

* Values convert the way Go's strconv would (`coerce`): ``1``/``t``/``True``
  are true, a leading ``0`` is octal, ints are 64-bit, floats take no
  ``_``; a value that does not convert is a `FilterError` naming the
  selector that needed it.
* ``matches`` patterns are compiled with Python's ``re``, refusing what RE2
  refuses (backreferences, lookaround, atomic groups) and translating
  ``\\z``, so a filter means here what it means in Consul.
"""

from __future__ import annotations

from typing import Protocol, cast

from gossamer.catalog.filter_ast import FilterError, Match

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT64 = range(-(2**63), 2**63)


def coerce(match: Match, kind: str) -> str | int | float | bool:
    """The match value converted to `kind`, as Go's strconv would, or FilterError."""
    assert match.value is not None
    raw = match.value.raw
    if kind == "string":
        return raw
    try:
        if kind == "bool":
            if raw in _GO_TRUE or raw in _GO_FALSE:
                return raw in _GO_TRUE
            raise ValueError(raw)
        if raw != raw.strip() or not raw:
            raise ValueError(raw)
        if kind == "int":
            sign, digits = (raw[0], raw[1:]) if raw[0] in "+-" else ("", raw)
            if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
                number = int(sign + digits[1:], 8)  # Go: a leading 0 means octal
            else:
                number = int(raw, 0)
            if number not in _INT64:
                raise ValueError(raw)
            return number
        if "_" in raw:  # Python's float() takes "1_0", Go's ParseFloat does not
            raise ValueError(raw)
        return float(raw)
    except ValueError:
        raise FilterError(
            f'value "{raw}" is not {article(kind)} {kind}, '
            f'as selector "{match.selector_text}" needs',
            match.value.position,
        ) from None


class Pattern(Protocol):
    """A compiled RE2 pattern (google-re2)."""

    def search(self, text: str) -> object | None: ...


def compile_regex(match: Match) -> Pattern:
    """A ``matches`` value compiled with RE2, as Consul's Go regexp reads it: its syntax and
    meaning, in linear time whatever the value (Python's re backtracks: a pattern a client
    sends would stall the agent on a long meta value)."""
    import re2  # type: ignore[import-untyped]  # (google-re2 ships no type hints)

    assert match.value is not None
    pattern = match.value.raw
    options = re2.Options()
    options.log_errors = False  # (else every bad pattern is also printed on stderr)
    try:
        return cast(Pattern, re2.compile(pattern, options))
    except re2.error as exc:
        said = exc.args[0] if exc.args else exc
        reason = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
        raise FilterError(
            f'invalid regular expression "{pattern}": {reason}', match.value.position
        ) from None


def article(noun: str) -> str:
    """ "a" or "an", for error messages that name a kind ("an int")."""
    return "an" if noun[:1] in ("a", "e", "i", "o", "u") else "a"
