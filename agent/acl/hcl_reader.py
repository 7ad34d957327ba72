"""A reader for the subset of HCL that Consul's ACL rules use.

Why hand-written: the rules are blocks with string labels holding string
attributes (`service "web" { policy = "write" }`) and top-level string
attributes (`operator = "read"`). python-hcl2 reads HCL2 only (Consul's
rules are HCL1), drops positions, and stops at the first error; a 400 here
must list every problem with its line and column.

Rules this reader keeps:
1. Comments (`#`, `//`, `/* */`) and commas between items are ignored.
2. An item is `name = "string"`, `name = { body }`, or
   `name label... { body }` with string or bare-word labels.
3. A syntax error is recorded and reading resumes at the next line, so one
   typo does not hide the problems after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gossamer.agent.acl.problems import RuleProblem

_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r]+)|(?P<nl>\n)|(?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
    |(?P<string>"(?:[^"\\\n]|\\.)*")|(?P<ident>[A-Za-z_][A-Za-z0-9_.-]*)
    |(?P<number>-?[0-9][0-9.eE+-]*)|(?P<punct>[={},\[\]])""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


@dataclass(frozen=True)
class Token:
    kind: str  # ident, string, number, punct, end
    text: str
    line: int
    column: int

    @property
    def position(self) -> str:
        return f"line {self.line}, column {self.column}"


@dataclass
class Item:
    """One attribute (`value` set) or block (`body` set) with its position."""

    name: str
    position: str
    labels: list[str] = field(default_factory=list)
    value: str | None = None
    body: list[Item] | None = None
    value_position: str = ""


class _Syntax(Exception):
    def __init__(self, token: Token, message: str) -> None:
        self.token = token
        self.message = message


def unquote(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text[1:-1])


def tokenize(text: str, problems: list[RuleProblem]) -> list[Token]:
    """Split `text` into tokens; characters that start no token are problems."""
    tokens: list[Token] = []
    line, line_start, at = 1, 0, 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        column = at - line_start + 1
        if match is None:
            what = "unterminated string" if text[at] == '"' else f"unexpected {text[at]!r}"
            problems.append(RuleProblem(f"line {line}, column {column}", what))
            at += 1
            continue
        kind = match.lastgroup or ""
        if kind in ("ident", "string", "number", "punct"):
            tokens.append(Token(kind, match.group(), line, column))
        newlines = match.group().count("\n")
        if newlines:
            line += newlines
            line_start = match.start() + match.group().rfind("\n") + 1
        at = match.end()
    tokens.append(Token("end", "", line, at - line_start + 1))
    return tokens


class TokenCursor:
    """A position in a token list, and the problems found reading it (agent/cli/config_hcl.py
    reads entry values with one too)."""

    def __init__(self, tokens: list[Token], problems: list[RuleProblem]) -> None:
        self.tokens = tokens
        self.at = 0
        self.problems = problems

    def peek(self) -> Token:
        return self.tokens[self.at]

    def take(self) -> Token:
        token = self.tokens[self.at]
        if token.kind != "end":
            self.at += 1
        return token


class _Reader(TokenCursor):
    def body(self, closing: bool) -> list[Item]:
        items: list[Item] = []
        while True:
            token = self.peek()
            if token.kind == "end":
                if closing:
                    self.problems.append(RuleProblem(token.position, "missing '}'"))
                return items
            if token.text == "}" and token.kind == "punct":
                if closing:
                    self.take()
                    return items
                self.problems.append(RuleProblem(token.position, "unexpected '}'"))
                self.take()
                continue
            if token.text == ",":
                self.take()
                continue
            try:
                items.append(self.item())
            except _Syntax as exc:
                self.problems.append(RuleProblem(exc.token.position, exc.message))
                self.skip_line(exc.token)

    def skip_line(self, bad: Token) -> None:
        """Resume after a syntax error at the first token of a later line."""
        while self.peek().kind != "end" and self.peek().line <= bad.line:
            if self.peek().text == "}" and self.peek().kind == "punct":
                return  # the enclosing block's end: keep braces balanced
            self.take()

    def item(self) -> Item:
        name = self.take()
        if name.kind != "ident":
            raise _Syntax(name, f"expected a rule name, found {_shown(name)}")
        labels: list[str] = []
        while self.peek().kind in ("string", "ident"):
            label = self.take()
            labels.append(unquote(label.text) if label.kind == "string" else label.text)
        if self.peek().text == "=":
            self.take()
        following = self.peek()  # left unread when wrong, so a '}' still closes
        if following.text == "{" and following.kind == "punct":
            self.take()
            return Item(name.text, name.position, labels, body=self.body(closing=True))
        if labels:
            raise _Syntax(following, f"expected '{{' after {name.text}, found {_shown(following)}")
        if following.kind == "string":
            self.take()
            return Item(
                name.text, name.position, value=unquote(following.text),
                value_position=following.position,
            )  # fmt: skip
        raise _Syntax(following, f"expected a quoted string, found {_shown(following)}")


def _shown(token: Token) -> str:
    return "end of input" if token.kind == "end" else repr(token.text)


def read_hcl(text: str) -> tuple[list[Item], list[RuleProblem]]:
    """Items of `text` and the syntax problems found while reading it."""
    problems: list[RuleProblem] = []
    tokens = tokenize(text, problems)
    items = _Reader(tokens, problems).body(closing=False)
    return items, problems
