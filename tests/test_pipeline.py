"""The whole DAG on the tiny profile through `dvc repro`, then consumers of @champion: `enhance` and the ratings.

The Prefect flow runs the same DAG end to end in tests/test_dag.py (killed in every stage, resumed, rerun) and
tests/test_deployments.py (a fresh project on a worker): one more whole run here would check nothing new.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from .conftest import ROOT, cli_env, write_tiny_params

pytestmark = pytest.mark.slow


def sh(args, cwd, timeout=900) -> subprocess.CompletedProcess:
    res = subprocess.run(args, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{args} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def enhance_with_champion_and_rate(tmp_path):
    # A consumer: enhance a folder with a good image, a grayscale one and a broken one via @champion.
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(inp / "a.png")
    Image.new("L", (36, 36), 128).save(inp / "gray.png")
    (inp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    res = sh(["facerealism", "enhance", "in", "--out", "out"], tmp_path)
    out = Image.open(tmp_path / "out/a.png")
    assert out.size == (40, 48) and out.mode == "RGB"
    assert Image.open(tmp_path / "out/gray.png").size == (36, 36)
    assert not (tmp_path / "out/broken.png").exists()
    assert "broken.png" in res.stderr
    # Existing outputs are kept unless --overwrite.
    before = (tmp_path / "out/a.png").stat().st_mtime_ns
    res = sh(["facerealism", "enhance", "in/a.png", "--out", "out"], tmp_path)
    assert "skipped 1 existing" in res.stdout and (tmp_path / "out/a.png").stat().st_mtime_ns == before

    # People rate the trained head: votes cast into the project's database (as the page stores them), then
    # `facerealism rate-results` adds them up into reports/ratings.json, the head's MLflow run and the report.
    votes_through_rate_results(tmp_path)


def votes_through_rate_results(project):
    import contextlib

    import mlflow

    from facerealism.config import load_config
    from facerealism.rating.trials import COMPARISONS, build_set, rater_order, read_set
    from facerealism.rating.votes import VoteStore

    with contextlib.chdir(project):  # the tiny params' paths are relative to the project
        cfg = load_config(project / "params.yaml")
        items = read_set(build_set(cfg))
        store = VoteStore(cfg.rate.database)
        for rater in ("ann", "bob"):  # each picks the comparison's first set: the head, or dev in an attention check
            for trial in rater_order(items["trials"], rater):
                assert store.cast(items["campaign"], rater, trial, COMPARISONS[trial["comparison"]].a)
        sh(["facerealism", "rate-results"], project)
        ratings = json.loads((project / "reports/ratings.json").read_text())
        assert ratings["raters"]["counted"] == 2 and ratings["comparisons"]
        for name, c in ratings["comparisons"].items():
            assert (c["raters"], c["preference"]) == (2, 1.0), (name, c)
        mlflow.set_tracking_uri(cfg.paths.mlflow_uri)  # relative to the project, like the stages' own
        metrics = mlflow.get_run(ratings["head_run_id"]).data.metrics
    assert {f"rating.{n}.preference" for n in ratings["comparisons"]} <= set(metrics)
    page = (project / "reports/report.html").read_text()
    assert "2 of 2 raters counted" in page and "No ratings yet" not in page


def test_dvc_repro_reruns_only_dependent_stages_then_champion_enhances_and_is_rated(tmp_path):
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params = write_tiny_params(tmp_path)
    sh(["git", "init", "-q"], tmp_path)
    sh(["dvc", "init", "-q"], tmp_path)
    first = sh(["dvc", "repro"], tmp_path).stdout
    for stage in ("prompts", "generate", "validate", "audit", "train", "evaluate", "benchmark", "register"):
        assert f"Running stage '{stage}'" in first
    assert "changed" not in sh(["dvc", "status"], tmp_path).stdout

    # Touch one stage's param: only that stage reruns.
    params.write_text(params.read_text().replace("repeats: 1", "repeats: 2"))
    second = sh(["dvc", "repro"], tmp_path).stdout
    assert "Running stage 'benchmark'" in second
    for stage in ("prompts", "generate", "validate", "train", "evaluate"):
        assert f"Running stage '{stage}'" not in second
    shown = json.loads(sh(["dvc", "metrics", "show", "--json"], tmp_path).stdout)[""]["data"]
    recorded = json.loads((tmp_path / "reports/metrics.json").read_text())
    assert shown["reports/metrics.json"]["data"]["fd_diff.spectral"] == recorded["fd_diff.spectral"]
    assert shown["reports/validation.json"]["data"]["passed"] is True

    promotion = json.loads((tmp_path / "reports/promotion.json").read_text())
    assert promotion["promoted"] and promotion["champion"] == "1"
    enhance_with_champion_and_rate(tmp_path)
