"""The lexical layer of the ``?filter=`` language: words, selectors and literals.

`Scanner` holds the text and a cursor; `filter_parse` builds the grammar on
top of it. Pure. Rules it keeps:

* Every error is a `FilterError` with the 1-based column it refers to.
* Identifiers are ASCII (``[A-Za-z][A-Za-z0-9_]*``), as in go-bexpr.
* Strings are Go's: "double-quoted" with Go's escapes (plus ``\\"``, which
  bexpr cannot express at all) or `raw` between backticks, whose carriage
  returns are dropped as Go drops them.
* A number is JSON-like (``-12``, ``3.5``, no leading zeros) and must end at a
  blank, a ``)`` or the end: ``12abc`` is an invalid number, not two tokens.
"""

from __future__ import annotations

from gossamer.catalog.filter_ast import FilterError, Value


def is_digit(ch: str) -> bool:
    return len(ch) == 1 and ch in "0123456789"


def is_ident_start(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def is_ident_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


def show(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class Scanner:
    """A cursor over a filter's text, reading one token at a time."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # -- low-level scanning ------------------------------------------------

    def error(self, message: str, pos: int | None = None) -> FilterError:
        return FilterError(message, (self.pos if pos is None else pos) + 1)

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def found(self) -> str:
        """What sits at the cursor, for error messages."""
        if self.pos >= len(self.text):
            return "end of input"
        word = self.peek_word()
        return show(word or self.text[self.pos])

    def peek_word(self, pos: int | None = None) -> str:
        start = self.pos if pos is None else pos
        end = start
        if end < len(self.text) and is_ident_start(self.text[end]):
            end += 1
            while end < len(self.text) and is_ident_char(self.text[end]):
                end += 1
        return self.text[start:end]

    def accept_word(self, *words: str) -> bool:
        """Consume `words` (blank-separated, after optional blanks) if all present."""
        save = self.pos
        for word in words:
            self.skip_ws()
            if self.peek_word() != word:
                self.pos = save
                return False
            self.pos += len(word)
        return True

    # -- selectors and literals -----------------------------------------

    def parse_selector(self) -> tuple[str, ...]:
        parts = [self.peek_word()]
        self.pos += len(parts[0])
        while True:
            ch = self.peek()
            if ch == "." and is_ident_start(self.text[self.pos + 1 : self.pos + 2]):
                self.pos += 1
                parts.append(self.peek_word())
                self.pos += len(parts[-1])
            elif ch == "." and is_digit(self.text[self.pos + 1 : self.pos + 2]):
                end = self.pos + 1
                while end < len(self.text) and is_digit(self.text[end]):
                    end += 1
                parts.append(self.text[self.pos + 1 : end])
                self.pos = end
            elif ch == ".":
                raise self.error('expected a name after "." in a selector', self.pos + 1)
            elif ch == "[":
                parts.append(self.parse_index())
            else:
                return tuple(parts)

    def parse_index(self) -> str:
        open_pos = self.pos
        self.pos += 1
        self.skip_ws()
        if self.peek() not in ('"', "`"):
            raise self.error(f'expected a quoted map key after "[", found {self.found()}')
        key = self.parse_string()
        self.skip_ws()
        if self.peek() != "]":
            raise self.error('unclosed index, expected "]"', open_pos)
        self.pos += 1
        return key

    def parse_value(self) -> Value:
        start = self.pos
        if is_ident_start(self.peek()):
            return Value(".".join(self.parse_selector()), start + 1)
        return self.parse_literal()

    def parse_literal(self) -> Value:
        start = self.pos
        if self.peek() in ('"', "`"):
            return Value(self.parse_string(), start + 1)
        return Value(self.parse_number(), start + 1)

    def parse_number(self) -> str:
        start = end = self.pos
        text = self.text
        if end < len(text) and text[end] == "-":
            end += 1
        digits = end
        while end < len(text) and is_digit(text[end]):
            end += 1
        ok = end > digits and (text[digits] != "0" or end == digits + 1)
        if ok and text[end : end + 1] == "." and is_digit(text[end + 1 : end + 2]):
            end += 1
            while end < len(text) and is_digit(text[end]):
                end += 1
        rest = text[end : end + 1]
        if not ok or rest not in ("", " ", "\t", "\r", "\n", ")"):
            while end < len(text) and text[end] not in " \t\r\n()":
                end += 1
            raise self.error(f"invalid number {show(text[start:end])}", start)
        self.pos = end
        return text[start:end]

    def parse_string(self) -> str:
        quote, start = self.peek(), self.pos
        end = self.text.find(quote, start + 1)
        if quote == "`":
            if end < 0:
                raise self.error("unterminated string", start)
            self.pos = end + 1
            return self.text[start + 1 : end].replace("\r", "")  # as Go raw strings
        out: list[str] = []
        i = start + 1
        while True:
            if i >= len(self.text):
                raise self.error("unterminated string", start)
            ch = self.text[i]
            if ch == '"':
                self.pos = i + 1
                return "".join(out)
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            char, i = self.parse_escape(i)
            out.append(char)

    def parse_escape(self, i: int) -> tuple[str, int]:
        """Decode the escape at text[i] == "\\" (Go's set); return (char, next index)."""
        code = self.text[i + 1 : i + 2]
        if code in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[code], i + 2
        if code in _HEX_ESCAPES:
            digits = self.text[i + 2 : i + 2 + _HEX_ESCAPES[code]]
            if len(digits) == _HEX_ESCAPES[code] and all(
                c in "0123456789abcdefABCDEF" for c in digits
            ):
                value = int(digits, 16)
                if code == "x" or (value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF):
                    return chr(value), i + 2 + len(digits)
        elif code in "01234567" and code:
            digits = self.text[i + 1 : i + 4]
            if len(digits) == 3 and all(c in "01234567" for c in digits) and int(digits, 8) < 256:
                return chr(int(digits, 8)), i + 4
        shown = self.text[i : i + 2]
        raise self.error(f"invalid escape {show(shown)} in string", i)
