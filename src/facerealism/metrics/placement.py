"""Where texture sits: does a candidate lay its detail out like the dev twin of each of its inputs?

Whole-image statistics (spectra, random-conv channel statistics) cannot tell texture that follows the face from
the same amount of texture pasted from another face, or from a filter that gives every pixel the same spectral
gain. But the test pairs are aligned in content (dev is an img2img of its own schnell image), so each output can
be held against the one image that shows where *its* face's pores and strands go: its input's dev twin. The
measure is paired and directional: how much closer the output's map of local detail energy is to its dev twin's
than its input's was. Texture pasted from another face, grain on flat regions, noise and a spectral gain that is
the same everywhere all move the map away from dev's; dev's own texture in dev's place moves it toward.
"""

from __future__ import annotations

import numpy as np

from facerealism.errors import UserError
from facerealism.metrics.checks import check_pairs

_Y = np.array([0.299, 0.587, 0.114])
DETAIL_SIGMA = 1.0
"""Detail is luminance above a Gaussian blur of this sigma (px): the band every detail measure and control of this
project uses."""
GRIDS = (8, 4)
"""The detail-energy maps' grids (g × g blocks); 8 × 8 on a 64 px image: 8 px blocks, a pore patch or a brow."""
_EPS = 1.0  # grey levels², so the log energy of a flat block is finite (~0), not -inf


def detail_layout(images: np.ndarray, grids: tuple[int, ...] = GRIDS) -> list[np.ndarray]:
    """Log local detail energy of each image, one (n, g*g) map per grid side g in `grids` (blocks >= 4 px)."""
    from scipy import ndimage

    n, h, w, _ = images.shape
    if min(h, w) // max(grids) < 4:
        raise UserError(f"detail maps need blocks of >= 4 px; {h}x{w} images cut {max(grids)} ways are smaller")
    y = images.astype(np.float64) @ _Y  # (n, h, w)
    detail = y - ndimage.gaussian_filter(y, sigma=(0, DETAIL_SIGMA, DETAIL_SIGMA), mode="nearest")
    maps = []
    for g in grids:
        b = min(h, w) // g
        e = (detail[:, : g * b, : g * b] ** 2).reshape(n, g, b, g, b).mean(axis=(2, 4))  # (n, g, g)
        maps.append(np.log(e.reshape(n, g * g) + _EPS))
    return maps


def layout_agreement(images: np.ndarray, twins: np.ndarray, grids: tuple[int, ...] = GRIDS) -> np.ndarray:
    """(n,) spatial correlation of each image's detail-energy map with its twin's, averaged over `grids`."""
    check_pairs(images, twins)
    per_grid = []
    for a, b in zip(detail_layout(images, grids), detail_layout(twins, grids)):
        a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
        den = np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
        per_grid.append(np.where(den > 1e-12, (a * b).sum(axis=1) / np.maximum(den, 1e-12), 0.0))
    return np.mean(per_grid, axis=0)


def placement_gain(inputs: np.ndarray, outputs: np.ndarray, dev: np.ndarray, n_boot: int = 200,
                   seed: int = 0) -> dict:
    """How much closer each output's detail layout is to its dev twin's than its input's was.

    gain_i = corr(layout(output_i), layout(dev_i)) - corr(layout(input_i), layout(dev_i)), averaged over pairs,
    with a percentile bootstrap over pairs. > 0: detail moved to where dev puts it; < 0: detail where dev has
    none (another face's texture, grain on flat regions, noise, a gain that is the same everywhere).

    Args:
        inputs: (n, h, w, 3) uint8 schnell images.
        outputs: (n, h, w, 3) uint8 candidate outputs on `inputs`.
        dev: (n, h, w, 3) uint8 dev twins of `inputs`.
        n_boot: bootstrap resamples of the pairs (>= 1).
        seed: seeds the bootstrap.

    Returns:
        {"gain", "ci": [2.5 %, 97.5 %], "share": gain over the input's own shortfall 1 - corr(input, dev)
        (1: layout as dev's), "n"}.
    """
    check_pairs(inputs, dev)
    return placement_summary(placement_pairs(inputs, outputs, dev), n_boot, seed)


def placement_pairs(inputs: np.ndarray, outputs: np.ndarray, dev: np.ndarray) -> np.ndarray:
    """(n, 2) per pair: the output's and the input's layout agreement with the dev twin; placement_summary of
    batches' rows stacked is placement_gain of the whole set."""
    return np.column_stack([layout_agreement(outputs, dev), layout_agreement(inputs, dev)])


def placement_summary(pairs: np.ndarray, n_boot: int = 200, seed: int = 0) -> dict:
    """placement_gain's result from placement_pairs' rows (its args)."""
    if n_boot < 1:
        raise UserError(f"n_boot must be >= 1, got {n_boot}")
    base = pairs[:, 1]
    diff = pairs[:, 0] - base  # (n,)
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(n_boot, len(diff)))
    boot = diff[idx].mean(axis=1)
    shortfall = float(np.mean(1.0 - base))
    return {"gain": float(diff.mean()), "ci": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
            "share": float(diff.mean() / shortfall) if shortfall > 1e-12 else 0.0, "n": len(diff)}
