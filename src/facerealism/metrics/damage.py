"""Damage a head can do that texture statistics miss: overshoot at edges (halos, ringing) and clipped highlights."""

from __future__ import annotations

import numpy as np

from facerealism.metrics.checks import check_pairs

_Y = np.array([0.299, 0.587, 0.114])


def _gradient(x: np.ndarray) -> np.ndarray:
    """(n, h, w) Sobel gradient magnitude of each luminance image alone: on the stack, ndimage.sobel would also
    smooth across neighbouring images (axis 0), so an image's edges would depend on the batch it came in."""
    from scipy import ndimage

    return np.stack([np.hypot(ndimage.sobel(im, axis=0), ndimage.sobel(im, axis=1)) for im in x])


def edge_overshoot(inputs: np.ndarray, outputs: np.ndarray, window: int = 5, edge_quantile: float = 0.9) -> float:
    """Mean luminance overshoot (grey levels) beyond the input's local range, at the input's strongest edges.

    Sharpening past the edge draws a bright and a dark fringe on either side of it (a halo; ringing repeats it):
    the output leaves the [min, max] of the input's own window there. Added texture inside smooth regions is not
    counted: only pixels among the input's strongest luminance gradients (top 1 - edge_quantile) are averaged,
    worst image of the batch.

    Args:
        inputs, outputs: (n, h, w, 3) uint8, pairwise.
        window: side of the local range window (pixels).
        edge_quantile: gradient quantile above which a pixel counts as an edge.
    """
    from scipy import ndimage

    check_pairs(inputs, outputs)
    x, y = inputs.astype(np.float64) @ _Y, outputs.astype(np.float64) @ _Y  # (n, h, w)
    size = (1, window, window)
    lo, hi = ndimage.minimum_filter(x, size=size), ndimage.maximum_filter(x, size=size)
    over = np.maximum(y - hi, 0) + np.maximum(lo - y, 0)
    grad = _gradient(x)
    worst = 0.0
    for g, o in zip(grad, over):
        edges = g >= np.quantile(g, edge_quantile)
        worst = max(worst, float(o[edges].mean()))
    return worst


def clipped_gain(inputs: np.ndarray, outputs: np.ndarray) -> float:
    """Share of pixels whose highlights are newly blown out (some channel at 255 in the output, none in the input),
    worst image. Dark clipping is left out: photographs hold large black areas (space, shadows) that any sharpening
    nudges to 0 without visible harm."""
    check_pairs(inputs, outputs)
    clipped_in = (inputs == 255).any(axis=-1)  # (n, h, w)
    clipped_out = (outputs == 255).any(axis=-1)
    return float((clipped_out & ~clipped_in).mean(axis=(1, 2)).max())


def flat_grain(inputs: np.ndarray, outputs: np.ndarray, window: int = 5, flat_quantile: float = 0.5) -> float:
    """RMS luminance grain (grey levels) the output adds in the input's flattest regions: texture in the wrong place.

    A head may add pores and strands where a face has them; on a photograph's sky, wall or flat cloth it should
    add next to nothing, and sharpening adds nothing there either (there is no detail to sharpen). The change
    out - in is taken relative to its own `window`-px local mean, so a tone shift does not count, and averaged over
    pixels whose smoothed input gradient is below its `flat_quantile`, worst image of the batch.

    Args:
        inputs, outputs: (n, h, w, 3) uint8, pairwise.
        window: side of the local mean the change is measured against (pixels).
        flat_quantile: smoothed-gradient quantile under which a pixel counts as flat (0.5: the flattest half; the
            photo check uses 0.25, the flattest quarter, since a 64-px photograph has little flat area).
    """
    from scipy import ndimage

    check_pairs(inputs, outputs)
    x, y = inputs.astype(np.float64) @ _Y, outputs.astype(np.float64) @ _Y  # (n, h, w)
    change = y - x
    grain = change - ndimage.uniform_filter(change, size=(1, window, window))
    grad = ndimage.uniform_filter(_gradient(x), size=(1, 3, 3))
    worst = 0.0
    for g, d in zip(grad, grain):
        flat = g <= np.quantile(g, flat_quantile)
        worst = max(worst, float(np.sqrt((d[flat] ** 2).mean())))
    return worst


