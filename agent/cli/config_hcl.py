"""HCL files as `consul config write` and `consul services register` read them. Pure.

They become JSON values. Consul's entry files are HCL1: `Kind = "service-splitter"`, numbers,
`true`/`false`, lists (`Splits = [{ Weight = 90, Service = "api" }]`) and
objects written as blocks (`Meta { team = "a" }`) or as `= { ... }`. The
tokens are agent/acl/hcl_reader.py's (one tokenizer for both); this reader
adds the values ACL rules never needed. Every syntax problem is reported
with its line and column, not only the first.
"""

from __future__ import annotations

from typing import Any

from gossamer.agent.acl.hcl_reader import Token, TokenCursor, tokenize, unquote
from gossamer.agent.acl.problems import RuleProblem


class HclError(ValueError):
    def __init__(self, problems: list[RuleProblem]) -> None:
        super().__init__("; ".join(f"{p.position}: {p.message}" for p in problems))


class _Syntax(Exception):
    def __init__(self, token: Token, message: str) -> None:
        self.token, self.message = token, message


def read_entry_hcl(text: str) -> dict[str, Any]:
    """The object an HCL entry file describes; HclError listing every problem."""
    problems: list[RuleProblem] = []
    reader = _Values(tokenize(text, problems), problems)
    found = reader.body(closing=False)
    if problems:
        raise HclError(problems)
    return found


class _Values(TokenCursor):
    def _is(self, text: str) -> bool:
        return self.peek().kind == "punct" and self.peek().text == text

    def body(self, closing: bool) -> dict[str, Any]:
        found: dict[str, Any] = {}
        repeated: set[str] = set()
        while True:
            if self.peek().kind == "end":
                if closing:
                    self.problems.append(RuleProblem(self.peek().position, "missing '}'"))
                return found
            if self._is("}") and closing:
                self.take()
                return found
            if self._is(","):
                self.take()
                continue
            try:
                key, value = self.pair()
                _add(found, repeated, key, value)
            except _Syntax as exc:
                self.problems.append(RuleProblem(exc.token.position, exc.message))
                self._skip_line(exc.token)

    def _skip_line(self, bad: Token) -> None:
        """Resume after a syntax error at a later line, or at a '}' that closes a block."""
        while self.peek().kind != "end" and self.peek().line <= bad.line and not self._is("}"):
            self.take()

    def pair(self) -> tuple[str, Any]:
        key = self.take()
        if key.kind not in ("ident", "string"):
            raise _Syntax(key, f"expected a key, found {_shown(key)}")
        name = unquote(key.text) if key.kind == "string" else key.text
        if self._is("{"):  # a block: `Meta { ... }`
            self.take()
            return name, self.body(closing=True)
        if not self._is("="):
            raise _Syntax(self.peek(), f"expected '=' after {name}, found {_shown(self.peek())}")
        self.take()
        return name, self.value()

    def value(self) -> Any:
        token = self.peek()
        if token.kind == "string":
            return unquote(self.take().text)
        if token.kind == "number":
            self.take()
            try:
                return float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
            except ValueError:
                raise _Syntax(token, f"not a number: {token.text!r}") from None
        if token.kind == "ident" and token.text in ("true", "false"):
            return self.take().text == "true"
        if self._is("{"):
            self.take()
            return self.body(closing=True)
        if self._is("["):
            self.take()
            return self.items()
        raise _Syntax(token, f"expected a value, found {_shown(token)}")

    def items(self) -> list[Any]:
        found: list[Any] = []
        while not self._is("]"):
            if self.peek().kind == "end":
                raise _Syntax(self.peek(), "missing ']'")
            found.append(self.value())
            if self._is(","):
                self.take()
            elif not self._is("]"):
                raise _Syntax(self.peek(), f"expected ',' or ']', found {_shown(self.peek())}")
        self.take()
        return found


def _add(found: dict[str, Any], repeated: set[str], key: str, value: Any) -> None:
    """A key given twice (two `service { ... }` blocks) holds both values in a list, as
    HCL1 reads repeated blocks, rather than the last one silently alone."""
    if key not in found:
        found[key] = value
    elif key in repeated:
        found[key].append(value)
    else:
        found[key] = [found[key], value]
        repeated.add(key)


def _shown(token: Token) -> str:
    return "end of input" if token.kind == "end" else repr(token.text)
