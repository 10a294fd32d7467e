"""Faults: which errors are retried, and the register stage behind a proxy that fails requests to a real MLflow server."""

from __future__ import annotations

import http.client
import socket

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

from facerealism.bench import servers
from facerealism.errors import ConfigError, ValidationFailed
from facerealism.orchestration import retry

from .faultproxy import FaultProxy
from .test_registry import GOOD, NAME, make_project, register_with


def chained(outer: Exception, cause: Exception) -> Exception:
    try:
        raise outer from cause
    except Exception as e:  # noqa: BLE001
        return e


@pytest.mark.parametrize("exc", [
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError("timed out"),
    socket.timeout("read timed out"),
    http.client.RemoteDisconnected("Remote end closed connection without response"),
    requests.exceptions.ConnectionError("Max retries exceeded with url: /api/2.0/mlflow/runs/create"),
    MlflowException("API request to http://127.0.0.1:5000/api/2.0/mlflow/model-versions/create failed with "
                    "exception HTTPConnectionPool(...): Max retries exceeded (Caused by ResponseError('too many 503 "
                    "error responses'))"),
    MlflowException("temporarily", error_code=TEMPORARILY_UNAVAILABLE),
    chained(RuntimeError("stage failed"), ConnectionRefusedError(111, "Connection refused")),
])
def test_transient_errors_are_retried(exc):
    assert retry.is_transient(exc)


def http_error(status: int) -> requests.HTTPError:
    resp = requests.Response()
    resp.status_code = status
    return requests.HTTPError(f"{status} error", response=resp)


@pytest.mark.parametrize("status, transient", [(503, True), (502, True), (500, True), (429, True), (404, False),
                                               (400, False), (403, False)])
def test_http_status_decides(status, transient):
    assert retry.is_transient(http_error(status)) is transient


@pytest.mark.parametrize("exc", [
    ConfigError("train.steps: must be > 0"),
    ValueError("request timed out: no, a bad input whose message says timeout"),
    ValidationFailed("12 % of pairs failed validation (max 2 %)"),
    FileNotFoundError("missing input data/validated.parquet"),
    MlflowException("Registered model 'x' not found", error_code=RESOURCE_DOES_NOT_EXIST),
    MlflowException("Invalid value 'x' for parameter 'alias'", error_code=INTERNAL_ERROR),
    chained(ValueError("bad config"), ConnectionResetError()),  # our ValueError names the user's mistake
    KeyError("metric"),
])
def test_config_validation_and_bugs_are_not_retried(exc):
    assert not retry.is_transient(exc)


# --- the register stage behind a faulty proxy in front of a real `mlflow server` ---------------------

