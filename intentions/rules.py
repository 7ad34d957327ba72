"""An intention compiled into a rule: its matchers and its possible decisions made once.

`RuleCompiler` turns each `Intention` into a `Rule`: L7 permissions become
matchers with their regexes compiled (each pattern once per set), and every
decision the rule can give is built in advance, so deciding formats no
strings. `rule_outcome` evaluates one rule. Pure. Rules this module keeps:

- An L4 intention's decision is its action. An L7 one without a request is
  a deny (as Consul's L4 check of an L7 intention); with a request its
  permissions are tried in order and the first match's action decides; no
  match is the default policy, not a fall-through to other intentions.
- An outcome carries a strength for ties at equal precedence: 0 an explicit
  deny, 1 an explicit allow, 2 an L7 miss; the lowest wins.
- A regex that does not compile is a `Problem`, reported with every other
  one; a rule that cannot be evaluated is never skipped (skipping a deny
  would allow).
- Header names match in any case; a missing header matches only "not
  present" (Envoy's rule); paths are matched without their query string;
  methods as written (a method is case-sensitive: `get` is not `GET`).
- Regexes are RE2's (validate.compile_regex), full matches, as Envoy's.
- `IgnoreCase` folds ASCII letters only, on both sides, as Envoy's
  StringMatcher (absl's ASCII case-insensitive compares): `É` is not `é`,
  and no Unicode folding grows or merges a character (`ß`, `K` the Kelvin
  sign). The rule's side is folded once, at compile time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gossamer.intentions.model import (
    ALLOW,
    DENY,
    Decision,
    HeaderMatch,
    HTTPMatch,
    HttpRequest,
    Intention,
)
from gossamer.intentions.validate import Pattern, Problem, compile_regex

# A-Z -> a-z and nothing else: Envoy's (absl's) ASCII case folding, not str.lower().
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """`text` with ASCII capitals lower-cased, every other character as it was."""
    return text.translate(_ASCII_LOWER)


# (strength, decision): 0 an explicit deny, 1 an explicit allow, 2 an L7 miss.
# At equal precedence the lowest strength wins, so deny beats allow.
Outcome = tuple[int, Decision]


@dataclass(frozen=True)
class HeaderRule:
    name: str  # lower case
    match: HeaderMatch
    pattern: Pattern | None
    needle: str  # the exact/prefix/suffix/contains value, ASCII-folded under IgnoreCase

    @classmethod
    def of(cls, match: HeaderMatch, pattern: Pattern | None) -> HeaderRule:
        m = match
        needle = m.exact or m.prefix or m.suffix or m.contains
        return cls(m.name.lower(), m, pattern, ascii_lower(needle) if m.ignore_case else needle)

    def matches(self, request: HttpRequest) -> bool:
        value = request.header(self.name)
        m = self.match
        if value is None:
            # Envoy: a missing header matches nothing but "not present".
            return m.present and m.invert
        if m.present:
            return not m.invert
        if not (m.exact or m.prefix or m.suffix or m.contains):
            hit = self.pattern is not None and self.pattern.fullmatch(value) is not None
            return hit != m.invert
        if m.ignore_case:
            value = ascii_lower(value)
        if m.exact:
            hit = value == self.needle
        elif m.prefix:
            hit = value.startswith(self.needle)
        elif m.suffix:
            hit = value.endswith(self.needle)
        else:
            hit = self.needle in value
        return hit != m.invert


@dataclass(frozen=True)
class PermissionRule:
    """A permission ready to evaluate: every condition given must hold."""

    index: int
    action: str
    exact: str
    prefix: str
    regex: Pattern | None
    methods: frozenset[str]
    headers: tuple[HeaderRule, ...]
    outcome: Outcome  # what a match decides, made once: deciding formats no strings

    def matches(self, request: HttpRequest) -> bool:
        path = request.bare_path
        if self.exact and path != self.exact:
            return False
        if self.prefix and not path.startswith(self.prefix):
            return False
        if self.regex is not None and self.regex.fullmatch(path) is None:
            return False
        if self.methods and request.method not in self.methods:  # case-sensitive (RFC 9110)
            return False
        return all(h.matches(request) for h in self.headers)


@dataclass(frozen=True)
class Rule:
    """An intention ready to evaluate, its possible decisions made in advance.

    `outcome` is an L4 intention's decision, or an L7 one's without a
    request; `miss` is an L7 miss, indexed by the default policy.
    """

    intention: Intention
    permissions: tuple[PermissionRule, ...]
    outcome: Outcome
    miss: tuple[Outcome, Outcome]
    # the intention's (source, destination), made once: a set keys its rules by it, and
    # one key kept from set to set is no new object for each row of each answer
    pair: tuple[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pair", self.intention.pair)


NO_MATCH = tuple(Decision(d, f"no intention matched; default policy is {ALLOW if d else DENY}")
                 for d in (False, True))  # fmt: skip


class RuleCompiler:
    """Compiles intentions into rules, sharing one regex cache; collects every problem."""

    def __init__(self) -> None:
        self._regexes: dict[str, Pattern] = {}
        self.problems: list[Problem] = []

    def compile(self, ixn: Intention) -> Rule:
        """The rule of `ixn`; a regex that does not compile adds to `problems`."""
        perms: list[PermissionRule] = []
        for i, perm in enumerate(ixn.permissions):
            http = perm.http or HTTPMatch()  # no conditions: matches any request
            where = f"{ixn.source} => {ixn.destination}: Permissions[{i}].HTTP"
            headers = tuple(
                HeaderRule.of(h, None if h.present or h.exact or h.prefix or h.suffix or
                              h.contains else self._regex(h.regex, f"{where}.Header[{k}].Regex"))
                for k, h in enumerate(http.headers)
            )  # fmt: skip
            regex = self._regex(http.path_regex, f"{where}.PathRegex")
            methods = frozenset(m.upper() for m in http.methods)
            decided = _decided(perm.action == ALLOW, f"Permissions[{i}] ({perm.action})", ixn,
                               route_name(http))  # fmt: skip
            perms.append(PermissionRule(i, perm.action, http.path_exact, http.path_prefix, regex,
                                        methods, headers, decided))  # fmt: skip
        name = f"{ixn.source} => {ixn.destination}"
        if not perms:
            return Rule(ixn, (), _decided(ixn.action == ALLOW, f"({ixn.action})", ixn), _NO_MISS)
        n = len(perms)
        miss = tuple(
            (2, Decision(d, f"matched intention {name} but none of its {n} permission"
                            f"{'s' if n > 1 else ''} matched; {_policy(d)}", ixn))
            for d in (False, True)
        )  # fmt: skip
        l4_check = (
            f"matched intention {name}, which has L7 permissions: "
            "denied without an HTTP request to check them (as Consul's L4 check)"
        )
        return Rule(ixn, tuple(perms), (0, Decision(False, l4_check, ixn)), (miss[0], miss[1]))

    def _regex(self, pattern: str, where: str) -> Pattern | None:
        if not pattern:
            return None
        if pattern not in self._regexes:
            try:
                self._regexes[pattern] = compile_regex(pattern)
            except ValueError as exc:
                self.problems.append(Problem(where, str(exc)))
                return None
        return self._regexes[pattern]


def _policy(default_allow: bool) -> str:
    return f"default policy is {ALLOW if default_allow else DENY}"


def _decided(allowed: bool, what: str, ixn: Intention, route: str = "") -> Outcome:
    name = f"{ixn.source} => {ixn.destination}"
    sep = " " if what.startswith("(") else ", "
    return (1 if allowed else 0), Decision(allowed, f"matched intention {name}{sep}{what}", ixn,
                                           route)  # fmt: skip


def route_name(http: HTTPMatch) -> str:
    """A permission's name as a metrics `route` label: its methods, then its path matcher
    (`GET,HEAD /api*` for a prefix, `/health` exact, `~^/u/[0-9]+$` a regex, `*` any path).
    Headers are left out: permissions that differ only by headers share a route."""
    path = (http.path_exact or (http.path_prefix + "*" if http.path_prefix else "")
            or (f"~{http.path_regex}" if http.path_regex else "*"))  # fmt: skip
    methods = ",".join(sorted({m.upper() for m in http.methods}))
    return f"{methods} {path}" if methods else path


_NO_MISS: tuple[Outcome, Outcome] = ((2, NO_MATCH[0]), (2, NO_MATCH[1]))  # L4: never used


def rule_outcome(rule: Rule, request: HttpRequest | None, default_allow: bool) -> Outcome:
    """What `rule` decides for `request` (None: an L4 check) under the default policy."""
    if not rule.permissions or request is None:
        return rule.outcome
    for perm in rule.permissions:
        if perm.matches(request):
            return perm.outcome
    return rule.miss[default_allow]
