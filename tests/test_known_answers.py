"""Stages on hand-made pairs whose answers are known: what evaluate scores, what train reads and ships, the C2ST gap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facerealism import metrics
from facerealism.config import load_config
from facerealism.data.split import dev_check_half, split, three_way
from facerealism.files import save_png, write_parquet
from facerealism.head import enhance_array, load_head, save_head
from facerealism.models import build_generator
from facerealism.stages import run_stage
from facerealism.scoring.rows import table4
from facerealism.scoring.table4 import DEV, SCHNELL

from .conftest import ROOT
from .test_metrics import blur, make_dev

SIZE, N, HOLDOUT = 32, 40, 0.25  # 32 px: the smallest side PatchGAN's three stride-2 layers accept
SHIFT = 60  # dev = schnell + SHIFT grey levels: the one thing a head has to learn


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These nets are tiny: one thread runs them as fast as two and never fights a neighbour for the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One MLflow SQLite store for the module: creating its tables costs seconds."""
    return tmp_path_factory.mktemp("mlflow")


def write_pairs(root: Path, schnell: np.ndarray, dev: np.ndarray) -> pd.DataFrame:
    """data/validated.parquet of (schnell i, dev i) PNG pairs, as the validate stage leaves it."""
    rows = []
    for i, (s, d) in enumerate(zip(schnell, dev)):
        pid = f"pair{i:03d}"
        rows.append({"id": pid, "schnell_path": str(root / "data/pairs" / f"{pid}_schnell.png"),
                     "dev_path": str(root / "data/pairs" / f"{pid}_dev.png")})
        save_png(rows[-1]["schnell_path"], s)
        save_png(rows[-1]["dev_path"], d)
    manifest = pd.DataFrame(rows)
    write_parquet(root / "data/validated.parquet", manifest)
    return manifest


def index(rows: pd.DataFrame) -> list[int]:
    """Positions of rows' pairs in the arrays write_pairs was given."""
    return [int(i.removeprefix("pair")) for i in rows["id"]]


def cfg_for(root: Path, store: Path, *extra: str):
    return load_config(ROOT / "params.yaml", [
        f"paths.data={root}/data", f"paths.models={root}/models", f"paths.reports={root}/reports",
        f"paths.mlflow_uri=sqlite:///{store}/mlflow.db", f"paths.mlflow_artifacts={store}/mlartifacts",
        f"generate.size={SIZE}", f"split.holdout_fraction={HOLDOUT}", *extra])


def fresh_head(folder: Path) -> None:
    """A freshly built residual head: its last conv is zero, so it is the exact identity."""
    kwargs = {"ngf": 8, "n_blocks": 1, "residual_output": True}
    save_head(build_generator("esa_resnet", **kwargs), folder, "esa_resnet", kwargs, {})


@pytest.mark.slow  # the whole evaluate stage: the full layer
def test_evaluate_scores_the_heads_on_the_schnell_images_of_the_held_out_pairs(tmp_path, store):
    dev = make_dev(N, SIZE, seed=7)
    manifest = write_pairs(tmp_path, blur(dev), dev)
    fresh_head(tmp_path / "models/head")
    cfg = cfg_for(tmp_path, store, "evaluate.c2st_folds=2", "evaluate.c2st_max_images=8", "evaluate.bootstrap=5",
                  "evaluate.grid_n=2")
    run_stage("evaluate", cfg)
    m = json.loads((tmp_path / "reports/metrics.json").read_text())

    parts = three_way(manifest, HOLDOUT, cfg.split.validation_fraction)
    test = parts["test"]
    held = test[~dev_check_half(test["id"])]  # Table 4's half of the test split; the other is the dev check
    assert 0 < len(held) < len(test) < len(parts["train"]) and m["holdout_pairs"] == len(held)
    hs, hd = blur(dev)[index(held)], dev[index(held)]
    for space in cfg.evaluate.spaces:
        extract = metrics.FEATURE_SPACES[space]
        gap = metrics.frechet_distance(extract(hs), extract(hd))  # FD(schnell, dev) on exactly the held-out pairs
        assert gap > 0
        # The identity head returns its input, so it *is* schnell: FD to schnell 0, FD_diff = -gap.
        assert m[f"fd_schnell_dev.{space}"] == pytest.approx(gap, rel=1e-9)
        assert m[f"fd_enh_schnell.{space}"] == pytest.approx(0.0, abs=1e-6 * gap)
        assert m[f"fd_diff.{space}"] == pytest.approx(-gap, rel=1e-6)
    assert m["ssim.mean"] == pytest.approx(1.0, abs=1e-12)


