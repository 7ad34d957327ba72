"""TLS as bytes in, bytes out: an `ssl.SSLObject` over memory BIOs, with half-close. Pure.

Why not asyncio's (or uvloop's) TLS transport: it cannot half-close
(`can_write_eof()` is False), so a client that shuts down its sending side
and waits for the answer could not be relayed; and a handshake failure
inside it never reaches our code to be counted. Driving the SSLObject
ourselves over a plain TCP transport gives both, and reads into a
preallocated buffer (no 256 KiB allocation per read, see
../shared/reference/proxy-levers.md §7).

Peer certificates: after a full handshake `peer_certificates()` is the
chain OpenSSL verified (leaf first, the root of the context's bundle
last), which authorize.py checks for what OpenSSL does not know. A client
may offer a session from an earlier connection (`session=`; asyncio's own
TLS cannot, which is why its sidecar-to-sidecar handshakes are always
full); a resumed session carries no certificates, so it gives the leaf
remembered in the session alone, for the shell to check and authorize
again like any other.

Half-close: `close_write()` sends TLS close_notify (`SSLObject.unwrap`,
whose "want read" only means the peer's close_notify has not come yet);
OpenSSL keeps decrypting what the peer still sends, so the other direction
carries on. A close_notify received (or a clean end of the ciphertext)
sets `eof_received`; anything the peer sends after its close_notify is
dropped (RFC 8446 6.1), and the shell reads no more.

No I/O here: the shell writes `feed`'s and `encrypt`'s ciphertext output
to its socket. Errors are the ssl module's (`ssl.SSLError` and subclasses,
`SSLCertVerificationError` with OpenSSL's verify code).
"""

from __future__ import annotations

import ssl
from typing import Final, Protocol, cast

READ_SIZE: Final = 64 * 1024  # one TLS record is at most 16 KiB of plaintext; take several per call
# Decrypted bytes land here and are copied out at once (`feed` returns bytes), so every pipe of
# the process shares one buffer (the proxy runs on one thread) instead of 64 KiB each.
_PLAIN: Final = bytearray(READ_SIZE)
_PLAIN_VIEW: Final = memoryview(_PLAIN)
RECORD: Final = 16 * 1024  # the most plaintext one TLS record holds
# More ciphertext than this waiting: the next record is most likely a full one (a body), read
# into bytes of its own instead of copied out of _PLAIN (one copy of each body byte fewer);
# less (a request, an answer's head) goes through _PLAIN: no 16 KiB allocation for 200 bytes.
WHOLE_RECORDS: Final = RECORD


class _Records(Protocol):
    """What the data path calls on a TLS connection for each chunk, typed as it behaves: a
    read into a buffer returns a count, not the bytes typeshed declares for SSLObject.read
    (compiled, mypyc checks a call's result against its declared type)."""

    def read(self, size: int, buffer: bytearray, /) -> int: ...

    def write(self, data: bytes | memoryview, /) -> int: ...

    def pending(self) -> int: ...


class _WholeRecords(Protocol):
    """The same object's read without a buffer: bytes of their own, sized to what came."""

    def read(self, size: int, /) -> bytes: ...


def _records(tls: ssl.SSLObject) -> _Records:
    """The C object under `tls` (CPython's `_sslobj`, as peer_certificates reads): SSLObject's
    read, write and pending are Python methods that only call it, and the only frames the
    compiled data path still runs, three a request (bench/README.md)."""
    return cast("_Records", getattr(tls, "_sslobj", tls))


