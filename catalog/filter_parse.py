"""Parser for Consul's ``?filter=`` language (go-bexpr syntax) into a small AST.

Pure: text in, tree out, or one `FilterError` naming the problem and the
1-based column where it was found. The semantics (what a selector means
against a record) live in `filter_eval`; the public entry point is `filter`.

Grammar, in go-bexpr's precedence (``not`` binds tighter than ``and``,
``and`` tighter than ``or``)::

    or_expr   := and_expr ("or" and_expr)*
    and_expr  := not_expr ("and" not_expr)*
    not_expr  := "not" not_expr | "(" or_expr ")" | match
    match     := selector ("==" | "!=" | "contains" | "not contains"
                           | "matches" | "not matches") value
               | selector "is" ["not"] "empty"
               | value ("in" | "not in") selector
    selector  := ident ("." ident | "." digits | "[" string "]")*
    value     := selector | number | string       (a selector-shaped value is
                                                   taken as its dotted text)

Rules this parser keeps:

* Nesting is bounded (`MAX_DEPTH`) and ``and``/``or`` chains are flat
  n-ary nodes, so no input can exhaust the Python stack, here or in the
  evaluator.
* Lenient where bexpr is needlessly strict and nothing is ambiguous: word
  operators need no blank next to a quote or parenthesis (``"a"in Tags``),
  and ``\\"`` is accepted inside a double-quoted string (bexpr cannot express
  a double quote there at all).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DEPTH = 64  # parentheses / "not" nesting; real filters use a handful

# Match operators, spelled as in the language.
EQ, NE = "==", "!="
IN, NOT_IN, CONTAINS, NOT_CONTAINS = "in", "not in", "contains", "not contains"
MATCHES, NOT_MATCHES = "matches", "not matches"
IS_EMPTY, IS_NOT_EMPTY = "is empty", "is not empty"
# Operators written "<selector> <op> <value>"; "in"/"not in" are "<value> <op> <selector>".
_SELECTOR_FIRST = (EQ, NE, CONTAINS, NOT_CONTAINS, MATCHES, NOT_MATCHES)
_OPERATOR_LIST = "==, !=, in, not in, contains, not contains, matches, not matches, is empty"
_WORDS = frozenset({"and", "or", "not", "in", "is", "contains", "matches", "empty"})


class FilterError(ValueError):
    """A filter expression that cannot be parsed, validated or evaluated.

    `message` names the problem; `position` is the 1-based column in the
    expression it refers to (None if it refers to no single place).
    ``str()`` gives the full text for an HTTP 400 body.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        self.message = message
        self.position = position
        where = f" at column {position}" if position is not None else ""
        super().__init__(f"filter: {message}{where}")


@dataclass(frozen=True)
class Value:
    """A literal as written: bexpr keeps values raw and coerces them late."""

    raw: str
    position: int


@dataclass(frozen=True)
class Match:
    selector: tuple[str, ...]
    op: str
    value: Value | None  # None for "is empty" / "is not empty"
    position: int  # column of the selector

    @property
    def selector_text(self) -> str:
        return ".".join(self.selector)


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = Match | Not | And | Or


def parse_ast(text: str) -> Node:
    """Parse `text` into an AST, or raise `FilterError`."""
    return _Parser(text).parse()


def _is_digit(ch: str) -> bool:
    return len(ch) == 1 and ch in "0123456789"


