"""Registry, promotion gate and model serving against real MLflow stores: SQLite, and `mlflow server` over HTTP."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from facerealism.bench import servers
from facerealism.config import load_config
from facerealism.files import write_json, write_parquet
from facerealism.head import enhance_array, load_head, save_head
from facerealism.mlops import registry, tracking
from facerealism.mlops.card import holdout_fingerprint
from facerealism.models import build_generator
from facerealism.scoring.gate import gate
from facerealism.stages import register

from .conftest import ROOT, cli_env

NAME = "facerealism-head"
GOOD = {"fd_diff.spectral": 1.0, "fd_diff.random_conv": 0.01, "photo.colour_noise_gain": 0.9,
        "photo.edge_overshoot": 1.0, "photo.clipped_gain": 0.0, "photo.flat_grain": 1.0}
# The registry mechanics are tested under a two-threshold gate; the default gate's metrics and its controls
# are tested on real Table 4 rows in test_realism_gate.py.
GATE = ["register.required={fd_diff.spectral: 0.0, fd_diff.random_conv: 0.0}", "register.below={}",
        "register.check_controls=false", "register.must_beat_fitted=false"]


def make_project(root: Path, mlflow_uri: str | None = None):
    """A project holding what `register` reads: validated ids, a tiny perturbed head, metrics and a benchmark."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    uri = mlflow_uri or f"sqlite:///{root}/mlflow.db"
    overrides = ["generate.size=32", "train.crop=32", "train.ngf=8", "train.n_blocks=1", "benchmark.sizes=[32]",
                 f"paths.data={root}/data", f"paths.models={root}/models", f"paths.reports={root}/reports",
                 f"paths.mlflow_uri={uri}", f"paths.mlflow_artifacts={root}/mlartifacts", *GATE]
    cfg = load_config(root / "params.yaml", overrides)
    write_parquet(root / "data/validated.parquet", pd.DataFrame({"id": [f"pair{i:03d}" for i in range(40)]}))
    torch.manual_seed(0)
    kwargs = {"ngf": 8, "n_blocks": 1, "residual_output": True}
    G = build_generator("esa_resnet", **kwargs)
    with torch.no_grad():  # a fresh residual head is the identity; perturb it so outputs prove which weights ran
        for p in G.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_head(G, root / "models/head", "esa_resnet", kwargs, {"config": cfg.dump()})
    write_json(root / "reports/benchmark.json", {"head_speed": {"32": {"fp32": {"images_per_s": 40.0}}}})
    return cfg


def register_with(cfg, metrics: dict) -> dict:
    write_json(Path(cfg.paths.reports) / "metrics.json", metrics)
    return register.run(cfg)


def png_b64(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def decode_b64(value: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(value))).convert("RGB"))


def sample_image() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (36, 44, 3), dtype=np.uint8)


# --- the gate's policy ----------------------------------------------------------------------

def table_row(fd_diff: float, c2st: float, ci: tuple[float, float]) -> dict:
    """One Table 4 row as evaluate writes it, with only what the gate reads filled in."""
    off = {"available": False, "reason": "not computed"}
    fd = {s: {"fd_schnell": 1.0 + fd_diff, "fd_dev": 1.0, "fd_diff": fd_diff, "fd_diff_ci": [fd_diff - 0.1, fd_diff + 0.1]}
          for s in ("spectral", "spectral_chroma", "random_conv")}
    return {"fd": fd, "c2st_vs_dev": c2st, "c2st_ci": list(ci), "c2st_auc": c2st, "ssim": off, "lpips": off,
            "identity": off, "fid": off, "fd_dinov2": off, "cmmd": off,
            "c2st_runs": {"runs": [c2st], "worst": c2st, "best": c2st, "worst_ci_high": ci[1]},
            "placement": {"gain": fd_diff, "ci": [fd_diff - 0.1, fd_diff + 0.1], "share": 0.0, "n": 1},
            "halo_vs_dev": 1.0}


