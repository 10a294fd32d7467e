"""Fitted baselines: the cheapest heads, fitted in closed form to the training pairs, that a learned head must beat.

A learned head earns its place only against what a closed-form fit gets from the same pairs for free. Five fits,
each a few milliseconds to a few seconds on 2 cores:
- "detail gains": out = x + sum_k g_k band_k(x), four numbers g_k over difference-of-Gaussians bands of
  the input (the function class of the default detail head, without the network), by least squares;
- "detail gains (energy-matched)": the same four gains, chosen so each band of the output holds as much energy as
  the same band of dev. Where dev's texture is a new instance that schnell does not hold, least squares shrinks
  schnell's own texture towards zero (any amplification of an uncorrelated instance raises the squared error);
  matching the energy instead amplifies it to dev's level: the cheapest filter that looks like dev on average;
- "linear 9×9": out = x + W * x + b, a ridge-regularised linear filter of 9×9 pixels from 3 to 3 channels
  (the output pixel's residual from the 243 input values around it);
- "radial equaliser": per channel of Y/Cb/Cr, gain(r) = sqrt(P_dev(r) / P_schnell(r)) over N_BINS radial
  frequency bins, from the mean Hann-windowed power spectra of the training pairs (3 x 32 = 96 numbers). A
  realism metric built on spectra is a spectral-decay detector, and this is the filter that fools such detectors
  (Dzanic et al. 2020 correct generated spectra this way): the strongest cheap fit of whole-image statistics;
- "radial equaliser (photo-safe)": the same gains with the three guards an engineer adds for photographs: the
  chroma boost capped at a share of the luminance boost, the boost fading out on the flattest pixels, and at strong
  edges the luminance clamped to the input's local range ± a margin. The guard settings are chosen on the
  validation split (never test): the setting nearest dev's spectra there whose damage, measured by the photo rules'
  own metrics on the validation inputs, stays under the register ceilings.
Every fit keeps sums accumulated batch by batch (the normal equations X^T X and X^T y of the least-squares fits, band
energies, power spectra), so the training split streams through and memory does not grow with the number of pairs. Every filter is rebuilt from its fitted numbers alone (`rebuild`): what Table 4 records is what
register can ship. Evaluate scores them as Table 4 rows beside the heads (each with the photo check); register
promotes a head only if it beats the best of them that passes the photo rules (`gate.beats_fitted`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from facerealism.errors import UserError

PREFIX = "fitted: "
SIGMAS = (0.5, 1.0, 2.0, 4.0)  # band k = blur(sigma_k) - blur(sigma_{k+1}); band 0 starts at the image itself
KERNEL = 9  # support of the linear filter (pixels per side)
RIDGE = 1e-3  # Tikhonov weight relative to the mean diagonal of X^T X: keeps the 244-unknown solve well posed
BORDER = 4  # pixels left out of each fit at the image edge: an aligning roll wraps the opposite edge in
MAX_PIXELS = 50_000  # pixels drawn for the normal equations: ~200 rows per unknown, a fit of a few seconds
APPLY_CHUNK = 64  # images a filter computes at once (each image is filtered alone: the chunk changes no pixel)
N_BINS = 32  # radial frequency bins of the equaliser (fewer on images under 64 px: one frequency step per bin)
CHANNELS = ("Y", "Cb", "Cr")  # the equaliser's planes: luminance and the two colour differences (BT.601, full range)
EDGE_QUANTILE = 0.9  # the photo-safe guard's strong edges: the input's top 10 % luminance gradients
WINDOW = 5  # side of the input's local range at those edges (pixels)
# Guard settings tried on the validation split: chroma boost cap (share of the luminance boost), flat quantile
# (no boost below it, full boost from twice it), edge margin (grey levels; None: no clamp).
GUARD_GRID = {"chroma_cap": (1.0, 0.8, 0.65, 0.5, 0.35, 0.0), "flat_quantile": (0.0, 0.25, 0.5),
              "edge_margin": (None, 6.0, 3.0)}

Pairs = Iterable[tuple[np.ndarray, np.ndarray]]  # (schnell, dev) uint8 batches (n, h, w, 3)


class Filter:
    """A fitted baseline: `filter(images)` maps uint8 (n, h, w, 3) to the same shape; `params` are its fitted
    numbers (JSON), enough for `rebuild(name, params)` to give the same filter back."""

    def __init__(self, name: str, params: dict, apply: Callable[[np.ndarray], np.ndarray]):
        self.name, self.params, self._apply = name, params, apply

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise UserError(f"fitted filter {self.name!r} takes uint8 (n, h, w, 3) images, got {images.dtype} "
                            f"{images.shape}")
        # Image by image arithmetic, in chunks: the float64 working arrays stay the size of a chunk, not the split's.
        return np.concatenate([self._apply(images[i : i + APPLY_CHUNK]) for i in range(0, max(len(images), 1),
                                                                                        APPLY_CHUNK)])


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


def _aligned(pairs: Pairs, max_shift: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each batch with dev aligned to its schnell twins, one batch at a time."""
    for schnell, dev in pairs:
        yield schnell, align(schnell, dev, max_shift)


