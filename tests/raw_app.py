"""A raw HTTP/1.1 app: plain sockets on threads, so the bytes are the test's to see.

It switches protocols whenever asked, as an h2c server does: a request with
an `Upgrade` header (or `CONNECT`, or a path ending `/switch-anyway`) gets
`101` (`200` to CONNECT), and from then on every byte the connection brings
is kept in `tunneled`, unanswered: what a client could slip past the L7
permissions once the proxy joins the two connections. A path ending
`/trailers` gets a chunked answer with a trailer field (`X-Sum: 5`); a
chunked request body is read to its end and answered as it came, trailer
fields and all; a body of a Content-Length is read and dropped. A path
ending `/endless-head` (`/endless-trailer`) gets a head (trailer field)
whose value goes on for 32 MiB (more than any socket buffers hold), or until
the proxy cuts it (`endless_cut`). A path ending `/greet` gets `101` and
GREETING in one write, then its bytes are kept as after any switch. A path
ending `/early-close` gets `413` and the end of the app's side at once, its
body read to its end and dropped; one ending `/early-drain` gets `200`
(`early`) at once, then its body (of a Content-Length) is read and
dropped, as Go's and Node's servers drain a body the handler left unread.
A path ending `/canned/<name>` gets
`canned[name]` (a test's bytes, as they are: framing right or wrong),
then the end of the app's side if `name` starts with `close-`. Any other
request gets `200` with its own head as the body, so a test sees exactly
what reached the app.
"""

from __future__ import annotations

import contextlib
import socket
import threading

GREETING = b"G" * 100_000  # what a path ending `/greet` gets in the write of its `101`


class RawApp:
    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.heads: list[bytes] = []  # every request head read, in order
        self.tunneled: list[bytes] = []  # every byte read after a switch
        self.endless_sent = 0  # of the last endless field, what the proxy took
        self.endless_cut: bool | None = None  # of the last: cut (True), sent whole, under way
        self.canned: dict[str, bytes] = {}  # a test's answers, by name (`/canned/<name>`)
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self.sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    got = conn.recv(65536)
                    if not got:
                        return
                    buf += got
                head, buf = buf.split(b"\r\n\r\n", 1)
                self.heads.append(head)
                if head.startswith(b"CONNECT "):
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                elif b"/greet " in head.split(b"\r\n", 1)[0]:
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                                 b"Upgrade: websocket\r\n\r\n" + GREETING)  # fmt: skip
                elif b"\r\nupgrade:" in head.lower() or b"/switch-anyway " in head:
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                                 b"Upgrade: h2c\r\n\r\n")  # fmt: skip
                elif head.split(b"\r\n", 1)[0].endswith(
                    (b"/endless-head HTTP/1.1", b"/endless-trailer HTTP/1.1")
                ):
                    trailer = b"/endless-trailer " in head
                    start = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"2\r\nok\r\n0\r\nX-T: " if trailer else
                             b"HTTP/1.1 200 OK\r\nX-A: ")  # fmt: skip
                    self.endless_sent, self.endless_cut = 0, None
                    try:
                        conn.sendall(start)
                        for _ in range(512):  # 32 MiB of one field's value, or until cut
                            conn.sendall(b"a" * 65536)
                            self.endless_sent += 65536
                    except OSError:
                        self.endless_cut = True
                        return
                    self.endless_cut = False
                    return
                elif head.split(b"\r\n", 1)[0].endswith(b"/early-drain HTTP/1.1"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
                    length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                                   if line.startswith(b"content-length:")), 0)  # fmt: skip
                    while len(buf) < length:
                        got = conn.recv(65536)
                        if not got:
                            return
                        buf += got
                    buf = buf[length:]  # read after the answer and dropped, as Go's server does
                    continue
                elif head.split(b"\r\n", 1)[0].endswith(b"/early-close HTTP/1.1"):
                    conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")  # fmt: skip
                    conn.shutdown(socket.SHUT_WR)  # and read on to the end, as nginx lingers
                    with contextlib.suppress(OSError):
                        while conn.recv(65536):
                            pass
                    return
                elif b"/canned/" in head.split(b"\r\n", 1)[0]:
                    name = head.split(b"/canned/", 1)[1].split(b" ", 1)[0].decode()
                    conn.sendall(self.canned[name])
                    if name.startswith("close-"):
                        return
                    continue
                elif head.split(b"\r\n", 1)[0].endswith(b"/trailers HTTP/1.1"):
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                        b"Trailer: X-Sum\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 5\r\n\r\n"
                    )
                    continue
                elif b"\r\ntransfer-encoding: chunked" in head.lower():
                    while b"\r\n0\r\n" not in b"\r\n" + buf or not buf.endswith(b"\r\n\r\n"):
                        got = conn.recv(65536)
                        if not got:
                            return
                        buf += got
                    body, buf = buf, b""  # the test sends nothing after it
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(body), body))  # fmt: skip
                    continue
                else:
                    length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                                   if line.startswith(b"content-length:")), 0)  # fmt: skip
                    while len(buf) < length:
                        got = conn.recv(65536)
                        if not got:
                            return
                        buf += got
                    buf = buf[length:]  # a body of a length is read and dropped
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(head), head))  # fmt: skip
                    continue
                if buf:
                    self.tunneled.append(buf)
                while got := conn.recv(65536):
                    self.tunneled.append(got)
                return