def write_table(cfg, control: dict, dev: dict) -> None:
    """reports/table4.json with schnell, the dev check row and one control."""
    rows = {"FLUX.1-schnell": table_row(-2.0, 1.0, (0.95, 1.0)), "FLUX.1-dev": dev, "control: RGB noise σ16": control}
    write_json(Path(cfg.paths.reports) / "table4.json", {"rows": rows, "order": list(rows)})


SOUND = dict(control=table_row(-1.0, 1.0, (0.95, 1.0)), dev=table_row(2.0, 0.52, (0.4, 0.64)))
FITTED = {"fitted.best": "fitted: detail gains", "c2st.dev_vs_fitted": 0.9, "c2st.dev_vs_fitted_ci_low": 0.85,
          "c2st.dev_vs_fitted_ci_high": 0.94}


def test_the_safety_net_blocks_promotion_where_it_acts(tmp_path, monkeypatch):
    """register with the suite check on: a control that passes the gate, a dev check that fails it, and a head that
    does not beat the best fitted baseline each leave @champion where it was and say why in promotion.json."""
    root = tmp_path / "net"
    cfg = make_project(root)
    monkeypatch.chdir(root)
    cfg.register.check_controls, cfg.register.must_beat_fitted = True, True
    client = tracking.setup(cfg).MlflowClient()
    good = {**GOOD, **FITTED, "c2st.dev_vs_enhanced_ci_high": 0.8}

    def attempt(metrics: dict, **table) -> tuple[dict, list[str]]:
        write_table(cfg, **{**SOUND, **table})
        out = register_with(cfg, metrics)
        decision = json.loads((root / "reports/promotion.json").read_text())
        assert str(client.get_model_version_by_alias(NAME, "champion").version) == decision["champion"]
        return out, decision["reasons"]

    out, reasons = attempt(good)
    assert out == {"version": "1", "promoted": True, "champion": "1"}, reasons
    better = {**good, "fd_diff.spectral": 5.0}  # would replace the champion on every other count

    out, reasons = attempt(better, control=table_row(3.0, 1.0, (0.95, 1.0)))
    assert out == {"version": "2", "promoted": False, "champion": "1"}
    assert "the metric suite is fooled by control: RGB noise σ16: it passes the gate: fail" in reasons

    # The dev check sample (other test pairs' dev images) blurred: nearer schnell than dev.
    out, reasons = attempt({**better, "fd_diff.random_conv": 0.02}, dev=table_row(-1.5, 0.97, (0.93, 0.99)))
    assert out == {"version": "3", "promoted": False, "champion": "1"}
    assert any(r.startswith("FLUX.1-dev itself (an independent sample of test dev images) fails the gate") for r in reasons)

    out, reasons = attempt({**better, "c2st.dev_vs_enhanced_ci_high": 0.88})  # CIs overlap the fitted baseline's
    assert out == {"version": "4", "promoted": False, "champion": "1"}
    assert any("does not beat a filter fitted to the training pairs (the best that passes the photo rules), so the "
               "head is not promoted: fail" in r for r in reasons)
    assert all(client.get_model_version(NAME, v).tags["gate.passed"] == "False" for v in "234")

    out, reasons = attempt(better)  # the same head once the suite is sound and it beats the fitted baselines
    assert out == {"version": "5", "promoted": True, "champion": "5"}, reasons
    assert any("the head beats the best fitted baseline that passes the photo rules: ok" in r for r in reasons)