# --- detail gains (least squares, energy-matched) and the linear filter ---------------------------------------

def _gains_filter(name: str, params: dict) -> Filter:
    gains = np.asarray(params["gains"], np.float64)
    if list(params["sigmas"]) != list(SIGMAS) or gains.shape != (len(SIGMAS),):
        raise UserError(f"fitted filter {name!r}: gains {gains.shape} over sigmas {params['sigmas']} do not match "
                        f"this code's bands {SIGMAS}")

    def apply(images: np.ndarray) -> np.ndarray:
        z = images.astype(np.float64)
        return _to_uint8(z + np.tensordot(gains, _bands(z), axes=1))

    return Filter(name, params, apply)


def fit_detail_gains(pairs: Pairs) -> Filter:
    """Per-band gains g (len(SIGMAS),) minimising ||x + sum_k g_k band_k(x) - dev||^2 over every pixel and channel.

    Solved from the normal equations (B^T B) g = B^T (dev - x), their k x k and k sums accumulated over the batches
    of (schnell, dev) pairs: the least-squares answer of all pixels at once, whatever the number of pairs.
    """
    k, b = len(SIGMAS), BORDER
    gram, rhs = np.zeros((k, k)), np.zeros(k)
    for schnell, dev in pairs:
        x, y = schnell.astype(np.float64), dev.astype(np.float64)
        bands = _bands(x)[:, :, b:-b, b:-b].reshape(k, -1)  # (k, pixels * 3); rolled borders left out
        gram += bands @ bands.T
        rhs += bands @ (y - x)[:, b:-b, b:-b].ravel()
    gains, *_ = np.linalg.lstsq(gram, rhs, rcond=None)  # lstsq: flat images leave gram singular
    return _gains_filter("detail gains", {"gains": [float(g) for g in gains], "sigmas": list(SIGMAS)})


def fit_energy_gains(pairs: Pairs) -> Filter:
    """Per-band gains with sum over pixels of band_k(out)^2 ~ band_k(dev)^2: g_k = rms(band_k(dev)) / rms(band_k(x)) - 1.

    Energy is shift-invariant, so misalignment does not matter here; band k of x + g_k band_k(x) is (1 + g_k) band_k(x)
    up to the leakage between neighbouring difference-of-Gaussians levels. The energies are sums over the batches.
    """
    b = BORDER
    ex, ey, values = np.zeros(len(SIGMAS)), np.zeros(len(SIGMAS)), 0
    for schnell, dev in pairs:
        ex += (_bands(schnell.astype(np.float64))[:, :, b:-b, b:-b] ** 2).sum(axis=(1, 2, 3, 4))  # (k,)
        ey += (_bands(dev.astype(np.float64))[:, :, b:-b, b:-b] ** 2).sum(axis=(1, 2, 3, 4))
        values += schnell[:, b:-b, b:-b].size
    gains = np.sqrt((ey / values) / np.maximum(ex / values, 1e-12)) - 1.0
    return _gains_filter("detail gains (energy-matched)", {"gains": [float(g) for g in gains], "sigmas": list(SIGMAS)})


