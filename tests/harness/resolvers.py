"""Real DNS software in front of (or next to) gossamer: dnsmasq, unbound, HAProxy.

Each runs as a foreground child of the test process on a loopback address
and a free port, with its config and log in a directory of the test's own
(tmp_path). `start()` returns once the server answers (polled, never a
blind sleep); `stop()` sends SIGTERM, then SIGKILL, and reaps it. The
children get PR_SET_PDEATHSIG, so a test process that dies does not leave
them running.

They are used the way people deploy them in front of Consul:
- dnsmasq forwarding the `consul` domain (`server=/consul/<ip>#<port>`);
- unbound with a stub zone for `consul.` and QNAME minimisation on;
- HAProxy's `resolvers` section with a `server-template` on an SRV name,
  read back through its admin socket.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from tests.harness.binaries import find_binary
from tests.harness.poll import eventually

START_TIMEOUT = 15.0

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the process that started us dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def dns_answers(ip: str, port: int, timeout: float = 0.3) -> bool:
    """Whether a DNS server on ip:port answers a query at all (any rcode)."""
    query = dns.message.make_query("ready.invalid.", "A")
    try:
        dns.query.udp(query, ip, port=port, timeout=timeout)
    except (dns.exception.Timeout, OSError, dns.exception.DNSException):
        return False
    return True


@dataclass
class ChildServer:
    """One foreground server process with its files in `workdir`."""

    name: str
    workdir: Path
    ip: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    prefix: list[str] = field(default_factory=list)  # e.g. ["taskset", "-c", "1"]

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return dns_answers(self.ip, self.port)

    def prepare(self) -> None:
        """Write config files into `workdir`."""

    def start(self) -> ChildServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.prefix, *self.argv()],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                preexec_fn=_die_with_parent,  # the test process starts children from one thread
            )
        try:
            eventually(self._ready_or_dead, START_TIMEOUT, interval=0.02, what=f"{self.name}")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready_or_dead(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )
        return self.ready()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 5 s; reaped. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self) -> ChildServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Dnsmasq(ChildServer):
    """dnsmasq in the foreground (`-k`), no /etc/hosts, no resolv.conf.

    `forward` maps a domain to upstream `ip#port` servers (`server=/consul/…`);
    `options` are extra long options without the dashes (`host-record=…`).
    """

    forward: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)
    log_queries: bool = True  # off for benchmarks: a log line per query costs

    @property
    def conf_path(self) -> Path:
        return self.workdir / "dnsmasq.conf"

    def prepare(self) -> None:
        lines = [
            "no-resolv",
            "no-hosts",
            "bind-interfaces",
            f"listen-address={self.ip}",
            f"port={self.port}",
            "user=root",  # no privilege drop: it would clear PDEATHSIG
            "pid-file=",
            f"log-facility={self.log_path}",
            *(["log-queries"] if self.log_queries else []),
        ]
        for domain, servers in self.forward.items():
            lines += [f"server=/{domain}/{ip}#{port}" for ip, port in servers]
        lines += self.options
        self.conf_path.write_text("\n".join(lines) + "\n")

    def argv(self) -> list[str]:
        binary = find_binary("dnsmasq") or "dnsmasq"
        return [binary, "-k", f"--conf-file={self.conf_path}"]


@dataclass
class Unbound(ChildServer):
    """unbound in the foreground, iterator only, with stub zones.

    `stubs` maps a zone to its servers (`stub-addr: ip@port`). QNAME
    minimisation is on and strict, so unbound never falls back to the full
    name: an empty non-terminal answered NXDOMAIN would break the lookup.
    """

    stubs: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    insecure: list[str] = field(default_factory=list)
    strict_minimisation: bool = True

    @property
    def conf_path(self) -> Path:
        return self.workdir / "unbound.conf"

    def prepare(self) -> None:
        strict = "yes" if self.strict_minimisation else "no"
        server = [
            "server:",
            f"  interface: {self.ip}@{self.port}",
            f"  port: {self.port}",
            "  do-daemonize: no",
            '  chroot: ""',
            '  username: ""',
            f'  directory: "{self.workdir}"',
            '  pidfile: ""',
            "  use-syslog: no",
            f'  logfile: "{self.log_path}"',
            "  verbosity: 1",
            "  log-queries: yes",
            "  num-threads: 1",
            '  module-config: "iterator"',
            "  qname-minimisation: yes",
            f"  qname-minimisation-strict: {strict}",
            "  do-not-query-localhost: no",
            "  do-ip6: no",
            "  access-control: 127.0.0.0/8 allow",
            *(f'  domain-insecure: "{zone}"' for zone in self.insecure),
            "remote-control:",
            "  control-enable: no",
        ]
        for zone, servers in self.stubs.items():
            server += ["stub-zone:", f'  name: "{zone}"']
            server += [f"  stub-addr: {ip}@{port}" for ip, port in servers]
        self.conf_path.write_text("\n".join(server) + "\n")

    def argv(self) -> list[str]:
        binary = find_binary("unbound") or "unbound"
        return [binary, "-d", "-c", str(self.conf_path)]


@dataclass
class HaproxyServer:
    """One line of `show servers state`, the fields a test looks at."""

    name: str
    addr: str
    port: int
    op_state: int  # 0 stopped, 1 starting, 2 running, 3 stopping
    admin_state: int  # bit flags; 0x20 = maintenance set by the resolver
    fqdn: str
    srvrecord: str

    RMAINT = 0x20

    @property
    def filled(self) -> bool:
        """The slot holds a resolved instance (not parked in resolver maintenance)."""
        return not self.admin_state & self.RMAINT and self.addr not in ("0.0.0.0", "-", "")


@dataclass
class Haproxy(ChildServer):
    """HAProxy in the foreground (`-db`) with one `resolvers` section and one backend.

    `nameservers` are the DNS servers of the `resolvers` section; `backend`
    is the body of `backend <backend_name>` (server-template lines). The
    admin socket lives in `workdir`; `show_servers_state()` reads it.
    `ip`/`port` are a TCP listener (a frontend, so the config has one).
    """

    nameservers: list[tuple[str, int]] = field(default_factory=list)
    resolvers_options: list[str] = field(default_factory=list)
    backend_name: str = "web"
    backend: list[str] = field(default_factory=list)

    @property
    def conf_path(self) -> Path:
        return self.workdir / "haproxy.cfg"

    @property
    def socket_path(self) -> Path:
        return self.workdir / "admin.sock"

    def prepare(self) -> None:
        lines = [
            "global",
            f"  stats socket {self.socket_path} mode 600 level admin",
            "  log stderr format short local0 info",
            "defaults",
            "  mode tcp",
            "  log global",
            "  timeout connect 1s",
            "  timeout client 5s",
            "  timeout server 5s",
            "resolvers gossamer",
        ]
        lines += [
            f"  nameserver ns{i} {ip}:{port}" for i, (ip, port) in enumerate(self.nameservers)
        ]
        lines += [f"  {opt}" for opt in self.resolvers_options]
        lines += [
            "frontend in",
            f"  bind {self.ip}:{self.port}",
            f"  default_backend {self.backend_name}",
            f"backend {self.backend_name}",
        ]
        lines += [f"  {line}" for line in self.backend]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def argv(self) -> list[str]:
        binary = find_binary("haproxy") or "haproxy"
        return [binary, "-db", "-f", str(self.conf_path)]

    def ready(self) -> bool:
        try:
            return "Name: HAProxy" in self.command("show info")
        except OSError:
            return False

    def command(self, line: str, timeout: float = 5.0) -> str:
        """One admin-socket command; its whole answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def show_servers_state(self) -> list[HaproxyServer]:
        """The backend's servers from `show servers state <backend>`, read by its header."""
        text = self.command(f"show servers state {self.backend_name}")
        header: list[str] = []
        servers = []
        for line in text.splitlines():
            if line.startswith("# be_id"):
                header = line[2:].split()
                continue
            if not header or not line.strip() or line.startswith("#"):
                continue  # the format version line comes before the header
            row = dict(zip(header, line.split(), strict=False))
            if "srv_name" not in row:
                continue
            servers.append(
                HaproxyServer(
                    name=row["srv_name"],
                    addr=row.get("srv_addr", ""),
                    port=int(row.get("srv_port", "0") or 0),
                    op_state=int(row.get("srv_op_state", "0")),
                    admin_state=int(row.get("srv_admin_state", "0")),
                    fqdn=row.get("srv_fqdn", "-"),
                    srvrecord=row.get("srvrecord", "-"),
                )
            )
        return servers
