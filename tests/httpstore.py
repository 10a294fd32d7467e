"""A threaded loopback HTTP file store: what DVC's `http` remote needs (GET/HEAD to read, POST/PUT to upload)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(BaseHTTPRequestHandler):
    root: Path  # set per server by HTTPStore

    def _path(self) -> Path:
        rel = self.path.split("?", 1)[0].lstrip("/")
        path = (self.root / rel).resolve()
        if self.root.resolve() not in path.parents:
            raise PermissionError(self.path)
        return path

    def _read(self, head_only: bool) -> None:
        path = self._path()
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._read(head_only=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._read(head_only=True)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))
        parts = []  # fsspec streams uploads with chunked transfer encoding
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def do_POST(self) -> None:  # noqa: N802
        path, body = self._path(), self._body()
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        part.write_bytes(body)
        part.replace(path)  # a dropped upload never leaves a half object under its final name
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST

    def log_message(self, *args) -> None:
        pass


class HTTPStore:
    """Serve files under `root` on 127.0.0.1 until `close()`; `url` is the DVC remote's address."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        handler = type("Handler", (_Handler,), {"root": self.root})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file() and not p.name.endswith(".part"))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def dead_url() -> str:
    """An address nothing listens on (a remote that is down: connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"
