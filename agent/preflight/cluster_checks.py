"""Judges of the agent and its cluster, over what the agent's HTTP API answered.

Inputs are the API's JSON as parsed (`/v1/agent/self`, `/v1/agent/members`,
`/v1/agent/services`, `/v1/operator/keyring`, `/v1/agent/clock`) or, where a
request failed, the error text and whether it was a 403; nothing here does
I/O. With ACLs on, a 403 is fixed by the token the check runs with, and a
list the agent cut down to what the token may read is told apart from a
short one by the counts `/v1/agent/self` gives (`Stats`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gossamer.agent.preflight.result import Result, fail, ok, token_hint, warn

AGENT = "agent"
CLUSTER = "cluster"
FAILED, ALIVE, LEFT = 4, 1, 3
NODE_READ = 'node:read on every node (node_prefix "" { policy = "read" })'
SERVICE_READ = 'service:read on every service (service_prefix "" { policy = "read" })'
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


def judge_reachable(
    base_url: str, self_json: Mapping[str, Any] | None, error: str, denied: bool = False
) -> Result:
    """`denied`: the agent answered 403, so it runs (with ACLs on) and the token is the fix."""
    name = "agent reachable"
    if self_json is None and denied:
        return fail(AGENT, name, error, token_hint("agent:read on this agent's node", error))
    if self_json is None:
        return fail(AGENT, name, error, unreachable_hint(base_url, error))
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


START_HINT = (
    "start the agent (`gossamer agent ...`) or point --http-addr / GOSSAMER_HTTP_ADDR at it; "
    "`gossamer check --pre` checks the host first"
)


def unreachable_hint(base_url: str, error: str) -> str:
    """What fixes an agent address that gave no answer, told from the client's error: nothing
    listening (start it), a listener that never answers (stuck, or not the agent), or a
    scheme the port does not speak (https:// at a plain HTTP port hangs in the handshake;
    http:// at an HTTPS port is hung up on)."""
    scheme, _, hostport = base_url.partition("://")
    other = f"{'http' if scheme == 'https' else 'https'}://{hostport}"
    lowered = error.lower()
    if scheme == "https" and "certificate" in lowered:
        return "pass the CA that signed the agent's HTTPS certificate: --ca-file (CONSUL_CACERT)"
    if scheme == "https" and ("handshake" in lowered or "wrong version" in lowered):
        return f"that port does not answer TLS: if the agent serves plain HTTP there, use {other}"
    if "timed out" in lowered:
        return (
            f"something at {hostport} takes connections but sent no HTTP answer in time: "
            "the agent or its serf child is stuck (read its log, restart it) or another "
            "program holds the port (`ss -ltnp` names it)"
        )
    if scheme == "http" and "closed connection without response" in lowered:
        return (
            f"{hostport} hung up on an HTTP request: if it is the agent's HTTPS port use "
            f"{other} (--ca-file for its CA); else it is not the HTTP port (--http-addr)"
        )
    return START_HINT


def judge_members(
    members: Sequence[Mapping[str, Any]], own: str, known: int | None = None
) -> Result:
    """`own`: this agent's node name; `known`: how many members its serf counts (`Stats`).

    ACLs cut the list down to the nodes the token may read and answer 200 (only a header
    the CLI's client does not read says so), so an empty list would pass as "0 alive, none
    failed": a list without this agent itself, or shorter than serf's count, is one the
    token cannot see whole."""
    name = "cluster members"
    if own not in {m.get("Name") for m in members}:
        return fail(
            CLUSTER,
            name,
            f"cannot see the members: the token lacks node:read ({own} is not among "
            f"the {len(members)} listed)",
            token_hint(NODE_READ),
        )
    if known is not None and len(members) < known:
        return fail(
            CLUSTER,
            name,
            f"cannot see the members: the token lacks node:read ({len(members)} of {known} listed)",
            token_hint(NODE_READ),
        )
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


def judge_encryption(
    encrypted: bool, keyring: Sequence[Mapping[str, Any]] | None, denied: bool = False
) -> Result:
    """`denied`: listing the keyring was refused (403): not a fault of the cluster."""
    name = "gossip encryption and keyring"
    if not encrypted:
        return warn(
            CLUSTER,
            name,
            "gossip is not encrypted and enrolment is open",
            "`gossamer keygen`, then start every agent with --encrypt KEY "
            "(or join_token); see README, Identity",
        )
    if keyring is None and denied:
        return warn(
            CLUSTER,
            name,
            "encrypted; whether every member holds every key is not checked",
            token_hint("keyring:read"),
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


def judge_services(
    services: Mapping[str, Any] | None, registered: int | None, error: str, denied: bool
) -> Result:
    """`services`: /v1/agent/services; `registered`: how many services the agent holds
    (`Stats.agent.services` of /v1/agent/self).

    The sidecars and leaves checked are the ones this list shows, and ACLs cut it down to
    the services the token may read without a word: a shorter list than the agent holds
    leaves sidecars unchecked, which must be said rather than pass as none."""
    name = "local services listed"
    if services is None:
        hint = token_hint(SERVICE_READ) if denied else "read the agent's log"
        return fail(AGENT, name, f"cannot list them: {error}", hint)
    sidecars = sum(1 for s in services.values() if s.get("Kind") == "connect-proxy")
    if registered is not None and len(services) < registered:
        return fail(
            AGENT,
            name,
            f"{len(services)} of {registered} listed: the token may not read the others, "
            "so their sidecars and leaves are not checked",
            token_hint(SERVICE_READ),
        )
    return ok(AGENT, name, f"{len(services)} registered, {sidecars} sidecar(s)")


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
