"""What a run records survives faults: a torn dvc.lock is restored, a failed `dvc push` stays owed, and a real HTTP
DVC remote behind a faulty proxy is retried to success where the fault is transient and never where it is not."""

from __future__ import annotations

import shutil

import pytest

from facerealism.config import load_config
from facerealism.errors import RemoteUnavailable, UserError
from facerealism.mlops import lineage
from facerealism.orchestration import dag

from .faultproxy import FaultProxy
from .httpstore import HTTPStore, dead_url
from .test_dag import prefect_server, tiny_dvc_project  # noqa: F401 - a fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def committed(tmp_path, monkeypatch):
    """A tiny DVC project whose prompts stage ran and was recorded by dag.commit: (project, cfg)."""
    tiny_dvc_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(tmp_path / "params.yaml")
    p = dag.plan(tmp_path / "params.yaml", [], project=tmp_path)
    dag.run_or_skip("prompts", cfg, p, log=lambda _: None)
    assert p.ran == ["prompts"] and dag.changes(tmp_path, "prompts") == []
    return tmp_path, cfg


def dvc_fails(project, *args) -> bool:
    return lineage.dvc(list(args), project, check=False).returncode != 0


def test_a_torn_dvc_lock_is_restored_from_the_last_good_copy(committed):
    project, _ = committed
    lock = project / "dvc.lock"
    good = lock.read_text()
    lines = []
    # Cut mid-YAML (DVC cannot read it: every later run fails), and mid-hash (DVC reads it and reruns everything).
    for cut, unreadable in ((good.index("md5:") + 3, True), (good.index("md5:") + 9, False)):
        lock.write_text(good[:cut])
        assert dvc_fails(project, "status") if unreadable else dag.changes(project, "prompts")
        p = dag.plan(project / "params.yaml", [], project=project, log=lines.append)
        assert p.incremental and lock.read_text() == good
        assert "dvc.lock is torn" in lines[-1] and dag.GOOD_LOCK in lines[-1]
        assert dag.changes(project, "prompts") == []  # recorded again: prompts is not rerun
    assert len(lines) == 2
    # A lock that parses is left alone, and nothing is logged.
    assert not dag.restore_torn_lock(project, log=lines.append) and len(lines) == 2


@pytest.fixture
def remote(committed, tmp_path_factory):
    """The committed project with a default `http` remote: a real file store behind a FaultProxy."""
    project, cfg = committed
    store = HTTPStore(tmp_path_factory.mktemp("store"))
    proxy = FaultProxy(("127.0.0.1", store.port))
    for args in (["remote", "add", "-d", "store", proxy.url], ["remote", "modify", "store", "read_timeout", "3"]):
        lineage.dvc(args, project)
    try:
        yield project, cfg, store, proxy
    finally:
        proxy.close()
        store.close()


def in_sync(project) -> bool:
    return "in sync" in lineage.dvc(["status", "-c"], project).stdout


def test_a_push_that_failed_stays_owed_until_a_later_run_pushes_it(remote):
    project, cfg, store, proxy = remote
    owed = project / dag.PUSH_OWED
    assert owed.exists()  # dag.commit recorded prompts: its output is owed to the remote
    url = dead_url()
    lineage.dvc(["remote", "modify", "store", "url", url], project)
    p = dag.plan(project / "params.yaml", [], project=project)
    p.ran = ["prompts"]
    with pytest.raises(RemoteUnavailable) as err:  # transient: the finish task retries it, then the run fails
        dag.finish(cfg, p)
    msg = str(err.value)
    assert "\n" not in msg and "remote 'store'" in msg and url in msg and "owed" in msg, msg
    assert owed.exists() and not store.files() and (project / "data/prompts.parquet").exists()

    # The next run finds every stage up to date, and still pushes what is owed.
    lineage.dvc(["remote", "modify", "store", "url", proxy.url], project)
    p = dag.plan(project / "params.yaml", [], project=project)
    assert dag.run_or_skip("prompts", cfg, p, log=lambda _: None) == {"up_to_date": True} and not p.ran
    assert dag.finish(cfg, p)["pushed"] and not owed.exists() and in_sync(project) and store.files()
    # Nothing owed: no push at all.
    assert not dag.finish(cfg, p)["pushed"]


@pytest.mark.slow
def test_the_finish_task_retries_a_flaky_remote_to_success_and_not_a_bad_config(remote, prefect_server,  # noqa: F811
                                                                                 monkeypatch):
    """DVC retries reads but not uploads (dvc-http's ReadOnlyRetryClient: one POST try): a 503, a reset and a
    stall on an upload fail `dvc push`; the pipeline's finish task retries each with Prefect's backoff."""
    from prefect import flow
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows import pipeline

    project, cfg, store, proxy = remote
    pushes = []
    real_dvc = lineage.dvc

    def counted(args, *a, **kw):
        pushes.extend(args[:1] if args[0] == "push" else [])
        return real_dvc(args, *a, **kw)

    monkeypatch.setattr(lineage, "dvc", counted)
    proxy.fail("POST", "/files/", "503")
    proxy.fail("POST", "/files/", "reset")
    proxy.fail("POST", "/files/", "stall", stall_s=5)  # past the remote's read_timeout of 3 s
    finish = pipeline.finish.with_options(retry_delay_seconds=0)

    @flow
    def push_once():
        return finish(cfg, dag.plan(project / "params.yaml", [], project=project), return_state=True)

    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
        state = push_once()
        assert state.is_completed() and state.result()["pushed"]
        assert [a for _, _, a in proxy.seen if a != "pass"] == ["503", "reset", "stall"]
        assert len(pushes) == 4 and in_sync(project) and not (project / dag.PUSH_OWED).exists()

        # A bad remote config is not retried: one push, a one-line error naming the remote, the push stays owed.
        (project / dag.PUSH_OWED).touch()
        shutil.rmtree(store.root / "files")  # so that the push has something to upload
        lineage.dvc(["remote", "modify", "store", "method", "PATCH"], project)  # dvc-http uploads by POST or PUT only
        pushes.clear()
        state = push_once(return_state=True)  # the flow fails with its task
    assert state.is_failed() and len(pushes) == 1 and (project / dag.PUSH_OWED).exists()
    with pytest.raises(UserError, match="remote 'store'") as err:
        state.result()
    assert not isinstance(err.value, ConnectionError) and "method has to be" in str(err.value)


def test_http_store_round_trip(tmp_path):
    """The store itself: a chunked POST lands whole, GET/HEAD read it back, a missing file is 404."""
    import requests

    store = HTTPStore(tmp_path)
    try:
        r = requests.post(store.url + "/a/b.bin", data=iter([b"x" * 70000, b"yz"]), timeout=10)  # chunked
        assert r.status_code == 200
        assert requests.get(store.url + "/a/b.bin", timeout=10).content == b"x" * 70000 + b"yz"
        assert requests.head(store.url + "/a/b.bin", timeout=10).headers["Content-Length"] == "70002"
        assert requests.head(store.url + "/nope", timeout=10).status_code == 404
    finally:
        store.close()
