"""Dataset helpers: the stable held-out split by id and in-memory image loading."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from facerealism import catalog
from facerealism.errors import UserError
from facerealism.files import load_rgb, read_parquet


def is_holdout(pair_id: str, fraction: float) -> bool:
    """Hash the id, not the row position: adding or removing pairs never moves a pair across the split."""
    bucket = int.from_bytes(hashlib.sha256(pair_id.encode()).digest()[:4], "little") % 10_000
    return bucket < fraction * 10_000


def split(manifest: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout) rows of a manifest."""
    mask = manifest["id"].map(lambda i: is_holdout(str(i), fraction)).astype(bool)
    return manifest[~mask].reset_index(drop=True), manifest[mask].reset_index(drop=True)


def train_holdout(cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, held-out) rows of the validated manifest: the one split that train, evaluate and register share."""
    return split(validated_manifest(cfg.paths.data), cfg.split.holdout_fraction)


def load_images(paths) -> np.ndarray:
    """Decode image files into one uint8 array (n, h, w, 3); all images must share a size."""
    images = [load_rgb(p) for p in paths]
    if not images:
        return np.zeros((0, 1, 1, 3), np.uint8)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise UserError(f"images have mixed sizes {sorted(shapes)}; the head trains on one size")
    return np.stack(images)


def validated_manifest(data_dir: str | Path) -> pd.DataFrame:
    df = read_parquet(Path(data_dir) / catalog.VALIDATED.name)
    if df.empty:
        raise UserError("validated manifest is empty: every pair was quarantined or none were generated")
    return df


def to_tensor(images: np.ndarray):
    """uint8 (n, h, w, 3) -> float (n, 3, h, w) in [-1, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images).copy()).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(tensor) -> np.ndarray:
    """float (n, 3, h, w) in [-1, 1] -> uint8 (n, h, w, 3)."""
    return tensor.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
