"""Dataset helpers: the stable train / validation / test split by hashed id and image loading (whole, or on demand)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from facerealism.data import catalog
from facerealism.errors import UserError
from facerealism.files import load_rgb, read_parquet


def _bucket(pair_id: str, salt: str = "") -> int:
    """A pair's place in 0..9999, from its id alone (sha256, so it is the same in every process and Python)."""
    return int.from_bytes(hashlib.sha256((salt + pair_id).encode()).digest()[:4], "little") % 10_000


def is_holdout(pair_id: str, fraction: float) -> bool:
    """Hash the id, not the row position: adding or removing pairs never moves a pair across the split."""
    return _bucket(pair_id) < fraction * 10_000


def split_of(pair_id: str, test_fraction: float, validation_fraction: float) -> str:
    """"test", "validation" or "train": the lowest buckets are test (the two-way split's held-out pairs, so adding
    a validation split moved no test pair), the next ones validation, the rest train."""
    bucket = _bucket(pair_id)
    if bucket < test_fraction * 10_000:
        return "test"
    return "validation" if bucket < (test_fraction + validation_fraction) * 10_000 else "train"


def split(manifest: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout) rows of a manifest."""
    mask = manifest["id"].map(lambda i: is_holdout(str(i), fraction)).astype(bool)
    return manifest[~mask].reset_index(drop=True), manifest[mask].reset_index(drop=True)


def three_way(manifest: pd.DataFrame, test_fraction: float, validation_fraction: float) -> dict[str, pd.DataFrame]:
    """{"train", "validation", "test"} rows of a manifest, by hashed id.

    train: what the head and the fitted baselines learn from. validation: what is tuned on (the sweep's cycle SSIM,
    recipe trials). test: read only by evaluate's Table 4 and the register gate.
    """
    which = manifest["id"].map(lambda i: split_of(str(i), test_fraction, validation_fraction))
    return {name: manifest[which == name].reset_index(drop=True) for name in ("train", "validation", "test")}


def splits(cfg) -> dict[str, pd.DataFrame]:
    """The three splits of the validated manifest that train, evaluate and register share (config `split`)."""
    return three_way(validated_manifest(cfg.paths.data), cfg.split.holdout_fraction, cfg.split.validation_fraction)


def train_holdout(cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) rows of the validated manifest; the validation pairs are in neither."""
    s = splits(cfg)
    return s["train"], s["test"]


def dev_check_half(ids) -> pd.Series:
    """Which test pairs' dev images are the dev check's independent sample rather than dev images the candidates are
    compared with: every second id in the order of another hash of the ids, so the halves differ by at most one pair
    on any split (an independent coin per id left a half empty on small test splits).

    Args:
        ids: the test split's pair ids (a pandas Series).
    Returns:
        A boolean Series aligned with `ids`.
    """
    ids = pd.Series(ids).astype(str)
    rank = ids.map(lambda i: hashlib.sha256(f"dev-check:{i}".encode()).hexdigest()).rank(method="first").astype(int)
    return (rank % 2 == 0).set_axis(ids.index)


def load_images(paths) -> np.ndarray:
    """Decode image files into one uint8 array (n, h, w, 3); all images must share a size."""
    images = [load_rgb(p) for p in paths]
    if not images:
        return np.zeros((0, 1, 1, 3), np.uint8)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise UserError(f"images have mixed sizes {sorted(shapes)}; the head trains on one size")
    return np.stack(images)


class ImageFiles:
    """Image files read on demand: indexed like a uint8 (n, h, w, 3) array by a slice or a list of positions, each
    read decodes just those files (load_images). What a shard of evaluate's features reads, on any worker."""

    def __init__(self, paths):
        self.paths = tuple(str(p) for p in paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: slice | list[int]) -> np.ndarray:
        if isinstance(index, slice):
            return load_images(self.paths[index])
        return load_images([self.paths[i] for i in index])


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
