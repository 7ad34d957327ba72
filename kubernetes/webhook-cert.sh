#!/usr/bin/env bash
# The injector webhook's TLS certificate, signed by the mesh root.
#
# Why a script: the mesh CA issues SPIFFE leaves only (URI SAN, no DNS
# names), and the API server checks a webhook's certificate against the
# DNS name of its Service. So the webhook's certificate is signed here with
# openssl by the mesh's root key, which means the root must be one the
# operator holds: make it with `root` and give it to the mesh with
# `gossamer ca init --root-cert root.pem --private-key root-key.pem` (a root
# that gossamer made itself never leaves the agents). The webhook
# configuration's caBundle is that root, so the API server trusts exactly it.
#
#   webhook-cert.sh root    OUTDIR [TRUST_DOMAIN]          -> root.pem root-key.pem
#   webhook-cert.sh webhook ROOT_CERT ROOT_KEY OUTDIR [SERVICE] [NAMESPACE] [DAYS]
#       -> tls.crt tls.key ca-bundle.b64 (defaults: gossamer-injector gossamer 365)
#
# Then: kubectl -n gossamer create secret tls gossamer-injector-tls \
#         --cert OUTDIR/tls.crt --key OUTDIR/tls.key
#       and put OUTDIR/ca-bundle.b64 into injector.yaml's caBundle.
set -euo pipefail

usage() { sed -n '13,15p' "$0" | sed 's/^# *//' >&2; exit 2; }
die() { echo "webhook-cert.sh: $*" >&2; exit 2; }

make_root() {
    local out=$1 td=${2:-gossamer.consul}
    mkdir -p "$out"
    openssl ecparam -name prime256v1 -genkey -noout -out "$out/root-key.pem"
    openssl req -x509 -new -key "$out/root-key.pem" -sha256 -days 3650 \
        -subj "/CN=gossamer mesh root ${td}" -out "$out/root.pem" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
        -addext "subjectAltName=URI:spiffe://${td}"
    chmod 600 "$out/root-key.pem"
    echo "root: $out/root.pem (key $out/root-key.pem, trust domain $td)"
}

make_webhook() {
    local root=$1 root_key=$2 out=$3 svc=${4:-gossamer-injector} ns=${5:-gossamer} days=${6:-365}
    [[ -r $root ]] || die "ROOT_CERT $root: cannot read"
    [[ -r $root_key ]] || die "ROOT_KEY $root_key: cannot read"
    [[ $days =~ ^[0-9]+$ ]] || die "DAYS $days: not a number"
    mkdir -p "$out"
    local ext
    ext=$(mktemp)
    trap 'rm -f "$ext" "$out/tls.csr"' RETURN
    cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:${svc},DNS:${svc}.${ns},DNS:${svc}.${ns}.svc,DNS:${svc}.${ns}.svc.cluster.local
EXT
    openssl ecparam -name prime256v1 -genkey -noout -out "$out/tls.key"
    openssl req -new -key "$out/tls.key" -subj "/CN=${svc}.${ns}.svc" -out "$out/tls.csr"
    openssl x509 -req -in "$out/tls.csr" -CA "$root" -CAkey "$root_key" -CAcreateserial \
        -CAserial "$out/root.srl" -sha256 -days "$days" -extfile "$ext" -out "$out/tls.crt" \
        2>/dev/null || die "signing with $root / $root_key failed (key not the root's?)"
    openssl verify -CAfile "$root" "$out/tls.crt" >/dev/null || die "tls.crt does not verify"
    chmod 600 "$out/tls.key"
    base64 -w0 "$root" >"$out/ca-bundle.b64"
    echo "webhook: $out/tls.crt for ${svc}.${ns}.svc, $days days, signed by $root"
}

case ${1:-} in
    root) [[ $# -ge 2 ]] || usage; make_root "${@:2}" ;;
    webhook) [[ $# -ge 4 ]] || usage; make_webhook "${@:2}" ;;
    *) usage ;;
esac