def _linear_filter(name: str, params: dict) -> Filter:
    import torch

    weights = np.asarray(params["weights"], np.float32)  # (3 * K * K + 1, 3): (in channel, dy, dx) rows, then bias
    k = params["kernel"]
    if weights.shape != (3 * k * k + 1, 3):
        raise UserError(f"fitted filter {name!r}: weights {weights.shape} do not fit a {k}×{k} kernel")
    kernel = torch.from_numpy(np.ascontiguousarray(weights[:-1].T.reshape(3, 3, k, k)))  # (out, in, K, K)
    bias = torch.from_numpy(np.ascontiguousarray(weights[-1]))
    r = k // 2

    def apply(images: np.ndarray) -> np.ndarray:
        z = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float().div(255.0)  # (n, 3, h, w)
        with torch.inference_mode():
            res = torch.nn.functional.conv2d(torch.nn.functional.pad(z, (r,) * 4, mode="reflect"), kernel, bias)
        return _to_uint8((z + res).permute(0, 2, 3, 1).numpy() * 255.0)

    return Filter(name, params, apply)


def fit_linear_filter(pairs: Pairs, n: int, seed: int = 0) -> Filter:
    """Ridge regression of dev - schnell on each pixel's KERNEL×KERNEL×3 neighbourhood of schnell (plus a bias).

    Solved in closed form, (X^T X + lambda I) w = X^T y, on at most MAX_PIXELS pixels drawn at random over the `n`
    pairs before the first batch arrives; each batch adds the rows of the pixels drawn in it to X^T X and X^T y.
    The residual form shrinks towards the identity filter, not towards black.

    Args:
        pairs: (schnell, dev) uint8 batches (b, h, w, 3), dev aligned; n: how many pairs they hold in all.
    """
    rng = np.random.default_rng(seed)
    b, r = BORDER, KERNEL // 2
    dy, dx = np.meshgrid(np.arange(KERNEL), np.arange(KERNEL), indexing="ij")
    d = 3 * KERNEL * KERNEL + 1
    gram, rhs, size, start = np.zeros((d, d)), np.zeros((d, 3)), None, 0
    for schnell, dev in pairs:
        if size is None:  # the draw needs the image size: it is made once, the first batch tells it
            size = schnell.shape[1:3]
            h, w = size
            count = min(MAX_PIXELS, n * (h - 2 * b) * (w - 2 * b))
            img, row, col = rng.integers(0, n, count), rng.integers(b, h - b, count), rng.integers(b, w - b, count)
        if schnell.shape[1:3] != size:
            raise UserError(f"fitted baseline 'linear {KERNEL}×{KERNEL}': a batch of {schnell.shape[1:3]} px among "
                            f"images of {size}; the training images must share one size")
        here = (img >= start) & (img < start + len(schnell))  # the drawn pixels in this batch
        i, y0, x0 = img[here] - start, row[here], col[here]
        start += len(schnell)
        x, y = schnell.astype(np.float32) / 255.0, dev.astype(np.float32) / 255.0
        padded = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
        # (m, K, K, 3) neighbourhoods gathered directly: unfolding every image of the batch would take gigabytes.
        nb = padded[i[:, None, None], y0[:, None, None] + dy, x0[:, None, None] + dx]
        nb = nb.transpose(0, 3, 1, 2).reshape(len(i), -1)  # (in channel, dy, dx) order, as conv2d's weight
        X = np.concatenate([nb, np.ones((len(i), 1), np.float32)], axis=1).astype(np.float64)  # (m, d)
        gram += X.T @ X
        rhs += X.T @ (y - x)[i, y0, x0].astype(np.float64)  # (d, 3)
    if start != n:
        raise UserError(f"fitted baseline 'linear {KERNEL}×{KERNEL}' was told of {n} training pairs but read {start}")
    reg = RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
    reg[-1, -1] = 0.0  # the bias is not shrunk
    weights = np.linalg.solve(gram + reg, rhs)  # (d, 3)
    params = {"kernel": KERNEL, "ridge": RIDGE, "pixels": int(count),
              "weights": weights.astype(np.float32).tolist()}  # float32: what the filter computes with
    return _linear_filter(f"linear {KERNEL}×{KERNEL}", params)


