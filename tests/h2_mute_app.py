"""An h2c app that streams an answer to each call and never answers a PING nor heeds a
reset: what a sidecar must not wait on forever when it cuts a call (h2_relay.py
`CUT_WAIT_S`). Frames are written by hand (h2_frames), read by the test's real client."""

from __future__ import annotations

import contextlib
import socket
import threading

from gossamer.proxy.h2_frames import (
    ACK,
    DATA,
    HEAD,
    HEADERS,
    PREFACE,
    SETTINGS,
    frame,
    header_frames,
    literal_block,
    parse_head,
)


class MuteApp:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.pings = 0  # PINGs read and never answered
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while not self._stopped.is_set():
                conn, _ = self._listener.accept()
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        streaming: list[int] = []
        with conn, contextlib.suppress(OSError):
            conn.settimeout(0.05)
            conn.sendall(frame(SETTINGS, 0, 0))
            got, preface = b"", False
            while not self._stopped.is_set():
                with contextlib.suppress(TimeoutError):
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    got += chunk
                if not preface and got.startswith(PREFACE):
                    got, preface = got[len(PREFACE) :], True
                while preface and len(got) >= HEAD:
                    length, kind, flags, stream = parse_head(got[:HEAD])
                    if len(got) < HEAD + length:
                        break
                    got = got[HEAD + length :]
                    if kind == SETTINGS and not flags & ACK:
                        conn.sendall(frame(SETTINGS, ACK, 0))
                    elif kind == HEADERS:  # (one frame a block: the test's calls are small)
                        answer = literal_block([(b":status", b"200")])
                        conn.sendall(header_frames(stream, answer, end_stream=False))
                        streaming.append(stream)
                    elif kind == 6:  # PING: never answered
                        self.pings += 1
                for stream in streaming:  # a reset is not heeded either (paced by the recv
                    conn.sendall(frame(DATA, 0, stream, b"tick,"))  # timeout above)
