"""What the proxy reads from a certificate OpenSSL has verified: a small DER reader. Pure.

Why not `cryptography`: its wheel carries its own OpenSSL and costs a proxy
~11 MiB of RSS on import, for reading a few fields the `ssl` module has
already checked. In the proxy, OpenSSL verifies each peer's chain during the
handshake (`CERT_REQUIRED` against the trust bundle: signatures, validity,
purpose, name constraints); what it does not know (SPIFFE IDs, revoked
agents, a trust bundle that changed since the handshake) is decided on the
facts read here, by authorize.py.

`cert_facts(der)` reads an X.509 certificate (RFC 5280 4.1) far enough for
those checks: validity, the key id gossamer writes as SKI (SHA-256 of the
DER SubjectPublicKeyInfo, keys.key_id), the URI and host SANs, CA:TRUE, the
extended key usages, whether KeyUsage allows digitalSignature (OpenSSL's
client purpose passes a leaf with keyAgreement alone, and its server purpose
one with keyEncipherment alone: neither may sign a TLS 1.3 CertificateVerify),
the subject's CN for messages. It is not a validator:
malformed DER raises ValueError, unknown extensions are skipped (OpenSSL
refused unknown critical ones already). `pem_certificates` splits PEM text
into DER blocks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)
_SAN, _BASIC, _EKU, _KU = "2.5.29.17", "2.5.29.19", "2.5.29.37", "2.5.29.15"
_CN = "2.5.4.3"
_URI, _DNS, _IP = 0x86, 0x82, 0x87  # GeneralName [6] uniformResourceIdentifier, [2], [7]
_SEQUENCE, _BOOLEAN, _OID, _BIT_STRING, _EXTENSIONS = 0x30, 0x01, 0x06, 0x03, 0xA3
_DIGITAL_SIGNATURE = 0x80  # KeyUsage bit 0, the first bit of the first content byte
_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}
_Tlv = tuple[int, int, int, int]  # tag, where its header starts, where its value starts, end


@dataclass(frozen=True)
class CertFacts:
    """The fields of one certificate the proxy's peer checks read."""

    subject_cn: str
    not_before: datetime
    not_after: datetime
    key_id: bytes
    uris: tuple[str, ...]
    names_hosts: bool  # a DNS or IP SAN
    is_ca: bool
    eku: frozenset[str] | None  # dotted OIDs; None without the extension
    signs: bool = True  # KeyUsage allows digitalSignature (or there is no KeyUsage)

    def describe(self) -> str:
        return f"certificate {('CN=' + self.subject_cn) if self.subject_cn else '(no CN)'!r}"


