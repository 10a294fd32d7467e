"""Fitted baselines: the cheapest heads, fitted in closed form to the training pairs, that a learned head must beat.

A learned head earns its place only against what a closed-form fit gets from the same pairs for free. Three fits,
each a few milliseconds to a few seconds on 2 cores:
- "detail gains": out = x + sum_k g_k band_k(x), four numbers g_k over difference-of-Gaussians bands of
  the input (the function class of the default detail head, without the network), by least squares;
- "detail gains (energy-matched)": the same four gains, chosen so each band of the output holds as much energy as
  the same band of dev. Where dev's texture is a new instance that schnell does not hold, least squares shrinks
  schnell's own texture towards zero (any amplification of an uncorrelated instance raises the squared error);
  matching the energy instead amplifies it to dev's level: the cheapest filter that looks like dev on average;
- "linear 9×9": out = x + W * x + b, a ridge-regularised linear filter of 9×9 pixels from 3 to 3 channels
  (the output pixel's residual from the 243 input values around it).
Evaluate scores them as Table 4 rows beside the heads; register promotes a head only if it beats the best of
them (`gate.beats_fitted`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from facerealism.errors import UserError

PREFIX = "fitted: "
SIGMAS = (0.5, 1.0, 2.0, 4.0)  # band k = blur(sigma_k) - blur(sigma_{k+1}); band 0 starts at the image itself
KERNEL = 9  # support of the linear filter (pixels per side)
RIDGE = 1e-3  # Tikhonov weight relative to the mean diagonal of X^T X: keeps the 244-unknown solve well posed
BORDER = 4  # pixels left out of each fit at the image edge: an aligning roll wraps the opposite edge in
MAX_PIXELS = 50_000  # pixels drawn for the normal equations: ~200 rows per unknown, a fit of a few seconds


def _bands(x: np.ndarray) -> np.ndarray:
    """(n, h, w, 3) float -> (len(SIGMAS), n, h, w, 3) detail bands: x - G(.5), G(.5) - G(1), G(1) - G(2), ..."""
    from scipy import ndimage

    blurs = [x] + [ndimage.gaussian_filter(x, sigma=(0, s, s, 0), mode="nearest") for s in SIGMAS]
    return np.stack([blurs[k] - blurs[k + 1] for k in range(len(SIGMAS))])


def align(schnell: np.ndarray, dev: np.ndarray, max_shift: int) -> np.ndarray:
    """dev moved by the whole-pixel shift (|dy|, |dx| <= max_shift) that best matches each schnell twin.

    The pairs are aligned only up to a shift (generate.synthetic.max_shift; the head's paired loss forgives it
    too): a per-pixel least-squares fit on misaligned pairs learns to blur, not to add detail.
    """
    x, y = schnell.astype(np.float64), dev.astype(np.float64)
    m = max_shift
    inner = (slice(None), slice(m, x.shape[1] - m or None), slice(m, x.shape[2] - m or None))
    shifts = [(dy, dx) for dy in range(-m, m + 1) for dx in range(-m, m + 1)]
    err = np.stack([((np.roll(y, s, axis=(1, 2)) - x)[inner] ** 2).mean(axis=(1, 2, 3)) for s in shifts])  # (s, n)
    best = err.argmin(axis=0)
    return np.stack([np.roll(dev[i], shifts[b], axis=(0, 1)) for i, b in enumerate(best)])


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def fit_detail_gains(schnell: np.ndarray, dev: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Per-band gains g (len(SIGMAS),) minimising ||x + sum_k g_k band_k(x) - dev||^2 over every pixel and channel."""
    x, y = schnell.astype(np.float64), dev.astype(np.float64)
    b = BORDER
    bands = _bands(x)[:, :, b:-b, b:-b].reshape(len(SIGMAS), -1).T  # (pixels * 3, k); rolled borders left out
    gains, *_ = np.linalg.lstsq(bands, (y - x)[:, b:-b, b:-b].ravel(), rcond=None)

    def apply(images: np.ndarray) -> np.ndarray:
        z = images.astype(np.float64)
        return _to_uint8(z + np.tensordot(gains, _bands(z), axes=1))

    apply.params = {"gains": [float(g) for g in gains], "sigmas": list(SIGMAS)}
    return apply