def test_gate_thresholds_throughput_and_split():
    cfg = load_config(ROOT / "params.yaml", ["benchmark.sizes=[32]", *GATE])
    fast = {"head_speed": {"32": {"fp32": {"images_per_s": 10.0}}}}
    assert gate(cfg, GOOD, None, fast)[0]
    passed, reasons = gate(cfg, {"fd_diff.spectral": 1.0}, None, fast)
    assert not passed and any("fd_diff.random_conv is missing" in r for r in reasons)
    slow = {"head_speed": {"32": {"fp32": {"images_per_s": 0.1}}}}
    passed, reasons = gate(cfg, GOOD, None, slow)
    assert not passed and any("below the floor" in r for r in reasons)
    passed, reasons = gate(cfg, GOOD, None, {"head_speed": {"64": {"fp32": {"images_per_s": 9.0}}}})
    assert not passed and any("no fp32 images/s at 32px" in r for r in reasons)
    # A champion scored on another split is not compared (absolute_only) or blocks promotion (fail).
    better_champ = {"fd_diff.spectral": 5.0}
    assert not gate(cfg, GOOD, better_champ, fast)[0]
    passed, reasons = gate(cfg, GOOD, better_champ, fast, split_changed=True)
    assert passed and any("another held-out split" in r for r in reasons)
    cfg.register.on_split_change = "fail"
    assert not gate(cfg, GOOD, better_champ, fast, split_changed=True)[0]
    # The champion metric itself missing from the candidate fails even when required metrics pass.
    cfg.register.required = {}
    assert not gate(cfg, {"fd_diff.random_conv": 1.0}, {"fd_diff.spectral": 0.1}, fast)[0]


def test_gate_needs_the_margin_over_the_champion():
    cfg = load_config(ROOT / "params.yaml", ["benchmark.sizes=[32]", "register.margin_over_champion=0.5", *GATE])
    champion = {"fd_diff.spectral": 1.0}
    passed, reasons = gate(cfg, {**GOOD, "fd_diff.spectral": 1.4}, champion)
    assert not passed and "fd_diff.spectral = 1.4 does not beat champion's 1 + margin 0.5: fail" in reasons
    passed, reasons = gate(cfg, {**GOOD, "fd_diff.spectral": 1.6}, champion)
    assert passed and "fd_diff.spectral = 1.6 beats champion's 1 + margin 0.5: ok" in reasons
    assert not gate(cfg, {**GOOD, "fd_diff.spectral": 1.5}, champion)[0]  # a tie is not a win


# --- SQLite registry: worse candidate, better candidate, fresh-process load, serving -----------

@pytest.fixture(scope="module")
def sqlite_registry(tmp_path_factory):
    """Three registrations in one project: good (v1), worse (v2), better (v3)."""
    root = tmp_path_factory.mktemp("registry")
    cfg = make_project(root)
    old = os.getcwd()
    os.chdir(root)
    try:
        results = [register_with(cfg, GOOD),
                   register_with(cfg, {**GOOD, "fd_diff.spectral": 0.5}),
                   register_with(cfg, {**GOOD, "fd_diff.spectral": 2.0})]
        yield root, cfg, results
    finally:
        os.chdir(old)


def test_worse_candidate_keeps_champion_and_better_one_moves_it(sqlite_registry):
    root, cfg, (first, worse, better) = sqlite_registry
    assert first == {"version": "1", "promoted": True, "champion": "1"}
    assert worse == {"version": "2", "promoted": False, "champion": "1"}
    assert better == {"version": "3", "promoted": True, "champion": "3"}
    client = tracking.setup(cfg).MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "3"
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "3"
    v2 = client.get_model_version(NAME, "2")
    assert v2.tags["gate.passed"] == "False" and "does not beat champion's 1" in v2.tags["gate.reasons"]
    assert v2.tags["metric.fd_diff.spectral"] == "0.5"
    fingerprints = {client.get_model_version(NAME, v).tags[registry.SPLIT_TAG] for v in "123"}
    assert len(fingerprints) == 1 and len(fingerprints.pop()) == 16
    decision = json.loads((root / "reports/promotion.json").read_text())
    assert decision["previous_champion"] == "1" and decision["champion"] == "3"
    assert decision["data_version"].startswith("sha256:")


