"""Local server processes on free localhost ports: MLflow tracking and model servers, a Dask cluster, a Prefect
server, throwaway Postgres databases (for tests, benchmarks and throwaway checks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from facerealism.orchestration.scaleout import dask_env


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _venv_bin(name: str) -> str:
    # The venv's command (mlflow, dask), not whatever is first on PATH.
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("OMP_NUM_THREADS", "1")
    # `mlflow models serve` execs `uvicorn` by name: the venv's bin must come first on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def group_members(pgid: int) -> list[int]:
    """PIDs still running (zombies excluded) in process group `pgid`, read from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            pids.append(int(stat.parent.name))
    return pids


@dataclass
class Server:
    """A started server process; `stop()` ends it and every child it forked (its own process group)."""

    proc: subprocess.Popen
    url: str
    log_path: Path
    health_path: str = "/health"
    _log: object = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def wait_healthy(self, timeout: float) -> None:
        """Poll the health endpoint until it answers 200; raise with the log tail if the process dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.url}: server exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + self.health_path, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"{self.url}: not healthy after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM the process group led by our PID, then SIGKILL whatever is left after `timeout`."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        # Workers share the group; kill stragglers that outlived the parent and wait until none is running.
        deadline = time.monotonic() + 10
        while group_members(self.proc.pid) and time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.1)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_process(cmd: list[str], port: int, health_path: str, env: dict | None = None,
                  log_path: str | Path | None = None, wait: float | None = 90.0) -> Server:
    """Start `cmd` in a new process group, logging to a file; optionally wait for its health endpoint.

    Args:
        cmd: the command; it must listen on 127.0.0.1:port.
        health_path: a GET path answering 200 once the server is ready.
        wait: seconds to wait for health; None returns at once (call `wait_healthy` later, e.g. to start
            several servers in parallel).
    """
    if log_path is None:
        log_path = Path(tempfile.mkdtemp(prefix="facerealism-server-")) / "server.log"
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(env), start_new_session=True)
    server = Server(proc, f"http://127.0.0.1:{port}", log_path, health_path, log)
    if wait is not None:
        server.wait_healthy(wait)
    return server


def start_tracking_server(backend_store_uri: str, artifacts_dir: str | Path, port: int | None = None,
                          log_path: str | Path | None = None, wait: float | None = 90.0) -> Server:
    """`mlflow server` (tracking + registry + proxied artifacts) on 127.0.0.1; its URL is `server.url`."""
    port = port or free_port()
    cmd = [_venv_bin("mlflow"), "server", "--backend-store-uri", backend_store_uri,
           "--artifacts-destination", str(Path(artifacts_dir).resolve()),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return start_process(cmd, port, "/health", log_path=log_path, wait=wait)


def start_model_server(model_uri: str, tracking_uri: str | None = None, port: int | None = None,
                       log_path: str | Path | None = None, wait: float | None = 90.0) -> Server:
    """`mlflow models serve --env-manager local` for one model; POST `server.url + "/invocations"`."""
    port = port or free_port()
    cmd = [_venv_bin("mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    env = {"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri} if tracking_uri else None
    return start_process(cmd, port, "/ping", env=env, log_path=log_path, wait=wait)


@dataclass
class DaskCluster:
    """`dask scheduler` + one `dask worker --nworkers 1 --nthreads 1` per worker, each in its own process group: the
    long-lived layout of infra/dask-cluster.yaml (one worker per GPU) on this machine."""

    scheduler: Server
    workers: list[Server]
    address: str  # tcp://127.0.0.1:PORT, for generate.dask_address / FACEREALISM_DASK_ADDRESS

    def stop(self) -> None:
        for s in (*self.workers, self.scheduler):
            s.stop()

    def __enter__(self) -> "DaskCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_dask_cluster(n_workers: int, env: dict | None = None, log_dir: str | Path | None = None,
                       wait: float = 120.0) -> DaskCluster:
    """Start a scheduler and `n_workers` single-threaded worker processes; return once all have registered.

    Args:
        env: extra environment for the workers (e.g. PREFECT_API_URL, so their task runs report to a known server);
            they get scaleout.RENDER_WORKER_DASK_CONFIG too.
        log_dir: where scheduler.log and worker-N.log go (a temporary folder by default).
    """
    from distributed import Client

    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="facerealism-dask-"))
    dask = _venv_bin("dask")
    port, http = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = start_process([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", f"127.0.0.1:{http}"], http, "/health",
                              log_path=log_dir / "scheduler.log", wait=wait)
    workers = []
    try:
        for i in range(n_workers):
            http = free_port()
            workers.append(start_process([dask, "worker", address, "--nworkers", "1", "--nthreads", "1",
                                          "--host", "127.0.0.1", "--dashboard-address", f"127.0.0.1:{http}"],
                                         http, "/health", env={**dask_env(), **(env or {})},
                                         log_path=log_dir / f"worker-{i}.log", wait=None))
        for w in workers:
            w.wait_healthy(wait)
        with Client(address, timeout=wait) as client:
            client.wait_for_workers(n_workers, timeout=wait)
    except BaseException:
        DaskCluster(scheduler, workers, address).stop()
        raise
    return DaskCluster(scheduler, workers, address)


def create_postgres_db(host: str = "127.0.0.1", port: int = 5432, user: str = "postgres",
                       prefix: str = "facerealism") -> str:
    """Create a uniquely named database; returns its SQLAlchemy URI. Raises ConnectionError when unreachable."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg2.connect(host=host, port=port, user=user, dbname="postgres", connect_timeout=3)
    except psycopg2.OperationalError as e:
        raise ConnectionError(f"PostgreSQL at {host}:{port} (user {user}) is not reachable: "
                              f"{str(e).strip().splitlines()[0]}") from None
    conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"postgresql://{user}@{host}:{port}/{name}"