# --- the radial spectral equaliser --------------------------------------------------------------------------

# ITU-R BT.601 full range, RGB -> Y, Cb, Cr (rows): the planes of the spectral feature spaces (metrics.spaces), which
# scoring may not import (tests/test_imports.py: LAYERS); test_fitted checks the two agree.
YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def _planes(images: np.ndarray) -> np.ndarray:
    """uint8 (n, h, w, 3) -> float64 (n, 3, h, w) Y, Cb, Cr in grey levels (Cb, Cr centred on 0)."""
    return np.ascontiguousarray((images.astype(np.float64) @ YCBCR.T).transpose(0, 3, 1, 2))


def _rgb(planes: np.ndarray) -> np.ndarray:
    """(n, 3, h, w) Y, Cb, Cr -> uint8 (n, h, w, 3)."""
    return _to_uint8(planes.transpose(0, 2, 3, 1) @ np.linalg.inv(YCBCR).T)


def radial_power(planes: np.ndarray, n_bins: int) -> np.ndarray:
    """(n, h, w) planes -> (n, n_bins) mean power in each radial frequency bin (k/n_bins, (k+1)/n_bins] of the
    normalised radius (1 = Nyquist; the corners beyond it dropped), each plane's mean removed and a Hann window
    applied first: the estimator of the spectral feature spaces (metrics.radial_log_power) before its log10."""
    n, h, w = planes.shape
    radius = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]) / 0.5
    bin_of = np.ceil(radius * n_bins).astype(np.int64) - 1  # DC lands in -1 and is dropped
    keep = (bin_of >= 0) & (bin_of < n_bins)
    counts = np.bincount(bin_of[keep], minlength=n_bins)
    if (counts == 0).any():
        raise UserError(f"{n_bins} radial bins are too fine for {h}x{w} images: some hold no frequency")
    p = (planes - planes.mean(axis=(1, 2), keepdims=True)) * np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2(p)) ** 2  # (n, h, w)
    return np.stack([np.bincount(bin_of[keep], weights=q[keep], minlength=n_bins) for q in power]) / counts


def _n_bins(shape: tuple[int, ...]) -> int:
    return min(N_BINS, min(shape[-2:]) // 2)


class SpectrumSums:
    """Running sums of the per-image mean power in each radial bin, per Y/Cb/Cr plane, of schnell and of dev.

    The same estimator as the spectral feature spaces (`radial_power`: mean removed, Hann window);
    2 x 3 x n_bins numbers whatever the number of pairs, so the training split streams through in batches.
    """

    def __init__(self, n_bins: int | None = None):
        self.n_bins, self.pairs = n_bins, 0
        self.schnell = self.dev = None

    def add(self, schnell: np.ndarray, dev: np.ndarray) -> SpectrumSums:
        if schnell.shape != dev.shape or schnell.ndim != 4 or len(schnell) < 1:
            raise UserError(f"the equaliser needs paired images (n, h, w, 3), got {schnell.shape} and {dev.shape}")
        self.n_bins = self.n_bins or _n_bins(schnell.shape[1:3])
        if _n_bins(schnell.shape[1:3]) < self.n_bins:
            raise UserError(f"images of {schnell.shape[1:3]} px cannot fill {self.n_bins} radial bins")
        if self.schnell is None:
            self.schnell, self.dev = np.zeros((3, self.n_bins)), np.zeros((3, self.n_bins))
        for total, images in ((self.schnell, schnell), (self.dev, dev)):
            planes = _planes(images)
            for c in range(3):
                total[c] += radial_power(planes[:, c], self.n_bins).sum(axis=0)
        self.pairs += len(schnell)
        return self

    def gains(self) -> np.ndarray:
        """(3, n_bins) sqrt(P_dev / P_schnell) per plane and bin."""
        if not self.pairs:
            raise UserError("the equaliser saw no training pairs")
        return np.sqrt(self.dev / np.maximum(self.schnell, 1e-12))


def _gain_field(curve: np.ndarray, h: int, w: int) -> np.ndarray:
    """One plane's gain curve (n_bins,) on the real-FFT grid (h, w // 2 + 1) of an h x w plane: linear between bin
    centres over normalised radius (1 = Nyquist), so the curve means the same at any image size; DC keeps gain 1."""
    n_bins = len(curve)
    radius = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]) / 0.5  # (h, w // 2 + 1)
    field = np.interp(radius, (np.arange(n_bins) + 0.5) / n_bins, curve)
    field[0, 0] = 1.0
    return field