def test_model_card_safetensors_and_no_pickle(sqlite_registry):
    root, cfg, _ = sqlite_registry
    mlflow = tracking.setup(cfg)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=str(root / "dl")))
    files = [p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()]
    assert "artifacts/head/head.safetensors" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth"))], files
    card = (local / "artifacts/README.md").read_text()
    assert "| fd_diff.spectral | 2 |" in card and "holdout_fingerprint" in card and "data_version" in card
    assert "git_commit" in card and "min_images_per_s: 0.5" in card  # the resolved config is in the card
    mv = mlflow.MlflowClient().get_model_version(NAME, "3")
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    for side in ("inputs", "outputs"):
        assert [(c["name"], c["type"]) for c in json.loads(mlmodel["signature"][side])] == [("image", "string")]
    assert mlmodel["metadata"]["holdout_fingerprint"] == mv.tags[registry.SPLIT_TAG]
    example = json.loads((local / "serving_input_example.json").read_text())["dataframe_split"]
    assert example["columns"] == ["image"] and decode_b64(example["data"][0][0]).shape == (32, 32, 3)
    assert mv.description.startswith(f"# {NAME}") and mv.tags["data.version"].startswith("sha256:")


def test_the_card_and_config_describe_the_head_as_trained_not_the_config_register_runs_with(tmp_path):
    cfg = make_project(tmp_path)
    trained = load_config(tmp_path / "params.yaml", ["train.lr=0.000123", "seed=7"]).dump()
    meta = json.loads((tmp_path / "models/head/head.json").read_text())
    meta.update(config=trained, resume_changes={"train.steps": [1000, 1500]}, resumed_from_step=750)
    write_json(tmp_path / "models/head/head.json", meta)
    register_with(cfg, GOOD)
    mlflow = tracking.setup(cfg)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1", dst_path=str(tmp_path / "dl")))
    assert json.loads((local / "artifacts/config.json").read_text()) == trained
    card = (local / "artifacts/README.md").read_text()
    trained_part, gate_part = card.split("## Training config")[1].split("## Gate")
    assert "lr: 0.000123" in trained_part and "seed: 7" in trained_part and "lr: 0.0005" not in trained_part
    assert "`train.steps`: 1000 -> 1500 (changed on resume at step 750)" in trained_part
    assert "min_images_per_s: 0.5" in gate_part


