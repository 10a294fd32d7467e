"""A loopback HTTP proxy that fails chosen requests (503, connection reset, a stall) on their way to a real server."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Fault:
    """Fail the next `times` requests whose method and path contain `method` and `path`.

    action: "503" answers HTTP 503 without forwarding; "reset" closes the connection with RST without forwarding;
    "stall" forwards the request (the server acts on it) and holds the reply for `stall_s` before dropping it.
    """

    method: str
    path: str
    action: str
    times: int = 1
    stall_s: float = 10.0
    hits: int = 0


@dataclass
class FaultProxy:
    upstream: tuple[str, int]
    faults: list[Fault] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, what happened)

    def __post_init__(self):
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, method: str, path: str, action: str, times: int = 1, stall_s: float = 10.0) -> Fault:
        f = Fault(method, path, action, times, stall_s)
        with self._lock:
            self.faults.append(f)
        return f

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _match(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.hits < f.times and f.method in method and f.path in path:
                    f.hits += 1
                    return f
        return None

    def _handle(self, conn: socket.socket) -> None:
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    conn.close()
                    return
                head += chunk
            first = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            method, path = first[0], first[1]
            fault = self._match(method, path)
            self.seen.append((method, path, fault.action if fault else "pass"))
            if fault and fault.action == "503":
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                conn.close()
                return
            if fault and fault.action == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()  # linger 0: the client sees ECONNRESET
                return
            # One request per connection, so every request passes the rules: ask the server to close after replying.
            # (A websocket upgrade keeps its headers: it stays one long connection.)
            if b"\r\nupgrade:" not in head.lower():
                lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
                head = b"\r\n".join(lines[:1] + [b"Connection: close"] + lines[1:])
            up = socket.create_connection(self.upstream)
            up.sendall(head)
            t = threading.Thread(target=self._pipe, args=(conn, up), daemon=True)
            t.start()
            if fault and fault.action == "stall":
                up.settimeout(fault.stall_s + 30)
                reply = b""
                while True:  # the server acts and answers; the client never gets the answer
                    chunk = up.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
                time.sleep(fault.stall_s)
                conn.close()
                up.close()
                return
            self._pipe(up, conn)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