def equalise(planes: np.ndarray, gains: np.ndarray, chunk: int = 16) -> np.ndarray:
    """(n, 3, h, w) planes filtered by one radial gain curve each (gains (3, n_bins)).

    Each plane is mirrored to (2h, 2w) first, so the circular FFT filter sees no jump at the image border (which
    would ring along every edge of the frame).
    """
    from scipy import fft

    n, _, h, w = planes.shape
    fields = np.stack([_gain_field(g, 2 * h, 2 * w) for g in gains])  # (3, 2h, w + 1)
    out = np.empty_like(planes)
    for start in range(0, n, chunk):
        p = np.pad(planes[start : start + chunk], ((0, 0), (0, 0), (0, h), (0, w)), mode="symmetric")
        filtered = fft.irfft2(fft.rfft2(p, workers=-1) * fields, s=(2 * h, 2 * w), workers=-1)
        out[start : start + chunk] = filtered[..., :h, :w]
    return out


def _capped(gains: np.ndarray, chroma_cap: float) -> np.ndarray:
    """Chroma gains whose boost (gain - 1) is at most chroma_cap x the luminance boost in each bin; cuts stay."""
    out = gains.copy()
    ceiling = 1.0 + chroma_cap * np.maximum(gains[0] - 1.0, 0.0)  # (n_bins,)
    out[1:] = np.minimum(gains[1:], ceiling)
    return out


class _GuardMaps:
    """What the guards read of an input (n, 3, h, w), computed once for every guard setting tried on it."""

    def __init__(self, x: np.ndarray):
        from scipy import ndimage

        y = x[:, 0]  # (n, h, w) input luminance
        # Image by image: on the stack, ndimage.sobel would smooth across neighbouring images too (axis 0).
        grad = np.stack([np.hypot(ndimage.sobel(im, axis=0), ndimage.sobel(im, axis=1)) for im in y])
        self.x, self._smooth, self._fades = x, ndimage.uniform_filter(grad, size=(1, 3, 3)), {}
        size = (1, 1, WINDOW, WINDOW)
        self.low, self.high = ndimage.minimum_filter(x, size=size), ndimage.maximum_filter(x, size=size)  # (n, 3, h, w)
        self.edges = (grad >= np.quantile(grad, EDGE_QUANTILE, axis=(1, 2), keepdims=True))[:, None]  # (n, 1, h, w)

    def fade(self, flat_quantile: float) -> np.ndarray:
        """(n, 1, h, w) boost weight: 0 below the smoothed gradient's flat_quantile, 1 from twice that quantile."""
        if flat_quantile not in self._fades:
            s = self._smooth
            lo = np.quantile(s, flat_quantile, axis=(1, 2), keepdims=True)
            hi = np.quantile(s, min(2 * flat_quantile, 1.0), axis=(1, 2), keepdims=True)
            self._fades[flat_quantile] = np.clip((s - lo) / np.maximum(hi - lo, 1e-9), 0.0, 1.0)[:, None]
        return self._fades[flat_quantile]

    def apply(self, e: np.ndarray, flat_quantile: float, edge_margin: float | None) -> np.ndarray:
        """Guarded output planes: x + w (e - x), w fading out on the input's flattest pixels; then, at the input's
        strongest luminance edges, each plane clamped to the input's WINDOW x WINDOW range ± edge_margin grey levels
        (no halo past the edge; the chroma planes too, or clamping luminance alone leaves colour fringes)."""
        out = e if flat_quantile <= 0 else self.x + self.fade(flat_quantile) * (e - self.x)
        if edge_margin is not None:
            out = np.where(self.edges, np.clip(out, self.low - edge_margin, self.high + edge_margin), out)
        return out


