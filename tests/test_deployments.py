"""prefect.yaml against a real `prefect server` on a throwaway PostgreSQL database: deploy, run by a worker, data recorded."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from facerealism import ops

from .conftest import ROOT, cli_env, write_tiny_params

pytestmark = pytest.mark.slow

POOL = "facerealism-process"


def sh(args, cwd, env=None, timeout=600, ok=True) -> subprocess.CompletedProcess:
    res = subprocess.run(args, cwd=cwd, env=env or cli_env(), capture_output=True, text=True, timeout=timeout)
    if ok:
        assert res.returncode == 0, f"{args} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _postgres_available() -> bool:
    try:
        import asyncpg  # noqa: F401  (Prefect's PostgreSQL driver)

        from facerealism import servers

        servers.drop_postgres_db(servers.create_postgres_db(prefix="probe"))
        return True
    except (ImportError, ConnectionError):  # SQLite still exercises every deployment path
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ops.start_prefect_server(tmp_path_factory.mktemp("prefect-home"), postgres=_postgres_available())
    yield srv
    ops.stop_prefect_server(srv)
    if srv.database:
        import psycopg2

        with psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres") as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (srv.database.rsplit("/", 1)[1],))
            assert cur.fetchone() is None, "the throwaway database was not dropped"


def flow_run(server, run_id: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def run_deployment(name: str, params: dict, project, env) -> str:
    res = sh(["prefect", "deployment", "run", name, "--params", json.dumps(params)], project, env)
    return re.search(r"UUID: ([0-9a-f-]{36})", res.stdout).group(1)


def test_nightly_deployment_runs_on_a_worker_and_records_its_data(server, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    for tree in ("src", "flows"):
        shutil.copytree(ROOT / tree, project / tree, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("dvc.yaml", "prefect.yaml"):
        shutil.copy(ROOT / name, project / name)
    write_tiny_params(project)
    for args in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"], ["git", "config", "user.name", "t"],
                 ["dvc", "init", "-q"], ["dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")]):
        sh(args, project)
    (project / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n/.prefect/\n")
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-q", "-m", "project"], project)

    env = {**server.env(), "PATH": cli_env()["PATH"], "FACEREALISM_PROJECT": str(project), "OMP_NUM_THREADS": "1"}
    sh(["prefect", "work-pool", "create", POOL, "--type", "process"], project, env)
    names = ["--all"] if (ROOT / "flows/sweep.py").exists() else ["-n", "nightly", "-n", "on-demand"]
    sh(["prefect", "--no-prompt", "deploy", *names, "--prefect-file", str(project / "prefect.yaml")], project, env)

    # A missing required parameter is refused by the server, naming the parameter.
    bad = sh(["prefect", "deployment", "run", "facerealism-enhance/on-demand"], project, env, ok=False)
    assert bad.returncode != 0 and "'inputs' is a required property" in " ".join((bad.stdout + bad.stderr).split())
    # An invalid override fails the run with the config's own message, and leaves no trace in dvc.lock.
    failed_id = run_deployment("facerealism-pipeline/nightly", {"overrides": ["train.nope=1"]}, project, env)
    sh(["prefect", "worker", "start", "--pool", POOL, "--run-once"], tmp_path, env)
    failed = flow_run(server, failed_id)
    assert failed.state.type.value == "FAILED" and "nope" in failed.state.message, failed.state.message
    assert not (project / "dvc.lock").exists()

    run_id = run_deployment("facerealism-pipeline/nightly", {}, project, env)
    sh(["prefect", "worker", "start", "--pool", POOL, "--run-once"], tmp_path, env)
    state = flow_run(server, run_id).state
    assert state.type.value == "COMPLETED", state.message

    # The last step recorded the outputs: dvc.lock matches the workspace, and the remote has every object.
    assert ops.dvc_status_clean(project)
    assert json.loads(sh(["dvc", "status", "-c", "--json"], project).stdout or "{}") == {}
    locked = ops.lock_hashes(project)

    # The registered version's training run names the very data dvc.lock recorded.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project}/mlflow.db", registry_uri=f"sqlite:///{project}/mlflow.db")
    tags = client.get_run(client.get_model_version("facerealism-head", "1").run_id).data.tags
    assert tags["data.pairs.md5"] == locked["data/pairs"] and tags["data.validated.md5"] == locked["data/validated.parquet"]
    assert tags["git_commit"] == sh(["git", "rev-parse", "HEAD"], project).stdout.strip()

    # A teammate's fresh clone: pull, nothing to rerun; and the model's data recovered from its tags alone.
    sh(["git", "add", "dvc.lock"], project)
    sh(["git", "commit", "-q", "-m", "nightly"], project)
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    sh(["dvc", "pull", "-q"], clone)
    assert "up to date" in sh(["dvc", "repro"], clone).stdout
    shutil.rmtree(clone / ".dvc/cache", ignore_errors=True)  # recover from the remote, not the local cache
    restored = ops.data_for("models:/facerealism-head/1", "recovered/v1", tracking_uri=f"sqlite:///{project}/mlflow.db",
                            project=clone)
    assert ops.content_hash(restored["pairs"]) == locked["data/pairs"]

    # The cron schedule is on the server.
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as c:
        nightly = c.read_deployment_by_name("facerealism-pipeline/nightly")
    assert [s.schedule.cron for s in nightly.schedules] == [yaml.safe_load((ROOT / "prefect.yaml").read_text())
                                                            ["deployments"][0]["schedules"][0]["cron"]]
