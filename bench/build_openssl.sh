#!/usr/bin/env bash
# OpenSSL 3.5 (Debian 13's) built beside Debian 12's 3.0, for benches only.
#
# Python's ssl module, HAProxy and nginx use the libssl.so.3 / libcrypto.so.3
# the dynamic linker finds, and OpenSSL 3.x keeps its ABI, so a bench run
# with LD_LIBRARY_PATH pointing here puts the gossamer and HAProxy pairs on
# 3.5 (Envoy has BoringSSL built in). Nothing else uses it; the product runs
# on the system's OpenSSL. The source is Debian 13's upstream tarball,
# checked against the SHA-256 in Debian's Sources index. ~10 minutes on 2 cores.
#
#   bench/build_openssl.sh [DIR]     # default build/openssl-3.5
#   LD_LIBRARY_PATH=build/openssl-3.5 .venv/bin/python bench/pair_bodies.py --installed
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(realpath -m "${1:-$ROOT/build/openssl-3.5}")"  # Configure takes an absolute --prefix only
VERSION=3.5.7
SHA256=a8c0d28a529ca480f9f36cf5792e2cd21984552a3c8e4aa11a24aa31aeac98e8
URL="http://deb.debian.org/debian/pool/main/o/openssl/openssl_${VERSION}.orig.tar.gz"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
curl -fsS --max-time 600 -o "$WORK/src.tar.gz" "$URL"
echo "$SHA256  $WORK/src.tar.gz" | sha256sum --check --quiet
tar -C "$WORK" -xzf "$WORK/src.tar.gz"
cd "$WORK/openssl-$VERSION"
LOG="$WORK/build.log"
./Configure shared no-tests no-docs linux-x86_64 --prefix="$OUT" --libdir=lib >"$LOG" 2>&1 \
  && make -j"$(nproc)" build_libs >>"$LOG" 2>&1 || { tail -40 "$LOG" >&2; exit 1; }
mkdir -p "$OUT"
cp -P libssl.so* libcrypto.so* "$OUT/"
LD_LIBRARY_PATH="$OUT" "$ROOT/.venv/bin/python" -c 'import ssl; print(ssl.OPENSSL_VERSION)'