class TlsPipe:
    """One TLS connection's state; the shell moves its ciphertext."""

    def __init__(
        self, context: ssl.SSLContext, *, server_side: bool, session: ssl.SSLSession | None = None
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, session=session
        )
        self._records = _records(self.tls)
        self._whole = cast(_WholeRecords, self._records)
        self.handshaken = False
        self.eof_received = False
        self.close_notified = False  # the peer ended with close_notify, not a bare TCP end
        self.eof_sent = False

    def start(self) -> bytes:
        """Begin the handshake (a client's ClientHello); the bytes to send."""
        self._handshake()
        return self._outgoing.read()

    def feed(self, ciphertext: bytes | memoryview) -> list[bytes]:
        """Take bytes from the peer; the plaintext they complete (see `pending`). Nothing
        after the peer's close_notify counts (RFC 8446 6.1: ignored): it is dropped, not
        kept in the BIO that is never read again (a peer sending on held it all)."""
        if self.eof_received:
            return []
        self._incoming.write(ciphertext)
        if not self.handshaken and not self._handshake():
            return []
        chunks: list[bytes] = []
        while not self.eof_received:
            if not self._incoming.pending and not self._records.pending():
                break  # nothing left to decrypt: skip the "want read" exception (~1 us)
            try:
                if self._incoming.pending > WHOLE_RECORDS:
                    chunk = self._whole.read(RECORD)
                else:
                    count = self._records.read(READ_SIZE, _PLAIN)
                    chunk = bytes(_PLAIN_VIEW[:count]) if count else b""
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._notified()
                break
            if not chunk:
                self._notified()
                break
            chunks.append(chunk)
        return chunks

    def _notified(self) -> None:
        """The peer's close_notify came: what came behind it in the same read is dropped."""
        self.eof_received = self.close_notified = True
        self._incoming.read()

    def end_of_input(self) -> None:
        """The peer's TCP stream ended (with or without close_notify)."""
        self._incoming.write_eof()
        self.eof_received = True

    def pending(self) -> bytes:
        """Ciphertext waiting to be sent (handshake messages, alerts, close_notify)."""
        return self._outgoing.read()

    def encrypt(self, plaintext: bytes | memoryview) -> bytes:
        """The ciphertext for `plaintext` (and anything pending before it)."""
        if plaintext:
            self._records.write(plaintext)
        return self._outgoing.read()

    def encrypt_all(self, pieces: list[bytes]) -> bytes:
        """The ciphertext for the pieces one after the other, in the records their join would
        make, without the join (`record_units`)."""
        write = self._records.write
        for unit in record_units(pieces):
            write(unit)
        return self._outgoing.read()

    def close_write(self) -> bytes:
        """Send close_notify: this direction is done; the peer may still send."""
        if not self.eof_sent and self.handshaken:
            self.eof_sent = True
            try:
                self.tls.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass  # the peer's close_notify is not needed to send ours
            except ssl.SSLError:
                pass  # a broken connection: the shell closes it anyway
        return self._outgoing.read()

    @property
    def resumed(self) -> bool:
        return self.handshaken and self.tls.session_reused

    def peer_certificates(self) -> list[bytes]:
        """The verified chain as DER (leaf first, root last); a resumed session: its leaf."""
        # Python 3.13 names it SSLObject.get_verified_chain; 3.11 and 3.12 have it on _sslobj
        getter = getattr(self.tls, "get_verified_chain", None)
        if getter is None:
            getter = self.tls._sslobj.get_verified_chain  # type: ignore[attr-defined]
        chain = [c if isinstance(c, bytes) else c.public_bytes(_DER) for c in getter() or []]
        if chain or not self.resumed:
            return chain
        leaf = self.tls.getpeercert(binary_form=True)
        return [leaf] if leaf else []

    def _handshake(self) -> bool:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        self.handshaken = True
        return True


def record_units(pieces: list[bytes]) -> list[bytes | memoryview]:
    """What to hand OpenSSL, write by write, for `pieces` in order, in the records their join
    would make: each write starts a record, so every write but the last is a whole number of
    records. Small pieces are joined; a piece of a record or more passes as a view (a body:
    64 KiB from the app, not copied again behind its 9-byte mux frame header), less its head,
    which tops up the small pieces before it to a full record, and its tail past the last
    full record, which starts the next write. Bytes copied: at most a record before and after
    each large piece."""
    units: list[bytes | memoryview] = []
    small: list[bytes | memoryview] = []
    size = 0
    for piece in pieces:
        n = len(piece)
        if n < RECORD:
            small.append(piece)
            size += n
            if size >= RECORD:
                joined = b"".join(small)
                whole = size - size % RECORD
                units.append(joined[:whole] if whole < size else joined)
                small, size = ([joined[whole:]], size - whole) if whole < size else ([], 0)
            continue
        view = memoryview(piece)
        cut = RECORD - size if small else 0
        if small:
            small.append(view[:cut])  # joined from the view: the head copied once
            units.append(b"".join(small))
        rest = n - cut
        whole = rest - rest % RECORD
        if whole:
            units.append(view[cut : cut + whole])
        small = [view[cut + whole :]] if whole < rest else []
        size = rest - whole
    if small:
        units.append(small[0] if len(small) == 1 else b"".join(small))
    return units


_DER: Final = ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]  # Certificate.public_bytes format
