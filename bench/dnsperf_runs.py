"""Running dnsperf against one server, and what the bench prints about the machine and code.

A run is one dnsperf invocation; its figures come from dnsperf's summary,
and the server's CPU time from /proc (utime+stime of the server's process).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.binaries import find_binary
from tests.harness.cluster import AgentProc

TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    """A DNS server under test: where it listens and the process whose CPU we count."""

    name: str
    ip: str
    port: int
    pid: int


@dataclass
class Run:
    qps: float
    sent: int
    completed: int
    lost: int
    avg_latency: float  # seconds
    max_latency: float
    rcodes: str
    response_size: int
    cpu_us_per_query: float


# -- dnsperf ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _number(pattern: str, text: str, cast: type[float] | type[int] = float) -> Any:
    m = re.search(pattern, text)
    if not m:
        raise RuntimeError(f"dnsperf output without {pattern!r}:\n{text}")
    return cast(m.group(1))


def dnsperf(
    target: Target,
    query_file: Path,
    duration: float,
    clients: int,
    outstanding: int,
    pin: list[str],
    rate: int | None = None,
    flags: tuple[str, ...] | list[str] = (),
) -> Run:
    argv = [
        *pin,
        find_binary("dnsperf") or "dnsperf",
        "-s", target.ip, "-p", str(target.port),
        "-d", str(query_file),
        "-l", str(duration),
        "-c", str(clients),
        "-q", str(outstanding),
        "-t", "1",
        *flags,
    ]  # fmt: skip
    if rate is not None:
        argv += ["-Q", str(rate)]
    cpu_before = cpu_seconds(target.pid)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    cpu = cpu_seconds(target.pid) - cpu_before
    out = proc.stdout
    if proc.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({proc.returncode}):\n{out}\n{proc.stderr}")
    completed = _number(r"Queries completed:\s+(\d+)", out, int)
    codes = re.search(r"Response codes:\s+(.*)", out)
    return Run(
        qps=_number(r"Queries per second:\s+([\d.]+)", out),
        sent=_number(r"Queries sent:\s+(\d+)", out, int),
        completed=completed,
        lost=_number(r"Queries lost:\s+(\d+)", out, int),
        avg_latency=_number(r"Average Latency \(s\):\s+([\d.]+)", out),
        max_latency=_number(r"Average Latency \(s\):.*max ([\d.]+)\)", out),
        rcodes=codes.group(1).strip() if codes else "?",
        response_size=_number(r"Average packet size:.*response (\d+)", out, int),
        cpu_us_per_query=cpu / completed * 1e6 if completed else float("nan"),
    )


# -- the machine and the code --------------------------------------------------------------


def http(agent: AgentProc, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(agent.http + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


def _loop_keys(value: Any, path: str = "") -> list[str]:
    """`key=value` of every key mentioning the event loop in a JSON document."""
    found = []
    if isinstance(value, dict):
        for key, inner in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "loop" in str(key).lower() and not isinstance(inner, dict | list):
                found.append(f"{where}={inner}")
            found += _loop_keys(inner, where)
    elif isinstance(value, list):
        for inner in value:
            found += _loop_keys(inner, path)
    return found


def uvloop_state(agent: AgentProc) -> str:
    """Whether the agent runs on uvloop: what /v1/agent/self says, else whether it is mapped."""
    try:
        said = _loop_keys(http(agent, "GET", "/v1/agent/self"))
    except OSError:
        said = []
    if said:
        return f"uvloop: /v1/agent/self says {', '.join(said)}"
    assert agent.proc is not None
    try:
        maps = Path(f"/proc/{agent.proc.pid}/maps").read_text()
    except OSError:
        return "uvloop: unknown"
    if "uvloop" in maps:
        return "uvloop: its module is loaded in the agent process (/v1/agent/self does not say)"
    return "uvloop: not loaded in the agent process, so the default asyncio loop"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    text = (out.stdout + out.stderr).strip()
    for line in text.splitlines():
        if re.search(r"\d+\.\d+", line):
            return line.strip()
    return "?"


def code_state() -> str:
    """Which agent code ran: the folder `gossamer.agent` imports from, and its git state."""
    spec = importlib.util.find_spec("gossamer.agent")
    if spec is None or spec.origin is None:
        return "agent code: gossamer.agent not importable"
    src = Path(spec.origin).resolve().parent  # through the editable install or a symlink farm

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(src), *args], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except OSError:
            return ""

    head = git("log", "-1", "--format=%h %s")
    if not head:
        return f"agent code: {src} (not a git checkout)"
    dns_core = git("log", "-1", "--format=%h %s", "--", "dns")
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--", "dns") else ""
    return (
        f"agent code: {src}, at {head[:80]}\n"
        f"DNS core (last commit to agent/dns): {dns_core[:80]}{dirty}"
    )