def pem_certificates(text: str | bytes) -> list[bytes]:
    """The DER of every CERTIFICATE block of a PEM text, in order; ValueError if unreadable."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    try:
        return [base64.b64decode(b"".join(b.split()), validate=True) for b in _PEM.findall(data)]
    except binascii.Error as exc:
        raise ValueError(f"not a PEM certificate: {exc}") from None


def cert_facts(der: bytes) -> CertFacts:
    """The facts of one DER certificate; ValueError when it is not one."""
    top = _read(der, 0, len(der))
    if top[0] != _SEQUENCE or top[3] != len(der):
        raise ValueError("not a DER certificate")
    parts = _children(der, top)
    if len(parts) != 3 or parts[0][0] != _SEQUENCE:
        raise ValueError("a certificate is a tbsCertificate, an algorithm and a signature")
    tbs = _children(der, parts[0])
    if tbs and tbs[0][0] == 0xA0:  # [0] EXPLICIT version
        tbs = tbs[1:]
    if len(tbs) < 6:
        raise ValueError("truncated tbsCertificate")
    not_before, not_after = (_time(der, item) for item in _exactly(2, _children(der, tbs[3])))
    spki = tbs[5]
    uris: list[str] = []
    hosts, is_ca, eku, signs = False, False, None, True
    for oid, value in _extensions(der, tbs[6:]):
        if oid == _SAN:
            names = _children(der, _read(der, value[2], value[3]))
            uris = [der[n[2] : n[3]].decode("ascii") for n in names if n[0] == _URI]
            hosts = any(n[0] in (_DNS, _IP) for n in names)
        elif oid == _BASIC:
            fields = _children(der, _read(der, value[2], value[3]))
            is_ca = (
                bool(fields)
                and fields[0][0] == _BOOLEAN
                and der[fields[0][2] : fields[0][3]] == b"\xff"
            )
        elif oid == _EKU:
            usages = _children(der, _read(der, value[2], value[3]))
            eku = frozenset(_oid(der[u[2] : u[3]]) for u in usages if u[0] == _OID)
        elif oid == _KU:
            bits = _read(der, value[2], value[3])
            if bits[0] != _BIT_STRING or bits[3] - bits[2] < 1:
                raise ValueError("a malformed KeyUsage")
            signs = bits[3] - bits[2] > 1 and bool(der[bits[2] + 1] & _DIGITAL_SIGNATURE)
    return CertFacts(
        subject_cn=_common_name(der, tbs[4]),
        not_before=not_before,
        not_after=not_after,
        key_id=hashlib.sha256(der[spki[1] : spki[3]]).digest(),
        uris=tuple(uris),
        names_hosts=hosts,
        is_ca=is_ca,
        eku=eku,
        signs=signs,
    )


def _read(buf: bytes, at: int, end: int) -> _Tlv:
    """The TLV starting at `at` (definite lengths only, as DER requires)."""
    if at + 2 > end:
        raise ValueError("truncated DER")
    tag, length, start = buf[at], buf[at + 1], at + 2
    if tag & 0x1F == 0x1F:
        raise ValueError("a multi-byte DER tag")
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4 or start + size > end:
            raise ValueError("a bad DER length")
        length, start = int.from_bytes(buf[start : start + size], "big"), start + size
    if start + length > end:
        raise ValueError("truncated DER")
    return tag, at, start, start + length


def _children(buf: bytes, parent: _Tlv) -> list[_Tlv]:
    found, at = [], parent[2]
    while at < parent[3]:
        item = _read(buf, at, parent[3])
        found.append(item)
        at = item[3]
    return found


def _exactly(count: int, items: list[_Tlv]) -> list[_Tlv]:
    if len(items) != count:
        raise ValueError(f"expected {count} DER items, found {len(items)}")
    return items


def _extensions(buf: bytes, rest: list[_Tlv]) -> list[tuple[str, _Tlv]]:
    """(OID, the OCTET STRING holding its value) of each extension."""
    found = []
    for wrapper in (item for item in rest if item[0] == _EXTENSIONS):
        for extension in _children(buf, _read(buf, wrapper[2], wrapper[3])):
            fields = _children(buf, extension)
            if len(fields) < 2 or fields[0][0] != _OID:
                raise ValueError("a malformed extension")
            found.append((_oid(buf[fields[0][2] : fields[0][3]]), fields[-1]))
    return found


def _oid(raw: bytes) -> str:
    if not raw or raw[-1] & 0x80:
        raise ValueError("an empty or truncated OID")
    arcs, value = [], 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, (first, arcs[0] - 40 * first, *arcs[1:])))


def _time(buf: bytes, item: _Tlv) -> datetime:
    """UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), as RFC 5280 4.1.2.5."""
    text = buf[item[2] : item[3]].decode("ascii")
    if item[0] == 0x17 and len(text) == 13:
        year = int(text[:2])
        text = ("19" if year >= 50 else "20") + text
    if item[0] not in (0x17, 0x18) or len(text) != 15 or not text.endswith("Z"):
        raise ValueError(f"a validity time gossamer does not read: {text!r}")
    d = [int(text[i : i + 2]) for i in range(4, 14, 2)]
    return datetime(int(text[:4]), d[0], d[1], d[2], d[3], d[4], tzinfo=UTC)


def _common_name(buf: bytes, name: _Tlv) -> str:
    for rdn in _children(buf, name):
        for pair in _children(buf, rdn):
            fields = _children(buf, pair)
            if len(fields) == 2 and _oid(buf[fields[0][2] : fields[0][3]]) == _CN:
                codec = _STRINGS.get(fields[1][0], "latin-1")
                return buf[fields[1][2] : fields[1][3]].decode(codec, "replace")
    return ""
