"""Each stage on the tiny profile, in order, in one temporary project; behaviour that could break."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facerealism.config import load_config
from facerealism.data.split import splits
from facerealism.orchestration import dag
from facerealism.stages import run_stage

from .conftest import ROOT, tiny_project


GRAPH = dag.stage_graph(ROOT)


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    """One tiny project shared by the tests below, in stage order; the set records the stages run in it."""
    root = tmp_path_factory.mktemp("proj")
    with tiny_project(root) as cfg:
        yield root, cfg, set()


def upstream(proj, stage: str):
    """Run the stages `stage` depends on that this project has not run yet, so each test also runs alone (-k)."""
    root, cfg, done = proj
    for name in GRAPH:  # dvc.yaml order is a topological order
        if name in dag.ancestors(GRAPH, stage) and name not in done:
            run_stage(name, cfg)
            done.add(name)
    done.add(stage)
    return root, cfg


def test_prompts_are_diverse_and_seeded(proj):
    root, cfg = upstream(proj, "prompts")
    out = run_stage("prompts", cfg)
    df = pd.read_parquet(root / "data/prompts.parquet")
    assert out["prompts"] == len(df) == 44
    enriched = df[df.template == "enriched"]
    assert enriched["region"].nunique() == 8 and set(enriched["gender"]) == {"female", "male"}
    assert enriched["prompt"].str.startswith("A professional portrait of ").all()
    assert (df[df.template == "baseline"]["prompt"] == "A professional business portrait").all()
    assert df["id"].is_unique and df["seed"].is_unique
    # Same seed, same prompts: the stage is reproducible.
    again = run_stage("prompts", cfg) and pd.read_parquet(root / "data/prompts.parquet")
    pd.testing.assert_frame_equal(df, again)


def test_generate_writes_pairs_and_resumes(proj):
    root, cfg = upstream(proj, "generate")
    out = run_stage("generate", cfg)
    m = pd.read_parquet(root / "data/pairs/manifest.parquet")
    assert out["pairs"] == len(m) == 44 and out["generated"] == 44
    assert {"id", "prompt", "seed", "schnell_path", "dev_path", "schnell_sha256", "backend", "params"} <= set(m.columns)
    assert (m.width == 32).all()
    # A crash between the two writes of a pair leaves a schnell image without its dev partner.
    victim = m.iloc[3]
    Path(victim.dev_path).unlink()
    before = {p: Path(p).stat().st_mtime_ns for p in m.schnell_path}
    out = run_stage("generate", cfg)
    assert out["generated"] == 1 and out["skipped"] == 43
    m2 = pd.read_parquet(root / "data/pairs/manifest.parquet")
    pd.testing.assert_frame_equal(m, m2)  # deterministic: the redone pair is identical
    untouched = [p for p in m.schnell_path if p != victim.schnell_path]
    assert all(Path(p).stat().st_mtime_ns == before[p] for p in untouched)


def test_validate_quarantines_a_corrupt_pair_and_gates(proj):
    root, cfg = upstream(proj, "validate")
    out = run_stage("validate", cfg)
    assert out["passed"] and out["quarantined"] == 0
    m = pd.read_parquet(root / "data/pairs/manifest.parquet")
    bad = Path(m.iloc[5].dev_path)
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[:40])  # a truncated PNG
    with pytest.raises(RuntimeError, match=r"expect_column_values_to_be_in_set\(dev_decodes\) x1$"):
        run_stage("validate", cfg)  # 1/44 > 2 %: the gate trips and names the expectation
    q = pd.read_parquet(root / "reports/quarantine.parquet")
    assert list(q["id"]) == [m.iloc[5].id] and "dev_decodes" in q.iloc[0].reasons
    loose = cfg.model_copy(deep=True)
    loose.validate_.max_failed_fraction = 0.1
    out = run_stage("validate", loose)
    assert out["passed"] and out["valid"] == 43
    assert m.iloc[5].id not in set(pd.read_parquet(root / "data/validated.parquet")["id"])
    bad.write_bytes(good_bytes)
    assert run_stage("validate", cfg)["valid"] == 44


def test_audit_reports_prompt_side_mix(proj):
    root, cfg = upstream(proj, "audit")
    out = run_stage("audit", cfg)
    report = json.loads((root / "reports/audit.json").read_text())
    enriched = report["templates"]["enriched"]
    assert abs(sum(enriched["region"].values()) - 1) < 1e-3
    assert enriched["region_entropy"] > 0.95 and out["diverse"]
    assert report["templates"]["baseline"]["region"] == {"unspecified": 1.0}
    # The bundled age/gender networks ran; the synthetic cartoons show them no face.
    a = report["face_attributes"]
    assert a["available"] is True and a["templates"]["enriched"]["faces"] == 0
    assert a["ethnicity"]["available"] is False and a["ethnicity"]["reason"]
    # Data-quality figures sit in MLflow beside the models.
    from facerealism.mlops import tracking

    mlflow = tracking.setup(cfg)
    for stage, artifact in (("validate", "validation.md"), ("audit", "audit_tsne.png")):
        runs = mlflow.search_runs(filter_string=f"tags.`facerealism.stage` = '{stage}'", output_format="list")
        assert runs, stage
        assert artifact in [a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id)]


def test_train_writes_a_self_describing_head(proj):
    root, cfg = upstream(proj, "train")
    out = run_stage("train", cfg)
    parts = splits(cfg)  # the test split is neither trained on nor monitored
    assert out["steps"] == 6 and (out["train_pairs"], out["validation_pairs"]) == (len(parts["train"]), len(parts["validation"]))
    assert out["train_pairs"] + out["validation_pairs"] + len(parts["test"]) == 44
    meta = json.loads((root / "models/head/head.json").read_text())
    assert meta["arch"] == "esa_resnet" and meta["config"]["train"]["steps"] == 6
    assert meta["kwargs"] == {"ngf": 8, "n_blocks": 1, "residual_output": True, "detail": True}  # the tiny profile's head
    assert meta["train_pairs"] == out["train_pairs"] and meta["mlflow_run_id"] == out["mlflow_run_id"]
    from facerealism.data.split import load_images
    from facerealism.head import enhance_array, load_head

    G, _ = load_head(root / "models/head")
    x = load_images(pd.read_parquet(root / "data/validated.parquet")["schnell_path"][:4])
    # Six steps moved the head off the identity it starts as (its last conv is zero-initialised).
    assert not np.array_equal(enhance_array(G, x), x)
    history = json.loads((root / "reports/train.json").read_text())["history"]
    assert [h["step"] for h in history] == [2, 4, 6]
    assert (root / "reports/train_samples.png").stat().st_size > 0


@pytest.mark.slow  # the whole evaluate stage, every space or control: the full layer
def test_evaluate_reports_every_offline_space(proj):
    root, cfg = upstream(proj, "evaluate")
    run_stage("evaluate", cfg)
    m = json.loads((root / "reports/metrics.json").read_text())
    for space in ("spectral", "random_conv"):
        assert np.isclose(m[f"fd_diff.{space}"], m[f"fd_enh_schnell.{space}"] - m[f"fd_enh_dev.{space}"])
        assert m[f"fd_schnell_dev.{space}"] > 0
    assert 0 <= m["c2st.dev_vs_schnell"] <= 1
    assert m["fid.available"] is False and "inception_weights" in m["fid.reason"]
    assert (root / "reports/before_after.png").exists()
    assert m["photo.colour_noise_gain"] > 0 and (root / "reports/photo.png").exists()


@pytest.mark.slow  # the whole evaluate stage, every space or control: the full layer
def test_evaluate_scores_every_control(proj):
    """Each configured control is a Table 4 row scored like a head, and stays out of the heads' ranking."""
    root, cfg = upstream(proj, "evaluate")
    run_stage("evaluate", cfg)
    t = json.loads((root / "reports/table4.json").read_text())
    want = [f"control: {name}" for name in cfg.evaluate.controls]
    assert want and [label for label in t["order"] if label.startswith("control: ")] == want
    for label in want:
        r = t["rows"][label]
        assert set(r["fd"]) == set(cfg.evaluate.spaces) and 0 <= r["c2st_vs_dev"] <= 1 and len(r["c2st_ci"]) == 2
    assert all(not h["head"].startswith("control: ") for h in t["ranking"]["heads"])


