"""Classifier two-sample test: held-out accuracy of a linear classifier telling two feature sets apart."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from facerealism.errors import UserError
from facerealism.metrics.checks import check_images
from facerealism.metrics.spaces import FEATURE_SPACES


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % for z = 1.96); sound at 0 and 1, unlike p ± z·se."""
    if n < 1:
        raise UserError(f"need n >= 1 trials, got {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At 0 or n successes one end is exactly 0 or 1; rounding would leave it a hair inside (0.9999999999999999
    # beside an accuracy of 1.0: an interval that missed its own estimate in Table 4).
    return (0.0 if successes == 0 else max(0.0, centre - half)), (1.0 if successes == n else min(1.0, centre + half))


def c2st(feats_a: np.ndarray, feats_b: np.ndarray, seed: int = 0, folds: int = 5, C: float = 0.1,
         paired: bool = True) -> dict:
    """Classifier two-sample test on features: held-out accuracy of a logistic regression telling a from b.

    The classifier is linear on standardised features, so it sees exactly the statistics the feature spaces
    describe and trains in milliseconds. With `paired`, row i of a and row i of b show the same face (dev and
    a head's output on its schnell twin): both land in the same fold, so no image is scored by a classifier
    that trained on its twin.

    Args:
        feats_a: (n_a, d) features of sample a.
        feats_b: (n_b, d) features of sample b.
        seed: seeds the subsampling and the fold split; same seed -> same result.
        folds: k of the k-fold split; every image is scored once, by a classifier that never saw it.
        C: inverse L2 strength of the logistic regression.
        paired: rows of a and b are pairs (needs n_a == n_b).

    Returns:
        {"accuracy", "ci": [low, high] (95 % Wilson), "auc", "n": images per class}; 0.5 = indistinguishable.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise UserError(f"features must be (n, d) with the same d, got {feats_a.shape} and {feats_b.shape}")
    if paired and len(feats_a) != len(feats_b):
        raise UserError(f"paired C2ST needs as many rows on both sides, got {len(feats_a)} and {len(feats_b)}")
    n = min(len(feats_a), len(feats_b))
    if folds < 2 or n < folds:
        raise UserError(f"need folds >= 2 and at least `folds` images per class, got folds={folds}, n={n}")
    rng = np.random.default_rng(seed)
    ia = np.arange(n) if paired else rng.permutation(len(feats_a))[:n]
    ib = ia if paired else rng.permutation(len(feats_b))[:n]
    x = np.concatenate([feats_a[ia], feats_b[ib]])  # (2n, d)
    y = np.concatenate([np.zeros(n), np.ones(n)])
    fold_of = np.tile(rng.permutation(n) % folds, 2)  # a pair's two rows share a fold; classes stay balanced
    scores = np.empty(2 * n)
    for k in range(folds):
        train, test = fold_of != k, fold_of == k
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        clf.fit(x[train], y[train])
        scores[test] = clf.decision_function(x[test])
    correct = int(((scores > 0) == (y == 1)).sum())
    low, high = wilson_interval(correct, 2 * n)
    return {"accuracy": correct / (2 * n), "ci": [low, high], "auc": float(roc_auc_score(y, scores)), "n": n}


C2ST_SPACES = tuple(FEATURE_SPACES)  # every feature space, side by side


def c2st_images(images_a: np.ndarray, images_b: np.ndarray, seed: int = 0, folds: int = 5,
                spaces: Sequence[str] = C2ST_SPACES, paired: bool = True) -> dict:
    """`c2st` on uint8 images (n, h, w, 3), with the features of `spaces` side by side."""
    check_images(images_a, "images_a")
    check_images(images_b, "images_b")
    if images_a.shape[1:] != images_b.shape[1:]:
        raise UserError(f"image sizes differ: {images_a.shape[1:]} vs {images_b.shape[1:]}")
    feats = [np.concatenate([FEATURE_SPACES[s](imgs) for s in spaces], axis=1) for imgs in (images_a, images_b)]
    return c2st(*feats, seed=seed, folds=folds, paired=paired)