def fit_linear_filter(schnell: np.ndarray, dev: np.ndarray, seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """Ridge regression of dev - schnell on each pixel's KERNEL×KERNEL×3 neighbourhood of schnell (plus a bias).

    Solved in closed form, (X^T X + lambda I) w = X^T y, on at most MAX_PIXELS pixels drawn at random; the residual
    form shrinks towards the identity filter, not towards black.
    """
    x, y = schnell.astype(np.float32) / 255.0, dev.astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    n, h, w, _ = x.shape
    b, r = BORDER, KERNEL // 2
    count = min(MAX_PIXELS, n * (h - 2 * b) * (w - 2 * b))
    img, row, col = rng.integers(0, n, count), rng.integers(b, h - b, count), rng.integers(b, w - b, count)
    padded = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
    dy, dx = np.meshgrid(np.arange(KERNEL), np.arange(KERNEL), indexing="ij")
    # (count, K, K, 3) neighbourhoods gathered directly: unfolding every training image would take gigabytes.
    nb = padded[img[:, None, None], row[:, None, None] + dy, col[:, None, None] + dx]
    nb = nb.transpose(0, 3, 1, 2).reshape(count, -1)  # (in channel, dy, dx) order, as conv2d's weight
    X = np.concatenate([nb, np.ones((count, 1), np.float32)], axis=1)
    Y = (y - x)[img, row, col]  # (count, 3)
    X64 = X.astype(np.float64)
    gram = X64.T @ X64  # (d + 1, d + 1)
    reg = RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
    reg[-1, -1] = 0.0  # the bias is not shrunk
    weights = np.linalg.solve(gram + reg, X64.T @ Y.astype(np.float64))  # (d + 1, 3)

    import torch

    kernel = torch.from_numpy(weights[:-1].T.reshape(3, 3, KERNEL, KERNEL).astype(np.float32))  # (out, in, K, K)
    bias = torch.from_numpy(weights[-1].astype(np.float32))

    def apply(images: np.ndarray) -> np.ndarray:
        z = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float().div(255.0)  # (n, 3, h, w)
        with torch.inference_mode():
            res = torch.nn.functional.conv2d(torch.nn.functional.pad(z, (r,) * 4, mode="reflect"), kernel, bias)
        return _to_uint8((z + res).permute(0, 2, 3, 1).numpy() * 255.0)

    apply.params = {"kernel": KERNEL, "ridge": RIDGE, "pixels": int(len(X))}
    return apply


def fit_energy_gains(schnell: np.ndarray, dev: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Per-band gains with sum over pixels of band_k(out)^2 ~ band_k(dev)^2: g_k = rms(band_k(dev)) / rms(band_k(x)) - 1.

    Energy is shift-invariant, so misalignment does not matter here; band k of x + g_k band_k(x) is (1 + g_k) band_k(x)
    up to the leakage between neighbouring difference-of-Gaussians levels.
    """
    b = BORDER
    ex = (_bands(schnell.astype(np.float64))[:, :, b:-b, b:-b] ** 2).mean(axis=(1, 2, 3, 4))  # (k,)
    ey = (_bands(dev.astype(np.float64))[:, :, b:-b, b:-b] ** 2).mean(axis=(1, 2, 3, 4))
    gains = np.sqrt(ey / np.maximum(ex, 1e-12)) - 1.0

    def apply(images: np.ndarray) -> np.ndarray:
        z = images.astype(np.float64)
        return _to_uint8(z + np.tensordot(gains, _bands(z), axes=1))

    apply.params = {"gains": [float(g) for g in gains], "sigmas": list(SIGMAS)}
    return apply


FITTERS: dict[str, Callable[[np.ndarray, np.ndarray, int], Callable[[np.ndarray], np.ndarray]]] = {
    "detail gains": lambda s, d, seed: fit_detail_gains(s, d),
    "detail gains (energy-matched)": lambda s, d, seed: fit_energy_gains(s, d),
    f"linear {KERNEL}×{KERNEL}": lambda s, d, seed: fit_linear_filter(s, d, seed),
}
"""Table 4 label (prefixed "fitted: ") -> fit(train schnell, aligned train dev, seed) -> filter(images) -> images."""


def fit(name: str, schnell: np.ndarray, dev: np.ndarray, seed: int, max_shift: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """Fit one baseline on training pairs (n, h, w, 3) uint8 (dev aligned to schnell within max_shift px first);
    returns the filter, with its fitted numbers in .params."""
    if name not in FITTERS:
        raise UserError(f"unknown fitted baseline {name!r}; choose from {sorted(FITTERS)}")
    if schnell.shape != dev.shape or len(schnell) < 1:
        raise UserError(f"fitted baseline {name!r} needs paired training images, got {schnell.shape} and {dev.shape}")
    if min(schnell.shape[1:3]) <= 2 * BORDER + 1:
        raise UserError(f"fitted baseline {name!r} needs images larger than {2 * BORDER + 1} px, got {schnell.shape[1:3]}")
    return FITTERS[name](schnell, align(schnell, dev, max_shift), seed)


def label(name: str) -> str:
    return PREFIX + name


def is_fitted(row_label: str) -> bool:
    return row_label.startswith(PREFIX)
