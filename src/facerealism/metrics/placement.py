"""Where texture sits: features of an image *beside the schnell image it came from*, for a conditional C2ST.

Whole-image statistics (spectra, random-conv channel statistics) cannot tell texture that follows the face from
the same amount of texture pasted from another face, or from a filter that gives every pixel the same spectral
gain. But dev is an img2img of its own schnell image: its pores and strands sit on the skin and hair of *that*
face. So the pair (schnell_i, x_i) is the sample, and each candidate is compared with (schnell_i, dev_i) by a
classifier that sees how x's local detail is laid out against schnell_i's content: whether it grows where
schnell_i has skin, hair and edges, keeps schnell_i's own detail in phase, and adds energy in proportion to it.
"""

from __future__ import annotations

import numpy as np

from facerealism.metrics.checks import check_pairs

# ITU-R BT.601 RGB -> Y, Cb, Cr on 0..255 values (Cb, Cr centred on 0).
_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
BANDS = (1.0,)
"""Gaussian scales (px at the image's size) that split detail into bands: Y - G(1), ...; (1.0,): the texture band
every detail measure and control of this project uses (above a sigma-1 blur)."""
_EPS = 1.0  # grey levels², so log energy of a flat block is finite and ~0, not -inf


def _bands(y: np.ndarray) -> list[np.ndarray]:
    from scipy import ndimage

    smooth = [y] + [ndimage.gaussian_filter(y, sigma=(0, s, s), mode="nearest") for s in BANDS]
    return [smooth[k] - smooth[k + 1] for k in range(len(BANDS))]  # each (n, h, w)


def _blocks(maps: np.ndarray, block: int) -> np.ndarray:
    """(n, h, w) -> (n, h//block * w//block) block means (the border remainder dropped)."""
    n, h, w = maps.shape
    bh, bw = h // block, w // block
    m = maps[:, : bh * block, : bw * block].reshape(n, bh, block, bw, block)
    return m.mean(axis=(2, 4)).reshape(n, bh * bw)


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of (n, k) arrays; 0 where either row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
    return np.where(den > 1e-12, (a * b).sum(axis=1) / np.maximum(den, 1e-12), 0.0)


def placement_features(inputs: np.ndarray, images: np.ndarray, grids: tuple[int, ...] = (16, 8, 4)) -> np.ndarray:
    """Features of where each image's detail sits relative to its input (its schnell image), not how much.

    Luminance detail is split into bands (`BANDS`); each image and its input are cut into a g × g grid for each
    g in `grids`. Per image, band and grid: the spatial correlation, across blocks, of the image's log detail
    energy with five maps of the input (its own log detail energy, its edge strength, and its mean Y, Cb and Cr:
    the skin, hair, edges and background of that face), and the spread across blocks of the log energy gain
    over the input (a filter that gives every pixel the same gain has none; pasted texture has another face's).
    Correlations and a spread do not move when all detail is scaled: the amount is the whole-image C2ST's
    business, the layout is this one's.

    Args:
        inputs: (n, h, w, 3) uint8 schnell images.
        images: (n, h, w, 3) uint8 images paired with them (dev, or a candidate's outputs on `inputs`).
        grids: grid sides; every block must be at least 4 px.

    Returns:
        (n, 6 * len(BANDS) * len(grids)) float64 features.
    """
    from scipy import ndimage

    check_pairs(inputs, images)
    n, h, w, _ = inputs.shape
    if min(h, w) // max(grids) < 4:
        raise ValueError(f"placement features need blocks of >= 4 px; {h}x{w} images cut {max(grids)} ways are smaller")
    s = inputs.astype(np.float64) @ _YCC.T  # (n, h, w, 3): Y, Cb, Cr
    x = images.astype(np.float64) @ _YCC.T
    sb, xb = _bands(s[..., 0]), _bands(x[..., 0])
    low = ndimage.gaussian_filter(s[..., 0], sigma=(0, BANDS[-1], BANDS[-1]), mode="nearest")
    edges = np.hypot(ndimage.sobel(low, axis=1), ndimage.sobel(low, axis=2))  # (n, h, w): the input's structure
    feats = []
    for g in grids:
        block = min(h, w) // g
        energy = lambda band: np.log(_blocks(band**2, block) + _EPS)  # noqa: E731  (n, g*g) log local energy
        maps = [np.log(_blocks(edges, block) + _EPS)] + [_blocks(s[..., c], block) for c in range(3)]
        for k in range(len(BANDS)):
            ex, es = energy(xb[k]), energy(sb[k])
            feats += [_corr(ex, m) for m in (es, *maps)]
            feats.append((ex - es).std(axis=1))
    return np.stack(feats, axis=1)
