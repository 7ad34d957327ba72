"""One check's outcome, and what a list of outcomes means for the exit code.

Rules this module keeps:
- A result is a value: a failing check is a FAIL result, never an exception.
- WARN is shown (‼) but does not fail the run, as linkerd's warnings;
  SKIP says why a check could not run (it depends on one that failed) and
  does not fail the run either: the failure it depends on already did.
- Exit codes: 0 nothing failed, 1 something failed (2, usage and config
  errors, is decided before any check runs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Result:
    """`group` (e.g. "host"), the line's text, and for anything but OK a hint to fix it."""

    group: str
    name: str
    status: Status
    detail: str = ""
    hint: str = ""

    def json(self) -> dict[str, str]:
        return {
            "Group": self.group,
            "Name": self.name,
            "Status": self.status.value,
            "Detail": self.detail,
            "Hint": self.hint,
        }


def ok(group: str, name: str, detail: str = "") -> Result:
    return Result(group, name, Status.OK, detail)


def fail(group: str, name: str, detail: str, hint: str) -> Result:
    return Result(group, name, Status.FAIL, detail, hint)


def warn(group: str, name: str, detail: str, hint: str) -> Result:
    return Result(group, name, Status.WARN, detail, hint)


def skip(group: str, name: str, why: str) -> Result:
    return Result(group, name, Status.SKIP, why)


def exit_code(results: Iterable[Result]) -> int:
    return 1 if any(r.status is Status.FAIL for r in results) else 0


def token_hint(needs: str, error: str = "") -> str:
    """The hint for a request the agent answered 403: the fix is the token the check runs
    with (its ACLs are on), not starting or repairing the agent. `error` says which fix: a
    secret the agent does not know (`ACL not found`) is not one that lacks `needs`."""
    if error.startswith("ACL not found"):
        return (
            "the agent knows no such token (deleted, expired or mistyped): check the one given "
            "with --token / --token-file, or GOSSAMER_HTTP_TOKEN (CONSUL_HTTP_TOKEN)"
        )
    return (
        f"the agent has ACLs on and the token lacks {needs}: pass one that holds it with "
        "--token / --token-file, or GOSSAMER_HTTP_TOKEN (CONSUL_HTTP_TOKEN)"
    )


def days(seconds: float) -> str:
    """A time left in the unit people read on a certificate: days, or hours when under two."""
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"


# A hint's command (in backticks) that asks an agent: `gossamer check` and those it names.
_ASKS_AGENT = re.compile(
    r"`((?:sudo )?gossamer (?:check|force-leave|keyring|ca|catalog|intention|members)\b[^`]*)`"
)


def pointed_at(results: Iterable[Result], agent_addr: str) -> list[Result]:
    """`results` with each hint's agent command as the user must type it to reach the agent
    the checks asked, when that is not the CLI's default: `--http-addr` added (a copied
    command would otherwise ask another agent, or none). Commands that ask no agent
    (`gossamer keygen`, `gossamer agent`, `check --pre`) are left as they are."""

    def pointed(match: re.Match[str]) -> str:
        command = match.group(1)
        if "--http-addr" in command or "--pre" in command:
            return match.group(0)
        return f"`{command} --http-addr {agent_addr}`"

    if not agent_addr:
        return list(results)
    return [replace(r, hint=_ASKS_AGENT.sub(pointed, r.hint)) if r.hint else r for r in results]
