#!/usr/bin/env bash
# Prepare this checkout: system packages (serf and test tools) and a
# virtualenv with gossamer and its Python dependencies. Idempotent and quick
# when everything is already there. Sourced or run by dev.sh and test.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PROFILE="${1:-dev}"   # dev: what the agent needs; test: also the test tools

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

apt_install() {
  # apt_install PKG...: install the Debian packages that are missing.
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    die "missing ${missing[*]} and apt-get is not available on this machine; install them by hand (serf: https://github.com/hashicorp/serf/releases, put it on PATH) and rerun"
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "missing ${missing[*]}: run as root or install sudo"
    sudo="sudo"
  fi
  say "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null || die "apt-get update failed"
    $sudo apt-get install -y -q "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
  }
}

system_packages() {
  local pkgs=()
  command -v serf >/dev/null 2>&1 || pkgs+=(serf)
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then pkgs+=(python3-venv); fi
  command -v python3 >/dev/null 2>&1 || pkgs+=(python3 python3-venv)
  # The proxy's data path is compiled with mypyc (native_build below): a C compiler and the
  # chosen Python's headers.
  command -v gcc >/dev/null 2>&1 || pkgs+=(gcc)
  "$(pick_python)" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    2>/dev/null || pkgs+=(python3-dev)
  if [ "$PROFILE" = test ]; then
    command -v ip >/dev/null 2>&1 || pkgs+=(iproute2)
    command -v pgrep >/dev/null 2>&1 || pkgs+=(procps)
    command -v dig >/dev/null 2>&1 || pkgs+=(bind9-dnsutils)
    # Real resolvers in front of the agent's DNS (tests/test_dns_resolvers.py)
    # and the DNS bench: dnsmasq-base is the binary without the service.
    command -v dnsmasq >/dev/null 2>&1 || pkgs+=(dnsmasq-base)
    command -v unbound >/dev/null 2>&1 || pkgs+=(unbound)
    command -v haproxy >/dev/null 2>&1 || pkgs+=(haproxy)
    command -v kdig >/dev/null 2>&1 || pkgs+=(knot-dnsutils)
    command -v dnsperf >/dev/null 2>&1 || pkgs+=(dnsperf)
    command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)  # s_client/verify against agents and proxies
    # The proxy bench's load generator and backend (bench/proxy_pair.py).
    command -v wrk >/dev/null 2>&1 || pkgs+=(wrk)
    command -v nginx >/dev/null 2>&1 || pkgs+=(nginx-light)
    command -v h2load >/dev/null 2>&1 || pkgs+=(nghttp2-client)  # bench/h2_pair.py's load
    # A real Prometheus scrapes an agent and its proxies (tests/test_metrics_prometheus.py);
    # promtool checks the proxy's text format.
    command -v prometheus >/dev/null 2>&1 || pkgs+=(prometheus)
    # curl is one of the HTTPS API's clients (tests/test_https_api.py).
    command -v curl >/dev/null 2>&1 || pkgs+=(curl)
  fi
  [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"
  command -v serf >/dev/null 2>&1 || die "serf is still not on PATH after installing it"
}

pick_python() {
  # $GOSSAMER_PYTHON if set, else the distribution's /usr/bin/python3 when it is 3.11+ and can
  # make a venv (Debian builds it with PGO and LTO: the proxy's HTTP path used ~30 % less CPU
  # per request on it than on an unoptimised pyenv build, bench/README.md), else python3.
  local py
  for py in "${GOSSAMER_PYTHON:-}" /usr/bin/python3 python3; do
    [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 || continue
    if "$py" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"
      return
    fi
  done
  echo python3
}

python_env() {
  local py
  py="$(pick_python)"
  "$py" - <<'PY' || die "gossamer needs Python 3.11 or newer (found $("$py" --version 2>&1))"
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV with $py ($("$py" --version 2>&1))"
    "$py" -m venv "$VENV"
  fi
  local extra="[native]" stamp
  [ "$PROFILE" = test ] && extra="[dev]"
  stamp="$VENV/.installed-$PROFILE-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    say "installing gossamer$extra into the virtualenv"
    local log="$VENV/pip-install.log"
    { "$VENV/bin/pip" install --disable-pip-version-check --upgrade pip \
        && "$VENV/bin/pip" install --disable-pip-version-check -e "$ROOT$extra"; } >"$log" 2>&1 \
      || { tail -n 20 "$log" >&2; die "pip install failed; full log in $log"; }
    touch "$stamp"
  fi
}

native_build() {
  # The data-path modules of the proxy compiled with mypyc (proxy/native.py): about a third
  # less CPU per request (bench/http_path.py). Rebuilt when a source changed; if the build
  # fails the proxy runs them as Python, slower but the same.
  "$VENV/bin/python" "$ROOT/scripts/build_native.py" --check >/dev/null 2>&1 && return 0
  say "compiling the proxy's data path with mypyc, profile-guided (about 75 s)"
  local log="$VENV/native-build.log"
  "$VENV/bin/python" "$ROOT/scripts/build_native.py" >"$log" 2>&1 || {
    tail -n 20 "$log" >&2
    say "the compiled build failed (full log in $log): the proxy runs as Python"
  }
}

system_packages
python_env
native_build