def drop_postgres_db(uri: str) -> None:
    """Drop a database made by `create_postgres_db`, ending any sessions still attached to it."""
    import psycopg2
    from urllib.parse import urlparse

    u = urlparse(uri)
    name = u.path.lstrip("/")
    conn = psycopg2.connect(host=u.hostname, port=u.port or 5432, user=u.username, dbname="postgres",
                            connect_timeout=3)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    conn.close()


# ---------------------------------------------------------------- a throwaway Prefect server
# Process handling and databases are the ones above, shared with the MLflow servers.


@dataclass
class PrefectServer:
    """A `prefect server start` this code started; stop it with `stop_prefect_server`."""

    server: Server
    home: Path
    database: str | None  # SQLAlchemy URI of the throwaway PostgreSQL database, dropped on stop; None: SQLite

    @property
    def api_url(self) -> str:
        return self.server.url + "/api"

    @property
    def pid(self) -> int:
        return self.server.pid

    def env(self) -> dict[str, str]:
        """Environment for clients (CLI, workers) of this server."""
        return {**os.environ, "PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(self.home),
                "DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def start_prefect_server(home: str | Path, postgres: bool = True, timeout: float = 120.0) -> PrefectServer:
    """Start `prefect server start` on a free localhost port, on a fresh PostgreSQL database (or SQLite).

    Args:
        home: PREFECT_HOME for the server; its log is `home/server.log`.
        postgres: use a throwaway database on the local PostgreSQL (127.0.0.1:5432, user postgres);
            False keeps Prefect's SQLite under `home`.
    Returns:
        The running server; raises TimeoutError/RuntimeError with the log's tail when it does not become healthy.
    """
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {"PREFECT_HOME": str(home), "DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_UI_ENABLED": "false"}
    database = create_postgres_db(prefix="prefect") if postgres else None
    if database:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database.replace("postgresql://", "postgresql+asyncpg://", 1)
    exe = Path(sys.executable).with_name("prefect")
    cmd = [str(exe), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    try:
        server = start_process(cmd, port, "/api/health", env=env, log_path=home / "server.log", wait=timeout)
    except (TimeoutError, RuntimeError):
        if database:
            drop_postgres_db(database)
        raise
    return PrefectServer(server, home, database)


def stop_prefect_server(prefect: PrefectServer) -> None:
    """Stop the server's process group (by the PID we started), then drop its throwaway database."""
    prefect.server.stop()
    if prefect.database:
        drop_postgres_db(prefect.database)