def edge_halo(inputs: np.ndarray, outputs: np.ndarray, window: int = 5, reach: int = 3,
              edge_quantile: float = 0.9, tail: float = 0.95, smooth: float = 1.5) -> float:
    """High-quantile luminance overshoot (grey levels) beyond the input's local range *beside* its strongest edges.

    A halo is a light or dark band a few pixels off an edge (above a brow, along a collar), where the output
    leaves the [min, max] of the input's `window` × `window` neighbourhood; `edge_overshoot` looks only at the
    edge pixels themselves and misses a band that sits beside them. Here every pixel within `reach` px of an
    edge (gradient above its `edge_quantile`) counts, and the `tail` quantile of their overshoot over the whole
    batch is returned (a band is a few pixels per edge: a mean would drown it in the rest): on portraits the gate
    compares it with dev's own overshoot over the same inputs, since dev's texture and its small shift off
    schnell leave the local range too.

    Args:
        inputs, outputs: (n, h, w, 3) uint8, pairwise.
        window: side of the local range window (pixels).
        reach: how far from an edge (pixels) a pixel still counts.
        edge_quantile: gradient quantile above which a pixel counts as an edge.
        tail: quantile of the near-edge overshoot returned.
        smooth: sigma (px) of the Gaussian the change output - input is smoothed with first: a band is one-signed
            and a few pixels wide, so it survives, while texture, which swings both ways from pixel to pixel
            (dev's pores included), averages out.
    """
    return halo_quantile(halo_histogram(inputs, outputs, window, reach, edge_quantile, smooth), tail)


HALO_BIN = 1 / 256
"""Width (grey levels) of the near-edge overshoot histogram's bins; the tail quantile is read from it to within it."""
HALO_BINS = 256 * 256  # [0, 256): every overshoot a uint8 image can show


def halo_histogram(inputs: np.ndarray, outputs: np.ndarray, window: int = 5, reach: int = 3,
                   edge_quantile: float = 0.9, smooth: float = 1.5) -> np.ndarray:
    """Counts of the near-edge overshoot of edge_halo (its args), as (HALO_BINS + 1,) int64: the pixels exactly
    inside the local range first (most of them), then bins of HALO_BIN grey levels. Counts of image batches add up,
    so a row's halo is the same read whole or in shards (halo_quantile of the sum)."""
    from scipy import ndimage

    check_pairs(inputs, outputs)
    x, y = inputs.astype(np.float64) @ _Y, outputs.astype(np.float64) @ _Y  # (n, h, w)
    y = x + ndimage.gaussian_filter(y - x, sigma=(0, smooth, smooth))
    size = (1, window, window)
    lo, hi = ndimage.minimum_filter(x, size=size), ndimage.maximum_filter(x, size=size)
    outside = np.maximum(y - hi, 0) + np.maximum(lo - y, 0)  # (n, h, w) grey levels beyond the range
    grad = _gradient(x)
    edges = grad >= np.quantile(grad, edge_quantile, axis=(1, 2), keepdims=True)
    near = ndimage.binary_dilation(edges, structure=np.ones((1, 2 * reach + 1, 2 * reach + 1), bool))
    values = outside[near]
    positive = values[values > 0]
    counts = np.bincount(np.minimum(positive / HALO_BIN, HALO_BINS - 1).astype(np.int64), minlength=HALO_BINS)
    return np.concatenate([[len(values) - len(positive)], counts]).astype(np.int64)


def halo_quantile(counts: np.ndarray, tail: float = 0.95) -> float:
    """The `tail` quantile (numpy's linear rule) of the overshoot counted by halo_histogram: exact where it falls
    among the pixels inside the range (0), else within one bin (values spread evenly across their bin)."""
    total = int(counts.sum())
    if total == 0:
        raise ValueError("no pixels beside edges to measure a halo on")
    pos = tail * (total - 1)

    def value(rank: int) -> float:  # the rank-th smallest overshoot (0-based)
        if rank < counts[0]:
            return 0.0
        cum = np.cumsum(counts[1:]) + counts[0]
        b = int(np.searchsorted(cum, rank, side="right"))
        first = cum[b] - counts[1 + b]  # rank of the bin's smallest value
        return (b + (rank - first + 0.5) / counts[1 + b]) * HALO_BIN

    lo = int(np.floor(pos))
    hi = min(lo + 1, total - 1)
    return float(value(lo) + (pos - lo) * (value(hi) - value(lo)))
