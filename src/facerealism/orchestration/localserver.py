"""The project's own Prefect server: started by the first `facerealism run`, reused by every later one.

Without a server, each Prefect flow starts a temporary one (~10-15 s on 2 cores) that dies with the run. A user of
Prefect keeps one running (`prefect server start`); this does that for them, per project: the server keeps its
SQLite database in the project's PREFECT_HOME (`.prefect/`, the same one the temporary server used, so the UI keeps
every run), runs in its own session (a Ctrl-C or kill of the run leaves it up), and is found again through
`.prefect/server.json`. `facerealism server stop` (or `prefect server stop`, which reads the same `server.pid`)
ends it. A configured PREFECT_API_URL (a team server) always wins; FACEREALISM_PREFECT_SERVER=temporary restores
Prefect's own temporary server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

STATE = "server.json"  # {"pid", "port", "url"} of the server this project started
PID_FILE = "server.pid"  # Prefect's own name: `prefect server stop` finds it too
MODE_ENV = "FACEREALISM_PREFECT_SERVER"  # "local" (default) | "temporary"
START_TIMEOUT_S = 120.0  # a cold start on a loaded 2-core machine can take ~30 s


@dataclass(frozen=True)
class LocalServer:
    pid: int
    port: int
    home: Path
    started: bool  # False: an already running server was reused

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


def home() -> Path:
    """The project's PREFECT_HOME (env.configure() sets it to `.prefect/` of the working directory)."""
    return Path(os.environ.get("PREFECT_HOME", ".prefect")).resolve()


def healthy(port: int, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(prefect_home: Path | None = None) -> LocalServer | None:
    """The server this project started, if it still answers; forgets a dead one's records."""
    prefect_home = prefect_home or home()
    try:
        state = json.loads((prefect_home / STATE).read_text())
        pid, port = int(state["pid"]), int(state["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _alive(pid) and healthy(port):
        return LocalServer(pid, port, prefect_home, started=False)
    if not _alive(pid):
        _forget(prefect_home)
    return None


def _forget(prefect_home: Path) -> None:
    for name in (STATE, PID_FILE):
        (prefect_home / name).unlink(missing_ok=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(prefect_home: Path | None = None, timeout: float = START_TIMEOUT_S) -> LocalServer:
    """Start `prefect server start` on a free localhost port in its own session; wait until it answers."""
    prefect_home = prefect_home or home()
    prefect_home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "true"}
    env.pop("PREFECT_API_URL", None)
    exe = Path(sys.executable).with_name("prefect")
    cmd = [str(exe) if exe.exists() else "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with open(prefect_home / "server.log", "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while not healthy(port):
        if proc.poll() is not None:
            raise RuntimeError(f"the local Prefect server exited with code {proc.returncode}; "
                               f"see {prefect_home / 'server.log'}")
        if time.monotonic() > deadline:
            _kill_group(proc.pid)
            raise TimeoutError(f"the local Prefect server did not answer within {timeout:.0f} s; "
                               f"see {prefect_home / 'server.log'}")
        time.sleep(0.2)
    (prefect_home / PID_FILE).write_text(str(proc.pid))
    (prefect_home / STATE).write_text(json.dumps({"pid": proc.pid, "port": port,
                                                  "url": f"http://127.0.0.1:{port}"}))
    return LocalServer(proc.pid, port, prefect_home, started=True)


def ensure() -> LocalServer | None:
    """Point this process's Prefect client at the project's server, starting it if needed.

    Returns None (nothing done) when PREFECT_API_URL is already set or FACEREALISM_PREFECT_SERVER=temporary.
    """
    mode = os.environ.get(MODE_ENV, "local")
    if mode not in ("local", "temporary"):
        from facerealism.errors import UserError

        raise UserError(f"{MODE_ENV}={mode!r}: expected 'local' or 'temporary'")
    if os.environ.get("PREFECT_API_URL") or mode == "temporary":
        return None
    server = running() or start()
    os.environ["PREFECT_API_URL"] = server.api_url
    return server


def _kill_group(pid: int, timeout: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            try:  # reap it if it is our child
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        if not _alive(pid):
            return


def stop(prefect_home: Path | None = None) -> LocalServer | None:
    """Stop the server this project started (its whole process group); None if none was running."""
    prefect_home = prefect_home or home()
    try:
        state = json.loads((prefect_home / STATE).read_text())
        server = LocalServer(int(state["pid"]), int(state["port"]), prefect_home, started=False)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _alive(server.pid):
        _kill_group(server.pid)
    _forget(prefect_home)
    return server