@pytest.mark.slow
def test_champion_loads_in_a_fresh_process(sqlite_registry, tmp_path):
    root, cfg, _ = sqlite_registry
    image = sample_image()
    Image.fromarray(image).save(tmp_path / "x.png")
    code = ("import mlflow, pandas as pd, sys; m = mlflow.pyfunc.load_model('models:/facerealism-head@champion'); "
            "print(m.predict(pd.DataFrame({'image': [sys.argv[1]]}))['image'][0])")
    env = {**cli_env(), "MLFLOW_TRACKING_URI": tracking._uri(cfg), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.png")], capture_output=True, text=True,
                         env=env, timeout=180, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    got = decode_b64(res.stdout.strip().splitlines()[-1])
    G, _ = load_head(root / "models/head")
    expected = enhance_array(G, image[None])[0]
    assert got.shape == image.shape and np.array_equal(got, expected) and not np.array_equal(got, image)


@pytest.mark.slow
def test_served_champion_answers_http_post(sqlite_registry):
    root, cfg, _ = sqlite_registry
    image = sample_image()
    server = servers.start_model_server(f"models:/{NAME}@champion", tracking._uri(cfg),
                                        log_path=root / "serve.log", wait=120)
    try:
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[png_b64(image)]]}}).encode()
        req = urllib.request.Request(server.url + "/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            predictions = json.loads(r.read())["predictions"]
        got = decode_b64(predictions[0]["image"])
        G, _ = load_head(root / "models/head")
        assert np.array_equal(got, enhance_array(G, image[None])[0])
    finally:
        server.stop()
    assert server.proc.poll() is not None and servers.group_members(server.pid) == []  # workers included


def test_settle_moves_a_stale_champion_write_up(sqlite_registry):
    """A racing promotion that set `champion` last with a worse (but passing) model is repaired by settle."""
    _, cfg, _ = sqlite_registry
    client = tracking.setup(cfg).MlflowClient()
    client.set_registered_model_alias(NAME, "champion", "1")
    assert registry.settle_champion(client, cfg, NAME) == "3"
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "3"


def test_settle_keeps_a_champion_that_a_newer_version_beats_by_less_than_the_margin(sqlite_registry):
    _, cfg, _ = sqlite_registry
    client = tracking.setup(cfg).MlflowClient()
    client.set_registered_model_alias(NAME, "champion", "1")  # v1 scores 1.0, v3 2.0, both passed the gate
    wide = cfg.model_copy(deep=True)
    wide.register.margin_over_champion = 1.5
    assert registry.settle_champion(client, wide, NAME) == "1"
    assert registry.settle_champion(client, cfg, NAME) == "3"  # margin 0: v3 wins back


def test_a_new_held_out_split_is_judged_on_absolute_thresholds_or_refused(tmp_path, monkeypatch):
    """v1 on one split; a worse v2 on other held-out ids is promoted (absolute_only), a v3 back on the first split
    is refused under `fail`; settle never compares versions across splits."""
    root = tmp_path / "split"
    cfg = make_project(root)
    monkeypatch.chdir(root)
    assert register_with(cfg, GOOD) == {"version": "1", "promoted": True, "champion": "1"}
    first = holdout_fingerprint(cfg)
    write_parquet(root / "data/validated.parquet", pd.DataFrame({"id": [f"other{i:03d}" for i in range(40)]}))
    assert holdout_fingerprint(cfg) != first

    worse = {**GOOD, "fd_diff.spectral": 0.5}
    assert register_with(cfg, worse) == {"version": "2", "promoted": True, "champion": "2"}
    reasons = json.loads((root / "reports/promotion.json").read_text())["reasons"]
    assert "champion was scored on another held-out split; decided on absolute thresholds only" in reasons
    client = tracking.setup(cfg).MlflowClient()
    assert registry.settle_champion(client, cfg, NAME) == "2"  # v1 scores higher, but on the other split

    write_parquet(root / "data/validated.parquet", pd.DataFrame({"id": [f"pair{i:03d}" for i in range(40)]}))
    assert holdout_fingerprint(cfg) == first
    cfg.register.on_split_change = "fail"
    assert register_with(cfg, GOOD) == {"version": "3", "promoted": False, "champion": "2"}
    reasons = json.loads((root / "reports/promotion.json").read_text())["reasons"]
    assert any("another held-out split and register.on_split_change=fail: fail" in r for r in reasons)
    assert registry.settle_champion(client, cfg, NAME) == "2"
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "3"


PROMOTE = """
import json, sys, time
from facerealism.mlops import tracking
from facerealism.config import load_config
from facerealism.mlops import registry
a = json.loads(sys.argv[1])
cfg = load_config(a["params"], a["overrides"])
client = tracking.setup(cfg).MlflowClient()
while time.time() < a["start_at"]:
    time.sleep(0.01)
print(json.dumps(registry.promote(client, cfg, a["version"], a["metrics"], a["benchmark"], a["split"])))
"""


def promote_concurrently(cfg, root: Path, candidates: dict[str, float]) -> list[dict]:
    """Register one version per spectral value, then promote them from separate processes at the same instant."""
    client = tracking.setup(cfg).MlflowClient()
    base = client.get_model_version(NAME, "1")
    split = base.tags[registry.SPLIT_TAG]
    overrides = [f"paths.mlflow_uri={cfg.paths.mlflow_uri}", "benchmark.sizes=[32]", "generate.size=32",
                 "train.crop=32", *GATE]
    start_at = time.time() + 6  # both processes have imported mlflow by then
    procs = []
    for spectral in candidates.values():
        mv = tracking.setup(cfg).register_model(base.source, NAME)  # a new version of the same artifacts
        metrics = {**GOOD, "fd_diff.spectral": spectral}
        for k, v in metrics.items():
            client.set_model_version_tag(NAME, mv.version, f"metric.{k}", str(v))
        client.set_model_version_tag(NAME, mv.version, registry.SPLIT_TAG, split)
        arg = {"params": str(root / "params.yaml"), "overrides": overrides, "start_at": start_at,
               "version": str(mv.version), "metrics": metrics, "split": split,
               "benchmark": {"head_speed": {"32": {"fp32": {"images_per_s": 40.0}}}}}
        procs.append(subprocess.Popen([sys.executable, "-c", PROMOTE, json.dumps(arg)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=root))
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        assert p.returncode == 0, stderr[-2000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


@pytest.mark.slow
def test_two_processes_promoting_at_once_leave_the_better_champion(sqlite_registry):
    root, cfg, _ = sqlite_registry
    decisions = promote_concurrently(cfg, root, {"good": 4.0, "best": 5.0})
    best = decisions[1]["version"]
    client = tracking.setup(cfg).MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == best
    assert decisions[1]["promoted"]
    assert (root / "mlflow.promotion.lock").exists()  # SQLite stores take the exact file lock, not the lease


# --- a real tracking server: SQLite and PostgreSQL backends over HTTP ---------------------------

@pytest.fixture(scope="module")
def tracking_servers(tmp_path_factory):
    """One `mlflow server` per backend store, started in parallel and stopped by PID at the end."""
    root = tmp_path_factory.mktemp("servers")
    started, skips, dbs = {}, {}, []
    try:
        try:
            pg = servers.create_postgres_db()
            dbs.append(pg)
            started["postgresql"] = servers.start_tracking_server(pg, root / "pg-artifacts",
                                                                   log_path=root / "pg.log", wait=None)
        except ConnectionError as e:
            skips["postgresql"] = str(e)
        started["sqlite"] = servers.start_tracking_server(f"sqlite:///{root}/server.db", root / "sq-artifacts",
                                                           log_path=root / "sq.log", wait=None)
        for server in started.values():
            server.wait_healthy(150)
        yield root, started, skips
    finally:
        for server in started.values():
            server.stop()
        assert all(s.proc.poll() is not None and not servers.group_members(s.pid) for s in started.values())
        for db in dbs:
            servers.drop_postgres_db(db)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_register_alias_load_and_concurrent_promotion_over_http(tracking_servers, backend, monkeypatch):
    root, started, skips = tracking_servers
    if backend in skips:
        pytest.skip(skips[backend])
    server = started[backend]
    project = root / f"project-{backend}"
    cfg = make_project(project, mlflow_uri=server.url)
    monkeypatch.chdir(project)
    assert register_with(cfg, GOOD) == {"version": "1", "promoted": True, "champion": "1"}
    mlflow = tracking.setup(cfg)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    image = sample_image()
    got = decode_b64(model.predict(pd.DataFrame({"image": [png_b64(image)]}))["image"][0])
    G, _ = load_head(project / "models/head")
    assert np.array_equal(got, enhance_array(G, image[None])[0])
    # No file lock reaches a server: the lease tag + settle keep champion on the better model.
    decisions = promote_concurrently(cfg, project, {"good": 3.0, "best": 6.0})
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == decisions[1]["version"]
    assert registry.LOCK_TAG not in client.get_registered_model(NAME).tags


# --- the honest champion: a fitted filter registered and promoted in the head's place ----------------------------

FITTED_LABEL = "fitted: radial equaliser (photo-safe)"
PHOTO = {"colour_noise_gain": 0.9, "edge_overshoot": 1.0, "clipped_gain": 0.0, "flat_grain": 1.0}


def fitted_params() -> dict:
    """A real equaliser fitted on synthetic pairs (dev: schnell's detail x2), with photo-safe guards set by hand."""
    from facerealism.scoring import fitted

    from .test_metrics import make_dev

    x = make_dev(8, 32, seed=3)
    dev = np.clip(x * 2.0 - np.asarray(Image.fromarray(x[0]).resize((32, 32))).astype(float).mean() + 0.5, 0, 255)
    eq = fitted.fit("radial equaliser", x, dev.astype(np.uint8))
    return {**eq.params, "guards": {"chroma_cap": 0.8, "flat_quantile": 0.25, "edge_margin": 3.0}}


def fitted_project(root: Path, fitted_row: dict):
    """make_project plus a table4.json holding one fitted row (its Table 4 metrics, photo check and numbers)."""
    cfg = make_project(root)
    cfg.register.must_beat_fitted = True  # as by default: the head is compared with the fitted baselines
    rows = {"FLUX.1-schnell": table_row(-2.0, 1.0, (0.95, 1.0)), "FLUX.1-dev": table_row(2.0, 0.52, (0.4, 0.64)),
            FITTED_LABEL: {**fitted_row, "photo": PHOTO, "photo_passes": True}}
    write_json(root / "reports/table4.json",
               {"rows": rows, "order": list(rows), "fitted": {FITTED_LABEL: fitted_params()}})
    return cfg


HEAD_FAILS = {**GOOD, "fd_diff.spectral": -1.0, "fitted.best": FITTED_LABEL, "fitted.scored": 5,
              "c2st.dev_vs_enhanced_ci_high": 0.55, "c2st.dev_vs_fitted_ci_low": 0.6}  # it beats the fitted row


@pytest.fixture(scope="module")
def fitted_champion(tmp_path_factory):
    """A head that fails the gate; the best fitted baseline that passes the photo rules passes it and is promoted."""
    root = tmp_path_factory.mktemp("fitted")
    cfg = fitted_project(root, table_row(3.0, 0.7, (0.6, 0.78)))
    old = os.getcwd()
    os.chdir(root)
    try:
        yield root, cfg, register_with(cfg, HEAD_FAILS)
    finally:
        os.chdir(old)


def test_a_fitted_filter_that_passes_the_gate_is_promoted_named_as_fitted(fitted_champion):
    from facerealism.scoring import fitted

    root, cfg, out = fitted_champion
    assert out == {"version": "1", "promoted": False, "champion": "2", "fitted_version": "2", "fitted_promoted": True}
    decision = json.loads((root / "reports/promotion.json").read_text())
    assert decision["outcome"] == "fitted filter" and decision["champion"] == "2"
    assert "not a learned head" in decision["outcome_why"] and FITTED_LABEL in decision["outcome_why"]
    assert any(r.startswith("fd_diff.spectral = -1 is not > 0: fail") for r in decision["reasons"])  # the head's
    assert decision["fitted"]["promoted"] and decision["fitted"]["numbers"] == 3 * 16 + 3  # 32 px: 16 bins
    client = tracking.setup(cfg).MlflowClient()
    head, filt = client.get_model_version(NAME, "1"), client.get_model_version(NAME, "2")
    assert head.tags["kind"] == "learned head" and filt.tags["kind"] == "fitted filter"
    assert filt.tags["recipe"] == "fitted: radial equaliser (photo-safe)"
    assert filt.tags["recipe_label"].startswith("fitted filter: ") and filt.tags["metric.fd_diff.spectral"] == "3.0"
    mlflow = tracking.setup(cfg)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=str(root / "dl")))
    card = (local / "artifacts/README.md").read_text()
    assert card.startswith(f"# {NAME}: fitted filter — radial equaliser (photo-safe)")
    assert "**Not a learned head.**" in card
    assert not any(word in card + filt.description for word in ("ESA", "CycleGAN", "recipe: "))
    spec = json.loads((local / "artifacts/filter.json").read_text())
    assert spec == {"name": "radial equaliser (photo-safe)", "params": json.loads(json.dumps(fitted_params()))}
    files = [p.name for p in local.rglob("*") if p.is_file()]
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth", ".safetensors"))], files
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    image = sample_image()
    got = decode_b64(model.predict(pd.DataFrame({"image": [png_b64(image)]}))["image"][0])
    expected = fitted.rebuild("radial equaliser (photo-safe)", spec["params"])(image[None])[0]
    assert np.array_equal(got, expected) and not np.array_equal(got, image)
    # A rerun decides nothing new: the same head and the same fitted filter are the versions already registered.
    assert register_with(cfg, HEAD_FAILS) == {**out, "reused": True}


@pytest.mark.slow
def test_the_promoted_fitted_filter_loads_with_enhance_and_mlflow_models_serve(fitted_champion, tmp_path):
    from facerealism.scoring import fitted

    root, cfg, _ = fitted_champion
    image = sample_image()
    expected = fitted.rebuild("radial equaliser (photo-safe)", fitted_params())(image[None])[0]
    Image.fromarray(image).save(tmp_path / "x.png")
    done = subprocess.run(["facerealism", "enhance", str(tmp_path / "x.png"), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, env=cli_env(), cwd=root, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]  # the default --model: models:/facerealism-head@champion
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out/x.png").convert("RGB")), expected)
    server = servers.start_model_server(f"models:/{NAME}@champion", tracking._uri(cfg), log_path=root / "serve.log",
                                        wait=120)
    try:
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[png_b64(image)]]}}).encode()
        req = urllib.request.Request(server.url + "/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            got = decode_b64(json.loads(r.read())["predictions"][0]["image"])
        assert np.array_equal(got, expected)
    finally:
        server.stop()
    assert server.proc.poll() is not None and servers.group_members(server.pid) == []


def test_nothing_is_promoted_when_the_fitted_filter_fails_the_gate_too(tmp_path, monkeypatch):
    root = tmp_path / "nothing"
    cfg = fitted_project(root, table_row(-0.5, 0.97, (0.93, 0.99)))  # nearer schnell than dev
    monkeypatch.chdir(root)
    assert register_with(cfg, HEAD_FAILS) == {"version": "1", "promoted": False, "champion": None}
    decision = json.loads((root / "reports/promotion.json").read_text())
    assert decision["outcome"] == "nothing" and "was not promoted either" in decision["outcome_why"]
    f = decision["fitted"]
    assert f["considered"] and not f["passed_precheck"] and "version" not in f  # never registered
    assert "fd_diff.spectral = -0.5 is not > 0: fail" in f["reasons"]
    assert len(tracking.setup(cfg).MlflowClient().search_model_versions(f"name='{NAME}'")) == 1


def test_a_promoted_head_or_promote_fitted_off_leaves_the_fitted_filter_alone(tmp_path, monkeypatch):
    root = tmp_path / "head"
    cfg = fitted_project(root, table_row(3.0, 0.7, (0.6, 0.78)))
    monkeypatch.chdir(root)
    assert register_with(cfg, {**HEAD_FAILS, "fd_diff.spectral": 1.0}) == {"version": "1", "promoted": True,
                                                                          "champion": "1"}
    decision = json.loads((root / "reports/promotion.json").read_text())
    assert decision["outcome"] == "learned head" and decision["fitted"] == {"considered": False,
                                                                          "why": "the learned head was promoted"}
    cfg.register.promote_fitted = False
    assert register_with(cfg, {**HEAD_FAILS, "fd_diff.spectral": 0.5})["champion"] == "1"  # worse than v1: fails
    decision = json.loads((root / "reports/promotion.json").read_text())
    assert decision["outcome"] == "nothing" and "register.promote_fitted is false" in decision["outcome_why"]
    assert len(tracking.setup(cfg).MlflowClient().search_model_versions(f"name='{NAME}'")) == 2


def test_the_head_must_beat_the_best_fitted_baseline_that_passes_the_photo_rules():
    from facerealism.scoring.gate import beats_fitted

    cfg = load_config(ROOT / "params.yaml")
    head = {"c2st.dev_vs_enhanced_ci_high": 0.8}  # the best fitted baseline's CI starts at 0.85
    assert beats_fitted(cfg, {**head, **FITTED, "fitted.scored": 3})[0]
    assert not beats_fitted(cfg, {**head, **FITTED, "c2st.dev_vs_fitted_ci_low": 0.8, "fitted.scored": 3})[0]  # a tie
    passed, reasons = beats_fitted(cfg, {**head, "fitted.best": None, "fitted.scored": 5})
    assert passed and reasons == ["none of the 5 fitted baselines passes the photo rules, so none is a filter the head "
                                  "must beat: ok"]
    passed, reasons = beats_fitted(cfg, {**head, "fitted.best": None, "fitted.scored": 0})
    assert not passed and "no fitted baseline was scored" in reasons[0]