def test_table4_c2st_tells_schnell_from_dev_but_not_dev_from_another_dev_sample():
    """At 64 images the classifier sees the blur; the FLUX.1-dev row, an independent sample of dev images, reads
    near chance, and the same sample blurred reads like schnell: the dev check can fail."""
    dev = make_dev(64, SIZE, seed=8)
    other = make_dev(64, SIZE, seed=9)
    cfg = load_config(ROOT / "params.yaml", ["evaluate.c2st_folds=5", "evaluate.c2st_max_images=64",
                                             "evaluate.bootstrap=0"])
    rows = table4(cfg, blur(dev), dev, other, {})["rows"]
    schnell, check = rows[SCHNELL]["c2st_vs_dev"], rows[DEV]["c2st_vs_dev"]
    assert schnell > 0.75 and check < 0.65 and schnell - check > 0.2, (schnell, check)
    degraded = table4(cfg, blur(dev), dev, blur(other), {})["rows"][DEV]["c2st_vs_dev"]
    assert degraded > 0.75, degraded


@pytest.fixture(scope="module")
def shifted(tmp_path_factory, store):
    """A short training run where dev is schnell shifted by a constant, with the test split's images and the
    validation split's dev images deleted.

    Deleting them makes any read of a test pair, or of a validation target, fail loudly wherever in training it
    happens (validation schnell images feed only the monitoring cycle SSIM the sweep ranks by).
    """
    root = tmp_path_factory.mktemp("shifted")
    schnell = (make_dev(N, SIZE, seed=3) * 0.6).astype(np.uint8)  # darker than 255 - SHIFT: no clipping
    manifest = write_pairs(root, schnell, schnell + SHIFT)
    parts = three_way(manifest, HOLDOUT, load_config(ROOT / "params.yaml").split.validation_fraction)
    held = parts["test"]
    for path in [*held["dev_path"], *held["schnell_path"], *parts["validation"]["dev_path"]]:
        Path(path).unlink()  # the test split entirely, and the validation targets
    # lr 1e-3 and one thread: 10 steps in ~1 s move the mean by ~25 grey levels. A brightness shift is not detail,
    # so this uses the RGB residual (train.detail=false): the test is about which generator ships.
    cfg = cfg_for(root, store, "train.detail=false", "train.ngf=8", "train.n_blocks=1", "train.ndf=8", "train.batch_size=4",
                  "train.steps=10", "train.lr=0.001", "train.baselines=[]", "train.mixed_precision=fp32",
                  "train.threads=1", "train.grid_every=1000", "train.log_every=5", "train.checkpoint_every=1000",
                  "train.cycle_ssim_images=4")
    summary = run_stage("train", cfg)
    return root, cfg, manifest, held, schnell, summary


def test_training_loads_only_training_pairs(shifted):
    from facerealism.data.split import load_images
    from facerealism.stages.train import load_data

    root, cfg, manifest, held, schnell, summary = shifted  # training succeeded without test pairs or validation targets
    train_rows, validation_rows = load_data(cfg)
    assert summary["train_pairs"] == len(train_rows) and summary["validation_pairs"] == len(validation_rows) > 0
    assert set(train_rows["id"]).isdisjoint(held["id"]) and set(validation_rows["id"]).isdisjoint(held["id"])
    assert set(train_rows["id"]).isdisjoint(validation_rows["id"])
    assert set(train_rows["id"]) | set(validation_rows["id"]) | set(held["id"]) == set(manifest["id"])
    assert np.array_equal(load_images(train_rows["schnell_path"]), schnell[index(train_rows)])  # what it trained on


def test_the_shipped_head_moves_schnell_toward_dev(shifted):
    """G_A (schnell -> dev) brightens; G_B (dev -> schnell) would darken: the sign tells which one shipped."""
    root, cfg, manifest, held, schnell, _ = shifted
    G, meta = load_head(root / "models/head")
    x = schnell[index(held)]
    moved = float(enhance_array(G, x).astype(np.float64).mean() - x.mean())
    assert 0.25 * SHIFT < moved < 1.5 * SHIFT, moved
    assert meta["train_pairs"] < len(manifest) - len(held)  # the validation pairs are not trained on either