def _equaliser_filter(name: str, params: dict) -> Filter:
    gains = np.asarray([params["gains"][c] for c in CHANNELS], np.float64)  # (3, n_bins)
    guards = params.get("guards")
    if guards:
        gains = _capped(gains, guards["chroma_cap"])

    def apply(images: np.ndarray) -> np.ndarray:
        x = _planes(images)
        e = equalise(x, gains)
        if guards:
            e = _GuardMaps(x).apply(e, guards["flat_quantile"], guards["edge_margin"])
        return _rgb(e)

    return Filter(name, params, apply)


def _gains_params(sums: SpectrumSums) -> dict:
    return {"gains": {c: [float(v) for v in g] for c, g in zip(CHANNELS, sums.gains())}, "n_bins": sums.n_bins,
            "train_pairs": sums.pairs}


def fit_equaliser(train: Pairs) -> Filter:
    """The radial equaliser of the training pairs' mean spectra (no alignment: power spectra ignore shifts)."""
    sums = SpectrumSums()
    for schnell, dev in train:
        sums.add(schnell, dev)
    return _equaliser_filter("radial equaliser", _gains_params(sums))


def guard_settings() -> list[dict]:
    """Every guard setting of GUARD_GRID, weakest first."""
    import itertools

    keys = list(GUARD_GRID)
    return [dict(zip(keys, values)) for values in itertools.product(*GUARD_GRID.values())]


def fit_photo_safe_equaliser(train: Pairs, validation: Callable[[], Pairs], photos: list[np.ndarray],
                             limits: dict[str, float], damage: Callable[[np.ndarray, np.ndarray], dict[str, float]]
                             ) -> Filter:
    """The equaliser's gains from `train`, its guards chosen on the validation pairs and `photos`.

    Every setting of GUARD_GRID filters the validation schnell images (one pass): its realism there is how near
    the outputs' mean Y/Cb/Cr log spectra lie to dev's (mean squared log10 difference over channels and bins).
    Then, nearest dev first, settings are tried on the photographs and the validation inputs until one keeps its
    damage (the photo rules' metrics, `damage(inputs, outputs)`, worst image) within `limits` ({metric: ceiling})
    on all of them: that one is chosen. When none does, the strongest guards are chosen and the params say so.

    Args:
        validation: a callable giving a fresh pass over the validation pairs (read once, and once more per
            setting whose photographs pass).
        photos: uint8 (1, s, s, 3) photographs that are not the gate's own (scoring.photo.validation_photos): the
            portraits alone are too gentle to show halos and speckle (no hard edges, no flat sky).
    """
    plain = fit_equaliser(train)
    gains = np.asarray([plain.params["gains"][c] for c in CHANNELS])
    n_bins = plain.params["n_bins"]
    settings = guard_settings()
    capped = {cap: _capped(gains, cap) for cap in sorted({s["chroma_cap"] for s in settings})}

    def log_spectra(planes: np.ndarray) -> np.ndarray:  # (3, n_bins) summed over the batch
        return np.stack([np.log10(radial_power(planes[:, c], n_bins) + 1e-12).sum(axis=0) for c in range(3)])

    def outputs(maps: _GuardMaps, s: dict, cache: dict) -> np.ndarray:
        if s["chroma_cap"] not in cache:
            cache[s["chroma_cap"]] = equalise(maps.x, capped[s["chroma_cap"]])
        return maps.apply(cache[s["chroma_cap"]], s["flat_quantile"], s["edge_margin"])

    log_out, log_dev, n = np.zeros((len(settings), 3, n_bins)), np.zeros((3, n_bins)), 0
    for schnell, dev in validation():
        maps, cache = _GuardMaps(_planes(schnell)), {}
        log_dev += log_spectra(_planes(dev))
        n += len(schnell)
        for i, s in enumerate(settings):
            log_out[i] += log_spectra(outputs(maps, s, cache))
    if not n:
        raise UserError("the photo-safe equaliser chooses its guards on the validation split, which is empty: raise "
                        "split.validation_fraction or drop it from evaluate.fitted")
    distance = ((log_out / n - log_dev / n) ** 2).mean(axis=(1, 2))  # (settings,)

    def within(inputs: Iterable[tuple[np.ndarray, _GuardMaps, dict]], s: dict) -> tuple[bool, dict]:
        """(damage within limits on every input, worst damage seen), stopping at the first input over a limit."""
        worst = dict.fromkeys(limits, 0.0)
        for images, maps, cache in inputs:
            seen = damage(images, _rgb(outputs(maps, s, cache)))
            worst = {k: max(worst[k], float(seen[k])) for k in limits}
            if any(worst[k] > limits[k] for k in limits):
                return False, worst
        return True, worst

    photo_maps = [(photo, _GuardMaps(_planes(photo)), {}) for photo in photos]
    trials, chosen = [{**s, "spectral_distance": float(distance[i])} for i, s in enumerate(settings)], None
    for i in np.argsort(distance, kind="stable"):
        ok, trials[i]["photo_damage"] = within(photo_maps, settings[i])
        if ok:
            portraits = ((schnell, _GuardMaps(_planes(schnell)), {}) for schnell, _ in validation())
            ok, trials[i]["validation_damage"] = within(portraits, settings[i])
        if ok:
            chosen = int(i)
            break
    params = {**plain.params, "guards": settings[len(settings) - 1 if chosen is None else chosen],
              "validation_pairs": n, "validation_photos": len(photos), "limits": dict(limits),
              "met_limits_on_validation": chosen is not None, "trials": trials}
    return _equaliser_filter("radial equaliser (photo-safe)", params)


