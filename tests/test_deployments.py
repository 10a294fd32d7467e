"""prefect.yaml against a real `prefect server` on a throwaway PostgreSQL database: deploy, run by a worker, data recorded."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from facerealism.bench import servers
from facerealism.mlops import lineage

from .conftest import ROOT, cli_env, write_tiny_params

POOL = "facerealism-process"


def sh(args, cwd, env=None, timeout=600, ok=True) -> subprocess.CompletedProcess:
    res = subprocess.run(args, cwd=cwd, env=env or cli_env(), capture_output=True, text=True, timeout=timeout)
    if ok:
        assert res.returncode == 0, f"{args} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _postgres_available() -> bool:
    try:
        import asyncpg  # noqa: F401  (Prefect's PostgreSQL driver)

        servers.drop_postgres_db(servers.create_postgres_db(prefix="probe"))
        return True
    except (ImportError, ConnectionError):  # SQLite still exercises every deployment path
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = servers.start_prefect_server(tmp_path_factory.mktemp("prefect-home"), postgres=_postgres_available())
    yield srv
    servers.stop_prefect_server(srv)
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


def test_prefect_yaml_declares_the_schedules_and_entrypoints_that_exist():
    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deps = {d["name"]: d for d in doc["deployments"]}
    assert deps["nightly"]["schedules"][0]["cron"] == "0 2 * * *"
    assert deps["weekly"]["schedules"][0]["cron"].endswith("* * 6")
    assert "schedules" not in deps["on-demand"]
    for d in deps.values():
        assert d["work_pool"]["name"] == POOL
        path, func = d["entrypoint"].split(":")
        if path == "flows/sweep.py" and not (ROOT / path).exists():
            continue  # written by another part of the project; deployed with --all once it exists
        assert f"def {func}(" in (ROOT / path).read_text(), d["entrypoint"]


def test_infra_compose_and_cluster_files_are_consistent():
    compose = yaml.safe_load((ROOT / "infra/docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "minio", "prefect-server", "prefect-worker", "mlflow", "dask-scheduler", "dask-worker"} <= set(services)
    for name, svc in services.items():
        needed = svc.get("depends_on") or []
        for dep in (needed if isinstance(needed, list) else needed.keys()):
            assert dep in services, f"{name} depends on undefined service {dep}"
        for vol in svc.get("volumes") or []:
            source = vol.split(":")[0]
            assert source.startswith(".") or source in compose["volumes"], f"{name}: undefined volume {source}"
            if source.startswith("."):
                assert (ROOT / "infra" / source).exists(), f"{name}: missing file {source}"
        build = svc.get("build")
        if build:
            assert (ROOT / "infra" / build["context"] / build["dockerfile"]).exists()
    worker = services["prefect-worker"]
    assert POOL in worker["command"] and "prefect.yaml" in worker["command"]
    assert worker["environment"]["PREFECT_API_URL"].startswith("http://prefect-server:")
    assert "dask-scheduler:8786" in services["dask-worker"]["command"]
    # The databases the servers connect to are the ones the init script creates.
    init = (ROOT / "infra/postgres-init.sql").read_text()
    assert "CREATE DATABASE prefect" in init and "/prefect" in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert "CREATE DATABASE mlflow" in init and "/mlflow" in services["mlflow"]["command"]
    dask = yaml.safe_load((ROOT / "infra/dask-cluster.yaml").read_text())
    assert dask["kind"] == "DaskCluster" and dask["spec"]["worker"]["replicas"] >= 1
    # Both worker manifests carry the render-worker settings of the flow's own local cluster.
    from facerealism.orchestration.scaleout import dask_env

    pod_env = {e["name"]: e["value"] for e in dask["spec"]["worker"]["spec"]["containers"][0]["env"]}
    assert dask_env().items() <= pod_env.items()
    assert dask_env().items() <= services["dask-worker"]["environment"].items()
    assert services["dask-worker"]["environment"]["PREFECT_API_URL"] == worker["environment"]["PREFECT_API_URL"]


@pytest.mark.slow
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
    (project / ".gitignore").write_text("/mlflow.db\n/mlflow.promotion.lock\n/mlartifacts/\n/.prefect/\n")
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
    assert lineage.dvc_status_clean(project)
    assert json.loads(sh(["dvc", "status", "-c", "--json"], project).stdout or "{}") == {}
    locked = lineage.lock_hashes(project)

    # The registered version's training run names the very data dvc.lock recorded.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project}/mlflow.db", registry_uri=f"sqlite:///{project}/mlflow.db")
    tags = client.get_run(client.get_model_version("facerealism-head", "1").run_id).data.tags
    assert tags["data.pairs.md5"] == locked["data/pairs"] and tags["data.validated.md5"] == locked["data/validated.parquet"]
    assert tags["git_commit"] == sh(["git", "rev-parse", "HEAD"], project).stdout.strip()

    # The next night on the same data: DVC finds every stage up to date, so nothing reruns and no second version
    # of the same candidate is registered; @champion stays on v1 and dvc.lock still describes the workspace.
    second_id = run_deployment("facerealism-pipeline/nightly", {}, project, env)
    sh(["prefect", "worker", "start", "--pool", POOL, "--run-once"], tmp_path, env)
    state = flow_run(server, second_id).state
    assert state.type.value == "COMPLETED", state.message
    assert [str(mv.version) for mv in client.search_model_versions("name='facerealism-head'")] == ["1"]
    assert str(client.get_model_version_by_alias("facerealism-head", "champion").version) == "1"
    promotion = json.loads((project / "reports/promotion.json").read_text())
    assert (promotion["version"], promotion["promoted"], promotion["champion"]) == ("1", True, "1")
    assert lineage.dvc_status_clean(project)
    assert json.loads(sh(["dvc", "status", "-c", "--json"], project).stdout or "{}") == {}
    assert lineage.lock_hashes(project)["data/pairs"] == locked["data/pairs"]  # finished pairs were not rendered again

    # The on-demand deployment enhances a folder with the pinned version, in the worker's checkout.
    from PIL import Image

    (project / "in").mkdir()
    Image.new("RGB", (40, 32), (120, 90, 70)).save(project / "in/a.png")
    enhance_id = run_deployment("facerealism-enhance/on-demand",
                                {"inputs": ["in"], "out": "out", "model": "models:/facerealism-head/1"}, project, env)
    sh(["prefect", "worker", "start", "--pool", POOL, "--run-once"], tmp_path, env)
    state = flow_run(server, enhance_id).state
    assert state.type.value == "COMPLETED", state.message
    assert Image.open(project / "out/a.png").size == (40, 32)
    shutil.rmtree(project / "in")
    shutil.rmtree(project / "out")

    # A teammate's fresh clone: pull, nothing to rerun; and the model's data recovered from its tags alone.
    # dvc.lock plus the uncached metrics beside it (DVC's .gitignore files keep cached outputs out of git).
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-q", "-m", "nightly"], project)
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    sh(["dvc", "pull", "-q"], clone)
    assert "up to date" in sh(["dvc", "repro"], clone).stdout
    shutil.rmtree(clone / ".dvc/cache", ignore_errors=True)  # recover from the remote, not the local cache
    restored = lineage.data_for("models:/facerealism-head/1", "recovered/v1", tracking_uri=f"sqlite:///{project}/mlflow.db",
                            project=clone)
    assert lineage.content_hash(restored["pairs"]) == locked["data/pairs"]

    # The cron schedule is on the server.
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as c:
        nightly = c.read_deployment_by_name("facerealism-pipeline/nightly")
    assert [s.schedule.cron for s in nightly.schedules] == [yaml.safe_load((ROOT / "prefect.yaml").read_text())
                                                            ["deployments"][0]["schedules"][0]["cron"]]


def test_rollback_survives_the_next_settle_of_champion(tmp_path):
    """Moving @champion alone would be undone by the register stage's settle; the rollback withdraws newer winners."""
    import mlflow

    from facerealism.config import load_config
    from facerealism.mlops import registry
    from facerealism.mlops.registry import settle_champion

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = "facerealism-head"
    cfg = load_config(ROOT / "params.yaml")
    client.create_registered_model(name)
    for value in (1.0, 2.0, 3.0):
        mv = client.create_model_version(name, source=str(tmp_path))
        client.set_model_version_tag(name, mv.version, "gate.passed", "True")
        client.set_model_version_tag(name, mv.version, f"metric.{cfg.register.champion_metric}", str(value))
    client.set_registered_model_alias(name, "champion", "3")

    assert registry.rollback_champion(name, "2", "artifacts on dark skin", tracking_uri=uri) == "3"
    assert settle_champion(client, cfg, name) == "2"  # what the next nightly's register stage does
    assert client.get_model_version(name, "3").tags["rollback.reason"] == "artifacts on dark skin"
    with pytest.raises(ValueError, match="never passed the gate"):
        registry.rollback_champion(name, "3", "x", tracking_uri=uri)
    with pytest.raises(ValueError, match="version 9"):
        registry.rollback_champion(name, "9", "x", tracking_uri=uri)
