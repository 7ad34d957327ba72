"""Parser for Consul's ``?filter=`` language (go-bexpr syntax) into a small AST.

Pure: text in, tree out (`filter_ast`), or one `FilterError` naming the
problem and the 1-based column where it was found. Tokens (words,
selectors, strings, numbers) are read by `filter_scan`; the semantics (what
a selector means against a record) live in `filter_schema` and
`filter_eval`; the public entry point is `filter`.

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

from gossamer.catalog.filter_ast import (
    CONTAINS,
    EQ,
    IN,
    IS_EMPTY,
    IS_NOT_EMPTY,
    MATCHES,
    NE,
    NOT_CONTAINS,
    NOT_IN,
    NOT_MATCHES,
    And,
    Match,
    Node,
    Not,
    Or,
    Value,
)
from gossamer.catalog.filter_scan import Scanner, is_digit, is_ident_start, show

MAX_DEPTH = 64  # parentheses / "not" nesting; real filters use a handful

_OPERATOR_LIST = "==, !=, in, not in, contains, not contains, matches, not matches, is empty"
_WORDS = frozenset({"and", "or", "not", "in", "is", "contains", "matches", "empty"})


def parse_ast(text: str) -> Node:
    """Parse `text` into an AST, or raise `FilterError`."""
    return _Parser(text).parse()


class _Parser(Scanner):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0

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
        if is_ident_start(self.peek()):
            if self.peek_word() in _WORDS:
                raise self.error(f"expected a selector or value, found {self.found()}")
            selector = self.parse_selector()
            left = Value(".".join(selector), start + 1)
        elif self.peek() in ('"', "`", "-") or is_digit(self.peek()):
            left = self.parse_literal()
        elif self.pos >= len(self.text):
            raise self.error("expected a selector or value, found end of input")
        else:
            raise self.error(f"expected a selector or value, found {self.found()}")
        op = self.parse_operator()
        if op is None:
            self.skip_ws()
            raise self.error(
                f"expected an operator ({_OPERATOR_LIST}) after {show(left.raw)}, "
                f"found {self.found()}"
            )
        if op in (IN, NOT_IN):
            self.skip_ws()
            sel_pos = self.pos
            if not is_ident_start(self.peek()):
                raise self.error(f'expected a selector after "{op}", found {self.found()}')
            return Match(self.parse_selector(), op, left, sel_pos + 1)
        if selector is None:
            raise self.error(f'expected a selector before "{op}", found {show(left.raw)}', start)
        if op in (IS_EMPTY, IS_NOT_EMPTY):
            return Match(selector, op, None, start + 1)
        self.skip_ws()
        if self.pos >= len(self.text) or not (
            is_ident_start(self.peek()) or self.peek() in '"`-' or is_digit(self.peek())
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