@pytest.fixture(scope="module")
def proxied_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    server = servers.start_tracking_server(f"sqlite:///{root}/server.db", root / "artifacts",
                                           log_path=root / "server.log", wait=150)
    proxy = FaultProxy(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    try:
        yield root, proxy
    finally:
        proxy.close()
        server.stop()


def versions(client) -> list:
    return sorted(client.search_model_versions(f"name='{NAME}'"), key=lambda mv: int(mv.version))


def champion(client) -> str:
    return str(client.get_model_version_by_alias(NAME, "champion").version)


@pytest.mark.slow
def test_register_under_faults_never_moves_champion_and_never_duplicates(proxied_server, monkeypatch):
    """503, reset and a stall past the client timeout on the calls that matter: each attempt fails clearly with a
    transient error, @champion stays, and the rerun (what a task retry does) finishes the same version."""
    import mlflow

    root, proxy = proxied_server
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")  # a loaded 2-core machine needs more than 3 s
    cfg = make_project(root / "project", mlflow_uri=proxy.url)
    monkeypatch.chdir(root / "project")
    client = mlflow.MlflowClient(tracking_uri=proxy.url, registry_uri=proxy.url)

    first = register_with(cfg, GOOD)
    assert first["promoted"] and first["champion"] == "1"
    # The same candidate again (a no-op rerun): no second version.
    again = register_with(cfg, GOOD)
    assert again == {"version": "1", "promoted": True, "champion": "1", "reused": True}
    assert len(versions(client)) == 1

    better = {**GOOD, "fd_diff.spectral": 2.0}
    # 1. 503 on creating the version: nothing is registered, the error is transient, champion stays.
    proxy.fail("POST", "/model-versions/create", "503")
    with pytest.raises(Exception) as e:
        register_with(cfg, better)
    assert retry.is_transient(e.value), e.value
    assert len(versions(client)) == 1 and champion(client) == "1"

    # 2. the champion cannot be read (503): the gate must not promote without comparing.
    proxy.fail("GET", "/registered-models/alias", "503")
    with pytest.raises(Exception) as e:
        register_with(cfg, better)
    assert retry.is_transient(e.value), e.value
    assert champion(client) == "1"
    undecided = versions(client)[-1]
    assert undecided.version == "2" and "gate.decided_at" not in undecided.tags  # registered, not decided

    # 3. connection reset while moving the alias: still version 1 as champion.
    proxy.fail("POST", "/registered-models/alias", "reset")
    with pytest.raises(Exception) as e:
        register_with(cfg, better)
    assert retry.is_transient(e.value), e.value
    assert champion(client) == "1" and len(versions(client)) == 2

    # 4. the rerun resumes version 2 instead of registering a third.
    done = register_with(cfg, better)
    assert done["version"] == "2" and done["promoted"] and champion(client) == "2"
    assert len(versions(client)) == 2

    # 5. a stall past the client timeout on creating a version: the server made it, the client never heard;
    #    the rerun finds it by its candidate key and finishes it: one version, not two.
    best = {**GOOD, "fd_diff.spectral": 3.0}
    proxy.fail("POST", "/model-versions/create", "stall", stall_s=12)
    with pytest.raises(Exception) as e:
        register_with(cfg, best)
    assert retry.is_transient(e.value), e.value
    assert champion(client) == "2"
    done = register_with(cfg, best)
    assert done["version"] == "3" and champion(client) == "3" and len(versions(client)) == 3
    assert [a for _, p, a in proxy.seen if a != "pass"] == ["503", "503", "reset", "stall"]

    # 6. a worse candidate behind no fault: decided, not promoted, champion stays.
    worse = register_with(cfg, {**GOOD, "fd_diff.spectral": 1.5})
    assert not worse["promoted"] and champion(client) == "3"


@pytest.mark.slow  # subprocesses or servers: the full layer, not the inner loop
def test_an_unreachable_dvc_remote_is_a_transient_error_and_a_bad_argument_is_not(tmp_path):
    import subprocess

    from facerealism.mlops import lineage

    from .conftest import cli_env

    for args in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(args, cwd=tmp_path, check=True, env=cli_env())
    (tmp_path / "a.txt").write_text("hi\n")
    lineage.dvc(["add", "-q", "a.txt"], tmp_path)
    lineage.dvc(["remote", "add", "-d", "r", f"http://127.0.0.1:{servers.free_port()}/store"], tmp_path)
    with pytest.raises(ConnectionError, match="dvc push") as e:
        lineage.dvc(["push"], tmp_path)
    assert retry.is_transient(e.value)
    with pytest.raises(ValueError, match="dvc nosuchcommand") as e:
        lineage.dvc(["nosuchcommand"], tmp_path)
    assert not retry.is_transient(e.value)


@pytest.mark.slow  # subprocesses or servers: the full layer, not the inner loop
def test_register_is_idempotent_per_candidate_and_finishes_an_undecided_version(tmp_path, monkeypatch):
    """SQLite store: the same candidate twice is one version; a version cut off before its decision is decided by
    the rerun, not registered again; another gate policy is another candidate."""
    import mlflow

    from facerealism.mlops import registry

    cfg = make_project(tmp_path / "p")
    monkeypatch.chdir(tmp_path / "p")
    client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri, registry_uri=cfg.paths.mlflow_uri)
    assert register_with(cfg, GOOD) == {"version": "1", "promoted": True, "champion": "1"}
    assert register_with(cfg, GOOD) == {"version": "1", "promoted": True, "champion": "1", "reused": True}
    better = {**GOOD, "fd_diff.spectral": 2.0}
    assert register_with(cfg, better)["version"] == "2"
    # Cut off mid-decision: no decision tag, champion moved back as if the alias write never happened.
    client.delete_model_version_tag(NAME, "2", registry.DECIDED_TAG)
    client.set_registered_model_alias(NAME, "champion", "1")
    done = register_with(cfg, better)
    assert done == {"version": "2", "promoted": True, "champion": "2"} and len(versions(client)) == 2
    assert registry.DECIDED_TAG in client.get_model_version(NAME, "2").tags
    cfg.register.margin_over_champion = 0.5
    assert register_with(cfg, better)["version"] == "3"