@pytest.mark.slow  # a Prefect flow, subprocesses or full-size FLOPs: the full layer
def test_benchmark_counts_flux_flops(proj):
    root, cfg = upstream(proj, "benchmark")
    out = run_stage("benchmark", cfg)
    b = json.loads((root / "reports/benchmark.json").read_text())
    assert b["flops"]["dev50_tflop"] > 10 * b["flops"]["schnell4_tflop"] / 4
    assert 80 < out["flops.cost_reduction_pct"] < 99
    assert b["head_speed"]["32"]["fp32"]["images_per_s"] > 0


def test_register_gate_and_champion(proj):
    root, cfg = upstream(proj, "register")
    out = run_stage("register", cfg)
    assert out["promoted"] and out["champion"] == out["version"] == "1"
    # The same candidate again is the same version: registering is idempotent.
    out = run_stage("register", cfg)
    assert out["version"] == "1" and out.get("reused") and out["champion"] == "1"
    # A candidate that scores no better than the champion (margin 0) is a new version that is not promoted.
    metrics_path = root / "reports/metrics.json"
    m = json.loads(metrics_path.read_text())
    metrics_path.write_text(json.dumps({**m, "fd_diff.spectral": m["fd_diff.spectral"] - 1.0}))
    out = run_stage("register", cfg)
    assert out["version"] == "2" and not out["promoted"] and out["champion"] == "1"
    decision = json.loads((root / "reports/promotion.json").read_text())
    assert any("does not beat champion" in r for r in decision["reasons"])


def test_gate_policy_unit():
    from facerealism.scoring.gate import gate

    cfg = load_config(ROOT / "params.yaml", ["register.required={fd_diff.spectral: 0.0, fd_diff.random_conv: 0.0}",
                                             "register.below={}"])
    ok = {"fd_diff.spectral": 2.0, "fd_diff.random_conv": 0.01, "photo.colour_noise_gain": 1.0,
          "photo.edge_overshoot": 1.0, "photo.clipped_gain": 0.0, "photo.flat_grain": 1.0}
    assert gate(cfg, ok, None)[0]
    assert not gate(cfg, {**ok, "photo.colour_noise_gain": 1.2}, None)[0]  # speckle on a photo
    assert not gate(cfg, {**ok, "fd_diff.random_conv": -0.01}, None)[0]
    passed, reasons = gate(cfg, {"fd_diff.spectral": 2.0}, None)
    assert not passed and any("missing" in r for r in reasons)
    assert not gate(cfg, ok, {"fd_diff.spectral": 3.0})[0]
    assert gate(cfg, ok, {"fd_diff.spectral": 1.0})[0]
