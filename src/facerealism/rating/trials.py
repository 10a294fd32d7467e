"""What raters are shown: the comparisons, the images of one candidate on the held-out split, each rater's order."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerealism.data import catalog
from facerealism.errors import UserError
from facerealism.files import read_json, save_png, sha256_file, write_json

HEAD, DEV, SCHNELL, FITTED, DEGRADED = "head", "dev", "schnell", "fitted", "degraded"
QUESTION = "Which one looks like a real photograph?"


@dataclass(frozen=True)
class Comparison:
    name: str
    a: str
    """The image set whose share of the votes is reported (the candidate, or dev in an attention check)."""
    b: str
    attention: bool = False
    """An attention check: `a` is right; a rater who picks `b` too often is set aside as careless."""


# The one list of comparisons: the set builder, the page, the statistics and the report all read it.
COMPARISONS = {c.name: c for c in (
    Comparison("head_vs_dev", HEAD, DEV),
    Comparison("head_vs_schnell", HEAD, SCHNELL),
    Comparison("head_vs_fitted", HEAD, FITTED),
    Comparison("attention", DEV, DEGRADED, attention=True),
)}
SETS = (HEAD, DEV, SCHNELL, FITTED, DEGRADED)
ITEMS = "items.json"


def degrade(images: np.ndarray, block: int = 8, sigma: float = 40.0, seed: int = 0) -> np.ndarray:
    """The attention check's obviously fake image: an 8-px mosaic with strong colour noise. (n, h, w, 3) uint8."""
    n, h, w, _ = images.shape
    hb, wb = max(1, h // block), max(1, w // block)
    small = images[:, : hb * block, : wb * block].reshape(n, hb, block, wb, block, 3).mean((2, 4))
    big = np.repeat(np.repeat(small, block, 1), block, 2)
    big = np.pad(big, ((0, 0), (0, h - big.shape[1]), (0, w - big.shape[2]), (0, 0)), mode="edge")
    noise = np.random.default_rng(seed).normal(0, sigma, big.shape)
    return np.clip(big + noise, 0, 255).round().astype(np.uint8)


def write_set(folder: str | Path, images: dict[str, np.ndarray], ids: list[str], meta: dict,
              attention_checks: int) -> Path:
    """Write one rating set: images/<set>/<id>.png for every set of SETS, and items.json listing the trials.

    Args:
        images: set name -> (n, h, w, 3) uint8, row i showing prompt ids[i]; every name of SETS.
        meta: what the set rates (head label, fitted baseline, head run) — copied into items.json.
        attention_checks: attention trials, on the first prompts.
    Returns:
        The folder.
    """
    missing = [s for s in SETS if s not in images]
    if missing:
        raise UserError(f"rating set lacks image sets {missing}")
    folder = Path(folder)
    for name in SETS:
        for pid, img in zip(ids, images[name]):
            save_png(folder / "images" / name / f"{pid}.png", img)
    trials = [{"id": f"{c.name}/{pid}", "comparison": c.name, "prompt": pid}
              for c in COMPARISONS.values() if not c.attention for pid in ids]
    trials += [{"id": f"{c.name}/{pid}", "comparison": c.name, "prompt": pid}
               for c in COMPARISONS.values() if c.attention for pid in ids[:attention_checks]]
    write_json(folder / ITEMS, {**meta, "trials": trials})
    return folder


def read_set(folder: str | Path) -> dict:
    path = Path(folder) / ITEMS
    if not path.exists():
        raise FileNotFoundError(f"no rating set at {Path(folder)}: `facerealism rate` builds it from the trained head")
    return read_json(path)


def rater_order(trials: list[dict], rater: str) -> list[dict]:
    """The rater's own shuffled order with each trial's sides: the same on every visit, so a rater can resume.

    Returns:
        Each trial plus "left" and "right" (set names), positions drawn per rater and trial.
    """
    rng = random.Random(hashlib.sha256(f"order:{rater}".encode()).digest())
    order = list(trials)
    rng.shuffle(order)
    out = []
    for t in order:
        c = COMPARISONS[t["comparison"]]
        flip = hashlib.sha256(f"side:{rater}:{t['id']}".encode()).digest()[0] & 1
        out.append({**t, "left": c.b if flip else c.a, "right": c.a if flip else c.b})
    return out


def campaign_key(head_dir: Path, ids: list[str]) -> str:
    """Names what is rated: the head's files and the prompts shown. Votes of another head never mix in."""
    h = hashlib.sha256()
    for path in sorted(p for p in head_dir.rglob("*") if p.is_file()):
        h.update(path.relative_to(head_dir).as_posix().encode() + b"\0" + sha256_file(path).encode())
    h.update("\n".join(ids).encode())
    return h.hexdigest()[:16]


def build_set(cfg) -> Path:
    """The rating set of the trained head (models/head) on the first held-out prompts, built once per head.

    Images: the head applied to schnell, schnell, dev, the best fitted baseline evaluate named in reports/metrics.json
    (rebuilt from the numbers evaluate fitted, reports/table4.json), and dev degraded for the attention checks.

    Returns:
        data/rating/<campaign>/ holding the images and items.json.
    """
    from facerealism.data.split import dev_check_half, load_images, train_holdout
    from facerealism.head import enhance_array, load_head
    from facerealism.scoring import fitted

    head_dir = catalog.HEAD.path(cfg)
    if not (head_dir / "head.json").exists():
        raise FileNotFoundError(f"no trained head in {head_dir}: run the pipeline (or `facerealism stage train`) first")
    _, holdout = train_holdout(cfg)
    scored = holdout[~dev_check_half(holdout["id"])].head(cfg.rate.pairs_per_comparison)  # evaluate's scored half
    ids = [str(i) for i in scored["id"]]
    folder = Path(cfg.paths.data) / "rating" / campaign_key(head_dir, ids)
    if (folder / ITEMS).exists():
        return folder
    metrics_path = catalog.METRICS.path(cfg)
    if not metrics_path.exists():
        raise FileNotFoundError(f"{metrics_path} is missing: run the evaluate stage first (it names the best fitted baseline)")
    best = read_json(metrics_path).get("fitted.best")
    if best is None:
        raise UserError(f"{metrics_path} names no best fitted baseline: set evaluate.fitted to rate head vs fitted")
    schnell, dev = load_images(scored["schnell_path"]), load_images(scored["dev_path"])
    G, meta = load_head(head_dir)
    f = fitted.rebuild(fitted.name_of(best), read_json(catalog.TABLE4.path(cfg))["fitted"][best])
    images = {HEAD: enhance_array(G, schnell), DEV: dev, SCHNELL: schnell, FITTED: f(schnell),
              DEGRADED: degrade(dev, seed=cfg.seed)}
    info = {"campaign": folder.name, "head_run_id": meta.get("mlflow_run_id"), "fitted": best,
            "size": int(schnell.shape[1])}
    return write_set(folder, images, ids, info, cfg.rate.attention_checks)
