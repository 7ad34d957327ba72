"""Judges of the agent and its cluster, over what the agent's HTTP API answered.

Inputs are the API's JSON as parsed (`/v1/agent/self`, `/v1/agent/members`,
`/v1/operator/keyring`, `/v1/agent/clock`) or, where a request failed, the
error text; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gossamer.agent.preflight.result import Result, fail, ok, warn

AGENT = "agent"
CLUSTER = "cluster"
FAILED, ALIVE, LEFT = 4, 1, 3
# Clock offsets: beyond WARN a clock is drifting (run NTP); beyond FAIL the mesh
# misbehaves — a replicated write stamped more than 60 s ahead of a peer is refused,
# and leaves are back-dated only one minute, so half of that is the limit.
CLOCK_WARN_S = 1.0
GOSSAMER_DEBUG_KEYS = ("DataDir", "BindAddr", "HTTPPort", "DNSPort", "SerfPortLAN", "ServerPort")
CLOCK_FAIL_S = 30.0


def is_gossamer(self_json: Mapping[str, Any]) -> bool:
    """A gossamer agent's /v1/agent/self, with the DebugConfig keys the host checks read."""
    debug = self_json.get("DebugConfig", {})
    return "Gossamer" in self_json and all(k in debug for k in GOSSAMER_DEBUG_KEYS)


def judge_reachable(base_url: str, self_json: Mapping[str, Any] | None, error: str) -> Result:
    name = "agent reachable"
    if self_json is None:
        return fail(
            AGENT,
            name,
            error,
            "start the agent (`gossamer agent ...`) or point --http-addr / "
            "GOSSAMER_HTTP_ADDR at it; `gossamer check --pre` checks the host first",
        )
    node = self_json.get("Config", {}).get("NodeName", "?")
    if not is_gossamer(self_json):
        return fail(
            AGENT,
            name,
            f"{node} at {base_url} is not a gossamer agent (Consul?)",
            "point --http-addr / GOSSAMER_HTTP_ADDR at the gossamer agent",
        )
    if not self_json.get("Gossamer", {}).get("Ready", False):
        return fail(
            AGENT,
            name,
            f"{node} at {base_url} answers but is not ready yet",
            "wait for it to join (its log says why it is waiting)",
        )
    return ok(AGENT, name, f"{node} at {base_url}, ready")


def judge_members(members: Sequence[Mapping[str, Any]]) -> Result:
    name = "cluster members"
    alive = [m["Name"] for m in members if m.get("Status") == ALIVE]
    failed = sorted(m["Name"] for m in members if m.get("Status") == FAILED)
    if failed:
        return fail(
            CLUSTER,
            name,
            f"{len(alive)} alive, failed: {', '.join(failed)}",
            "bring those hosts back, or `gossamer force-leave NODE` for one gone for good",
        )
    return ok(CLUSTER, name, f"{len(alive)} alive, none failed")


def left_members(members: Sequence[Mapping[str, Any]]) -> list[str]:
    """Members that have left (force-left ones too): serf lists them until it reaps them."""
    return sorted(str(m.get("Name")) for m in members if m.get("Status") == LEFT)


def judge_clock(offsets: Mapping[str, float] | None, missing: Sequence[str], error: str) -> Result:
    """`offsets`: each peer's clock minus this agent's, in seconds (the agent's /v1/agent/clock);
    `missing`: alive peers that did not answer (an older agent, or a lost message)."""
    name = "clock offset against peers"
    if offsets is None:
        return fail(
            CLUSTER,
            name,
            f"cannot ask the peers: {error}",
            "upgrade the agent (it has no /v1/agent/clock) or read its log",
        )
    hint = "run NTP on every host (chrony or systemd-timesyncd) and check its sources"
    worst = max(offsets, key=lambda n: abs(offsets[n]), default=None)
    shown = (
        "no peer answered"
        if worst is None
        else f"largest {offsets[worst]:+.3f} s ({worst}), {len(offsets)} peers"
    )
    if worst is not None and abs(offsets[worst]) > CLOCK_FAIL_S:
        return fail(CLUSTER, name, f"{shown}: over {CLOCK_FAIL_S:.0f} s", hint)
    if worst is not None and abs(offsets[worst]) > CLOCK_WARN_S:
        return warn(CLUSTER, name, f"{shown}: over {CLOCK_WARN_S:.0f} s", hint)
    if missing:
        return warn(
            CLUSTER,
            name,
            f"{shown}; no answer from {', '.join(missing)}",
            "run `gossamer check` again; a peer that never answers runs an older "
            "gossamer without the gossamer-clock query",
        )
    return ok(CLUSTER, name, "no peer to compare with" if worst is None else shown)


def judge_encryption(encrypted: bool, keyring: Sequence[Mapping[str, Any]] | None) -> Result:
    name = "gossip encryption and keyring"
    if not encrypted:
        return warn(
            CLUSTER,
            name,
            "gossip is not encrypted and enrolment is open",
            "`gossamer keygen`, then start every agent with --encrypt KEY "
            "(or join_token); see README, Identity",
        )
    if keyring is None:
        return fail(
            CLUSTER,
            name,
            "encrypted, but the keyring could not be listed",
            "read the agent's log; `gossamer keyring --list`",
        )
    short = []
    for entry in keyring:
        nodes = int(entry.get("NumNodes", 0))
        for key, count in sorted((entry.get("Keys") or {}).items()):
            if count < nodes:
                short.append(f"{key[:8]}… on {count} of {nodes}")
    if short:
        return fail(
            CLUSTER,
            name,
            f"keyring differs between members: {'; '.join(short)}",
            "`gossamer keyring --install KEY` again (it reaches every member), "
            "or `--remove KEY` a key that is retired",
        )
    keys = sum(len(e.get("Keys") or {}) for e in keyring)
    return ok(CLUSTER, name, f"encrypted, {keys} key(s) on every member")


def judge_default_policy(policy: str) -> Result:
    name = "default intention policy"
    if policy == "deny":
        return ok(CLUSTER, name, "deny (only what an intention allows gets through)")
    return warn(
        CLUSTER,
        name,
        f"{policy}: any service may connect to any other unless an intention denies it",
        "--default-intention-policy deny (intentions.default_policy) once the "
        "allow intentions are written",
    )


def judge_dns(question: str, answers: Sequence[str] | None, error: str) -> Result:
    name = "DNS answering"
    if answers is None:
        return fail(
            AGENT,
            name,
            f"{question}: {error}",
            "check dns_port / --client and that nothing else holds the DNS port",
        )
    if not answers:
        return fail(
            AGENT,
            name,
            f"{question}: no address in the answer",
            "the catalog has no healthy `consul` service: read the agent's log",
        )
    return ok(AGENT, name, f"{question} -> {', '.join(answers[:3])}")
