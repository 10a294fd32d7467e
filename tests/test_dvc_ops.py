"""Data versioning: our hashes equal DVC's, dvc.lock is only written when honest, and a push -> clone -> pull round trip."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from PIL import Image

from facerealism.mlops import lineage

from .conftest import ROOT, cli_env, write_tiny_params


def sh(args, cwd, timeout=600) -> subprocess.CompletedProcess:
    res = subprocess.run(args, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{args} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def git_repo(path):
    sh(["git", "init", "-q"], path)
    sh(["git", "config", "user.email", "t@example.com"], path)
    sh(["git", "config", "user.name", "t"], path)
    sh(["dvc", "init", "-q"], path)


def test_content_hash_equals_dvc_for_a_folder_and_a_file(tmp_path):
    git_repo(tmp_path)
    folder = tmp_path / "pairs"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(folder / ("sub" if i else "") / f"{i}.png")
    (tmp_path / "table.parquet").write_bytes(b"not really parquet, but bytes are bytes\n")
    sh(["dvc", "add", "-q", "pairs", "table.parquet"], tmp_path)
    recorded = {p: yaml.safe_load((tmp_path / f"{p}.dvc").read_text())["outs"][0]["md5"] for p in ("pairs", "table.parquet")}
    assert lineage.content_hash(folder) == recorded["pairs"] and recorded["pairs"].endswith(".dir")
    assert lineage.content_hash(tmp_path / "table.parquet") == recorded["table.parquet"]
    # One changed byte anywhere in the folder changes the hash.
    (folder / "sub/1.png").write_bytes((folder / "sub/1.png").read_bytes() + b"\0")
    assert lineage.content_hash(folder) != recorded["pairs"]
    with pytest.raises(FileNotFoundError, match="nope"):
        lineage.content_hash(tmp_path / "nope")


def test_record_outputs_refuses_what_dvc_lock_would_misdescribe(tmp_path):
    write_tiny_params(tmp_path)
    assert "not a DVC repo" in lineage.record_outputs("params.yaml", [], project=tmp_path)["reason"]
    git_repo(tmp_path)
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    why = lineage._why_not_committable(tmp_path / "params.yaml", ["train.steps=3"], tmp_path)
    assert why and "train" in why
    shutil.copy(tmp_path / "params.yaml", tmp_path / "other.yaml")
    assert "dvc.yaml reads params.yaml" in lineage._why_not_committable(tmp_path / "other.yaml", [], tmp_path)
    # Where results are logged is not what is produced: the lock stays honest.
    loc = [f"paths.mlflow_uri=sqlite:///{tmp_path}/x.db", f"paths.mlflow_artifacts={tmp_path}/a"]
    assert lineage._why_not_committable(tmp_path / "params.yaml", loc, tmp_path) is None


@pytest.mark.slow
def test_push_clone_pull_is_up_to_date_and_metrics_diff(tmp_path):
    """prompts -> generate -> validate on the tiny profile: pushed, cloned, pulled, nothing to rerun; an experiment diffs."""
    src = tmp_path / "origin"
    src.mkdir()
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "dvc.yaml", src / "dvc.yaml")
    write_tiny_params(src)
    git_repo(src)
    remote = tmp_path / "remote"
    sh(["dvc", "remote", "add", "-d", "local", str(remote)], src)
    sh(["dvc", "repro", "validate"], src)
    sh(["dvc", "push", "-q"], src)
    sh(["git", "add", "-A"], src)
    sh(["git", "commit", "-q", "-m", "data"], src)
    locked = lineage.lock_hashes(src)
    assert locked["data/pairs"] == lineage.content_hash(src / "data/pairs")

    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(src), str(clone)], tmp_path)
    assert not (clone / "data/pairs").exists()
    sh(["dvc", "pull", "-q", "--with-deps", "validate"], clone)
    assert lineage.content_hash(clone / "data/pairs") == locked["data/pairs"]
    assert "up to date" in sh(["dvc", "repro", "validate"], clone).stdout

    # An experiment on a validate param reruns validate only, and `dvc metrics diff` reports against HEAD.
    out = sh(["dvc", "exp", "run", "-S", "validate.max_failed_fraction=0.9", "validate"], clone).stdout
    assert "Running stage 'validate'" in out and "Running stage 'generate'" not in out
    diff = json.loads(sh(["dvc", "metrics", "diff", "--json"], clone).stdout)
    changed = diff["reports/validation.json"]["max_failed_fraction"]
    assert (changed["old"], changed["new"]) == (0.02, 0.9), diff
    params_diff = json.loads(sh(["dvc", "params", "diff", "--json"], clone).stdout)
    changed = params_diff["params.yaml"]["validate.max_failed_fraction"]
    assert (changed["old"], changed["new"]) == (0.02, 0.9), params_diff