def _is_ident_start(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def _is_ident_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


def _show(text: str) -> str:
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


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

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
        return _show(word or self.text[self.pos])

    def peek_word(self, pos: int | None = None) -> str:
        start = self.pos if pos is None else pos
        end = start
        if end < len(self.text) and _is_ident_start(self.text[end]):
            end += 1
            while end < len(self.text) and _is_ident_char(self.text[end]):
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

    # -- expressions -----------------------------------------------------

    def parse(self) -> Node:
        self.skip_ws()
        if self.pos >= len(self.text):
            raise self.error("empty expression")
        node = self.parse_or()
        self.skip_ws()
        if self.pos < len(self.text):
            if self.peek() == ")":
                raise self.error('unmatched ")"')
            raise self.error(f'expected "and", "or" or the end, found {self.found()}')
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.accept_word("or"):
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Node:
        items = [self.parse_not()]
        while self.accept_word("and"):
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_not(self) -> Node:
        negations = 0
        while self.accept_word("not"):
            negations += 1
            if negations > MAX_DEPTH:
                raise self.error("expression nested too deeply")
        node = self.parse_primary()
        return Not(node) if negations % 2 else node

    def parse_primary(self) -> Node:
        self.skip_ws()
        if self.peek() != "(":
            return self.parse_match()
        open_pos = self.pos
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error("expression nested too deeply")
        self.pos += 1
        node = self.parse_or()
        self.skip_ws()
        if self.peek() != ")":
            if self.pos >= len(self.text):
                raise self.error('unmatched "("', open_pos)
            raise self.error(f'expected ")" or "and"/"or", found {self.found()}')
        self.pos += 1
        self.depth -= 1
        return node

    def parse_match(self) -> Node:
        self.skip_ws()
        start = self.pos
        selector: tuple[str, ...] | None = None
        if _is_ident_start(self.peek()):
            if self.peek_word() in _WORDS:
                raise self.error(f"expected a selector or value, found {self.found()}")
            selector = self.parse_selector()
            left = Value(".".join(selector), start + 1)
        elif self.peek() in ('"', "`", "-") or _is_digit(self.peek()):
            left = self.parse_literal()
        elif self.pos >= len(self.text):
            raise self.error("expected a selector or value, found end of input")
        else:
            raise self.error(f"expected a selector or value, found {self.found()}")
        op = self.parse_operator()
        if op is None:
            self.skip_ws()
            raise self.error(
                f"expected an operator ({_OPERATOR_LIST}) after {_show(left.raw)}, "
                f"found {self.found()}"
            )
        if op in (IN, NOT_IN):
            self.skip_ws()
            sel_pos = self.pos
            if not _is_ident_start(self.peek()):
                raise self.error(f'expected a selector after "{op}", found {self.found()}')
            return Match(self.parse_selector(), op, left, sel_pos + 1)
        if selector is None:
            raise self.error(f'expected a selector before "{op}", found {_show(left.raw)}', start)
        if op in (IS_EMPTY, IS_NOT_EMPTY):
            return Match(selector, op, None, start + 1)
        self.skip_ws()
        if self.pos >= len(self.text) or not (
            _is_ident_start(self.peek()) or self.peek() in '"`-' or _is_digit(self.peek())
        ):
            raise self.error(f'expected a value after "{op}", found {self.found()}')
        return Match(selector, op, self.parse_value(), start + 1)

    def parse_operator(self) -> str | None:
        self.skip_ws()
        two = self.text[self.pos : self.pos + 2]
        if two in (EQ, NE):
            self.pos += 2
            return two
        for words, op in (
            (("is", "empty"), IS_EMPTY),
            (("is", "not", "empty"), IS_NOT_EMPTY),
            (("in",), IN),
            (("not", "in"), NOT_IN),
            (("contains",), CONTAINS),
            (("not", "contains"), NOT_CONTAINS),
            (("matches",), MATCHES),
            (("not", "matches"), NOT_MATCHES),
        ):
            if self.accept_word(*words):
                return op
        return None

    # -- selectors and literals -----------------------------------------

    def parse_selector(self) -> tuple[str, ...]:
        parts = [self.peek_word()]
        self.pos += len(parts[0])
        while True:
            ch = self.peek()
            if ch == "." and _is_ident_start(self.text[self.pos + 1 : self.pos + 2]):
                self.pos += 1
                parts.append(self.peek_word())
                self.pos += len(parts[-1])
            elif ch == "." and _is_digit(self.text[self.pos + 1 : self.pos + 2]):
                end = self.pos + 1
                while end < len(self.text) and _is_digit(self.text[end]):
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
        if _is_ident_start(self.peek()):
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
        while end < len(text) and _is_digit(text[end]):
            end += 1
        ok = end > digits and (text[digits] != "0" or end == digits + 1)
        if ok and text[end : end + 1] == "." and _is_digit(text[end + 1 : end + 2]):
            end += 1
            while end < len(text) and _is_digit(text[end]):
                end += 1
        rest = text[end : end + 1]
        if not ok or rest not in ("", " ", "\t", "\r", "\n", ")"):
            while end < len(text) and text[end] not in " \t\r\n()":
                end += 1
            raise self.error(f"invalid number {_show(text[start:end])}", start)
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
        raise self.error(f"invalid escape {_show(shown)} in string", i)