# --- the registry of fits -------------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[str, dict], Filter]] = {
    "detail gains": _gains_filter,
    "detail gains (energy-matched)": _gains_filter,
    f"linear {KERNEL}×{KERNEL}": _linear_filter,
    "radial equaliser": _equaliser_filter,
    "radial equaliser (photo-safe)": _equaliser_filter,
}
"""Table 4 label (prefixed "fitted: ") -> rebuild(name, fitted numbers) -> the filter."""

@dataclasses.dataclass(frozen=True)
class FitData:
    """What a fit may read: fresh passes over the training pairs (and the validation pairs), never the test split."""

    train: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]
    train_pairs: int | None = None
    """How many pairs a pass over `train` yields, where the caller knows it (else counted in a pass of its own)."""
    validation: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]] | None = None
    seed: int = 0
    max_shift: int = 1
    """dev is aligned to schnell within this many pixels where a fit compares pixels (least squares)."""
    photos: tuple[np.ndarray, ...] = ()
    """Validation photographs (uint8 (1, s, s, 3)), not the gate's own: where photo guards are tuned."""
    limits: dict[str, float] | None = None
    """The photo rules' ceilings {metric: ceiling}: the photo-safe equaliser's guards keep its damage under them."""
    damage: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None
    """damage(inputs, outputs) -> {metric: value}, the photo rules' own measurement."""

    def count(self) -> int:
        """train_pairs, or the pairs of one pass over `train` counted (decoded batch by batch, none kept)."""
        return self.train_pairs if self.train_pairs is not None else sum(len(s) for s, _ in self.train())


FITTERS: dict[str, Callable[[FitData], Filter]] = {
    "detail gains": lambda d: fit_detail_gains(_aligned(d.train(), d.max_shift)),
    "detail gains (energy-matched)": lambda d: fit_energy_gains(_aligned(d.train(), d.max_shift)),
    f"linear {KERNEL}×{KERNEL}": lambda d: fit_linear_filter(_aligned(d.train(), d.max_shift), d.count(), d.seed),
    "radial equaliser": lambda d: fit_equaliser(d.train()),
    "radial equaliser (photo-safe)":
        lambda d: fit_photo_safe_equaliser(d.train(), d.validation, list(d.photos), d.limits, d.damage),
}
"""Table 4 label (prefixed "fitted: ") -> fit(FitData) -> Filter."""

