"""Stage `evaluate`: on the held-out split, does the head move schnell-like images toward dev-like ones?"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from facerealism import metrics, tracking
from facerealism.config import Config
from facerealism.data import load_images, split, validated_manifest
from facerealism.files import save_png, write_json
from facerealism.grids import save_grid
from facerealism.head import enhance_array, load_head


def holdout_sets(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """(schnell, dev) uint8 images of the held-out split."""
    _, holdout = split(validated_manifest(cfg.paths.data), cfg.train.holdout_fraction)
    if len(holdout) < 2:
        raise ValueError(f"held-out split has {len(holdout)} pairs; need at least 2 (raise prompts.n_enriched)")
    return load_images(holdout["schnell_path"]), load_images(holdout["dev_path"])


def inception_block(cfg: Config, sets: dict[str, np.ndarray]) -> dict:
    """FID/KID through torch-fidelity when Inception weights are supplied; otherwise why not."""
    weights = cfg.evaluate.inception_weights
    problem = metrics.inception_weights_problem(weights)
    if problem:
        return {"available": False, "reason": problem}
    out = {"available": True}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for name, imgs in sets.items():
            dirs[name] = Path(tmp) / name
            for i, img in enumerate(imgs):
                save_png(dirs[name] / f"{i:05d}.png", img)
        for a, b in (("enhanced", "schnell"), ("enhanced", "dev"), ("schnell", "dev")):
            r = metrics.inception_metrics(str(dirs[a]), str(dirs[b]), weights)
            out[f"fid_{a}_{b}"] = r.get("fid")
            out[f"kid_{a}_{b}"] = r.get("kid_mean")
    out["fid_diff"] = out["fid_enhanced_schnell"] - out["fid_enhanced_dev"]
    return out


def evaluate_sets(cfg: Config, schnell: np.ndarray, dev: np.ndarray, enhanced: np.ndarray) -> dict:
    """Flat metrics dict: fd_* per offline space, c2st.*, fid.* (or its reason)."""
    e = cfg.evaluate
    flat: dict = {}
    for space, vals in metrics.fd_diff(enhanced, schnell, dev, spaces=tuple(e.spaces)).items():
        for k, v in vals.items():
            flat[f"{k}.{space}"] = v
    n = min(e.c2st_max_images, len(dev))
    flat["c2st.dev_vs_schnell"] = metrics.c2st_accuracy(dev[:n], schnell[:n], seed=cfg.seed, epochs=e.c2st_epochs)
    flat["c2st.dev_vs_enhanced"] = metrics.c2st_accuracy(dev[:n], enhanced[:n], seed=cfg.seed, epochs=e.c2st_epochs)
    inc = inception_block(cfg, {"schnell": schnell, "dev": dev, "enhanced": enhanced})
    for k, v in inc.items():
        flat[f"fid.{k}"] = v
    return flat


def run(cfg: Config) -> dict:
    schnell, dev = holdout_sets(cfg)
    head_dir = Path(cfg.paths.models) / "head"
    G, meta = load_head(head_dir)
    enhanced = enhance_array(G, schnell)
    flat = evaluate_sets(cfg, schnell, dev, enhanced)
    flat["holdout_pairs"] = len(schnell)
    reports = Path(cfg.paths.reports)
    write_json(reports / "metrics.json", flat)
    k = min(cfg.evaluate.grid_n, len(schnell))
    grid = save_grid(reports / "before_after.png", [schnell[:k], enhanced[:k], dev[:k]],
                     ["schnell", "enhanced", "dev"], scale=4)
    with tracking.run(cfg, "evaluate", run_id=meta.get("mlflow_run_id")):
        tracking.log_metrics({f"eval.{k}": v for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        tracking.log_artifact(grid)
        tracking.log_artifact(reports / "metrics.json")
    return {k: v for k, v in flat.items() if k.startswith(("fd_diff", "c2st", "fid.available"))}
