"""register.human_approval: the flow pauses before @champion moves; a person's answer, sent through Prefect's API as
the UI's form sends it, promotes the candidate or keeps the champion and tags the candidate with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from facerealism.mlops import tracking

from .conftest import cli_env
from .test_registry import GATE, GOOD, NAME, make_project, register_with

pytestmark = pytest.mark.slow  # a Prefect server and a flow run per answer


def answer_paused_run(api: str, seen: set[str], run_input: dict, proc: subprocess.Popen, timeout: float = 120) -> str:
    """Wait for a new paused run of facerealism-approval and resume it with `run_input` (POST .../resume)."""
    deadline = time.monotonic() + timeout
    query = {"flows": {"name": {"any_": ["facerealism-approval"]}},
             "flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}}
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the flow ended without pausing:\n{proc.communicate()[0][-3000:]}"
        runs = [r for r in httpx.post(f"{api}/flow_runs/filter", json=query).json() if r["id"] not in seen]
        if runs:
            run = runs[0]
            seen.add(run["id"])
            # The UI draws its form from the pause's input schema, which the flow saves just after it pauses: wait
            # for it as the form does (posting before it exists is rejected: "Run input schema not found").
            schema_key = run["state"]["state_details"]["run_input_keyset"]["schema"]
            while httpx.get(f"{api}/flow_runs/{run['id']}/input/{schema_key}").status_code != 200:
                assert time.monotonic() < deadline, "the paused run's input schema never appeared"
                time.sleep(0.2)
            # What the UI's form posts: the typed input of the pause, validated by the server against its schema.
            # A 503 is the server busy (its SQLite database locked on a loaded machine): the UI tries again too.
            for _ in range(10):
                r = httpx.post(f"{api}/flow_runs/{run['id']}/resume", json={"run_input": run_input})
                if r.status_code != 503:
                    break
                time.sleep(1.0)
            assert r.status_code == 201 and r.json()["status"] == "ACCEPT", r.text
            return run["id"]
        time.sleep(0.5)
    raise AssertionError("no paused facerealism-approval run appeared")


def run_approval_flow(root, cfg_overrides, api, seen, run_input) -> dict:
    env = cli_env()
    code = ("import json, sys; from flows.pipeline import approve; "
            "print('RESULT', json.dumps(approve('params.yaml', json.loads(sys.argv[1]))))")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(cfg_overrides)], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        answer_paused_run(api, seen, run_input, proc)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    return json.loads(out.rsplit("RESULT ", 1)[1].splitlines()[0])


def test_a_person_approves_one_candidate_and_rejects_the_next(tmp_path, monkeypatch):
    root = tmp_path / "project"
    cfg = make_project(root)
    monkeypatch.chdir(root)
    first = register_with(cfg, GOOD)  # unattended: v1 becomes champion
    assert first == {"version": "1", "promoted": True, "champion": "1"}

    cfg.register.human_approval = True
    held = register_with(cfg, {**GOOD, "fd_diff.spectral": 2.0})  # better, but held for a person
    client = tracking.setup(cfg).MlflowClient()
    assert held == {"version": "2", "promoted": False, "champion": "1"}
    assert client.get_model_version(NAME, "2").tags["approval.status"] == "pending"

    # the flow reads the same config as the stage: params.yaml plus the project's overrides
    overrides = [*GATE, "register.human_approval=true", "generate.size=32", "train.crop=32", "train.ngf=8",
                 "train.n_blocks=1", "benchmark.sizes=[32]", f"paths.data={root}/data", f"paths.models={root}/models",
                 f"paths.reports={root}/reports", f"paths.mlflow_uri=sqlite:///{root}/mlflow.db",
                 f"paths.mlflow_artifacts={root}/mlartifacts"]
    api, seen = cli_env()["PREFECT_API_URL"], set()
    approved = run_approval_flow(root, overrides, api, seen, {"approve": True, "reason": "skin reads as skin"})
    assert approved["promoted"] is True and approved["champion"] == "2"
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    assert json.loads((root / "reports/promotion.json").read_text())["approval"] == {
        "status": "approved", "reason": "skin reads as skin"}

    better = register_with(cfg, {**GOOD, "fd_diff.spectral": 3.0})
    assert better == {"version": "3", "promoted": False, "champion": "2"}
    rejected = run_approval_flow(root, overrides, api, seen, {"approve": False, "reason": "plastic skin on close-ups"})
    assert rejected["promoted"] is False and rejected["champion"] == "2"
    v3 = client.get_model_version(NAME, "3")
    assert v3.tags["approval.status"] == "rejected" and v3.tags["approval.reason"] == "plastic skin on close-ups"
    assert v3.tags["gate.passed"] == "rejected"
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "3"

    # Nothing waits any more: the flow returns at once without pausing.
    out = subprocess.run([sys.executable, "-c", "import json, sys; from flows.pipeline import approve; "
                          "print('RESULT', json.dumps(approve('params.yaml', json.loads(sys.argv[1]))))",
                          json.dumps(overrides)], cwd=root, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout.rsplit("RESULT ", 1)[1].splitlines()[0]) == {"asked": False}, out.stderr[-2000:]