NEEDS_VALIDATION = ("radial equaliser (photo-safe)",)


def _pairs(pairs) -> Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """(schnell, dev) arrays or a callable giving a fresh iterator of such batches -> that callable."""
    if callable(pairs):
        return pairs
    schnell, dev = pairs
    return lambda: iter([(schnell, dev)])


def _checked(name: str, pairs: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]):
    """`pairs` whose every batch is checked to be paired and large enough as it is read."""

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for schnell, dev in pairs():
            if schnell.shape != dev.shape or len(schnell) < 1:
                raise UserError(f"fitted baseline {name!r} needs paired training images, got {schnell.shape} and "
                                f"{dev.shape}")
            if min(schnell.shape[1:3]) <= 2 * BORDER + 1:
                raise UserError(f"fitted baseline {name!r} needs images larger than {2 * BORDER + 1} px, got "
                                f"{schnell.shape[1:3]}")
            yield schnell, dev

    return batches


def fit(name: str, schnell, dev=None, seed: int = 0, max_shift: int = 1, validation=None, photos=(),
        limits: dict[str, float] | None = None, damage=None, train_pairs: int | None = None) -> Filter:
    """Fit one baseline on training pairs; returns the filter, with its fitted numbers in .params.

    Args:
        schnell, dev: training pairs (n, h, w, 3) uint8; or `schnell` alone, a callable returning a fresh iterator
            of (schnell, dev) batches (every fit reads them batch by batch: memory does not grow with the pairs).
        train_pairs: how many pairs that callable yields, where the caller knows it (the linear filter's pixel
            draw needs the number; without it, one more pass counts them).
        validation: the validation pairs, either way; only the photo-safe equaliser reads them.
        photos, limits, damage: see FitData; only the photo-safe equaliser reads them.
    """
    if name not in FITTERS:
        raise UserError(f"unknown fitted baseline {name!r}; choose from {sorted(FITTERS)}")
    if name in NEEDS_VALIDATION and (validation is None or limits is None or damage is None):
        raise UserError(f"fitted baseline {name!r} chooses its guards on the validation split: pass validation "
                        f"pairs, the photo limits and their damage measurement")
    train = _checked(name, _pairs(schnell if dev is None else (schnell, dev)))
    val = _checked(name, _pairs(validation)) if validation is not None else None
    if dev is not None:
        train_pairs = len(schnell)
    return FITTERS[name](FitData(train, train_pairs, val, seed, max_shift, tuple(photos), limits, damage))


def rebuild(name: str, params: dict) -> Filter:
    """The fitted filter `name` from the numbers its fit recorded (Filter.params, table4.json's "fitted")."""
    if name not in BUILDERS:
        raise UserError(f"unknown fitted baseline {name!r}; choose from {sorted(BUILDERS)}")
    try:
        return BUILDERS[name](name, params)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"fitted filter {name!r}: its recorded numbers are incomplete "
                        f"({type(e).__name__}: {e})") from None


FITTED_KEYS = ("gains", "weights", "guards")  # where a filter's fitted numbers live in its params


def size(params: dict) -> int:
    """How many fitted numbers a filter holds (its gains, weights and guard settings; bookkeeping not counted)."""

    def count(v) -> int:
        if isinstance(v, dict):
            return sum(count(x) for x in v.values())
        if isinstance(v, (list, tuple)):
            return sum(count(x) for x in v)
        return int(isinstance(v, (int, float)) and not isinstance(v, bool))

    return sum(count(params[k]) for k in FITTED_KEYS if k in params)


def label(name: str) -> str:
    return PREFIX + name


def name_of(row_label: str) -> str:
    """The fitted baseline's name from its Table 4 label."""
    if not is_fitted(row_label):
        raise UserError(f"{row_label!r} is not a fitted baseline's Table 4 label (those start with {PREFIX!r})")
    return row_label[len(PREFIX):]


def is_fitted(row_label: str) -> bool:
    return row_label.startswith(PREFIX)
