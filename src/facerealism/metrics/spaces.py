"""Offline feature spaces (no downloads) that see the texture gap between schnell and dev, and detail energies."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from facerealism.data.split import to_tensor
from facerealism.errors import UserError
from facerealism.metrics.checks import check_images, check_pairs


# ITU-R BT.601 RGB -> Y, Cb, Cr (rows), on [0, 1] values: Y is luminance, Cb/Cr the two colour-difference axes.
_RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114],
                          [-0.168736, -0.331264, 0.5],
                          [0.5, -0.418688, -0.081312]])


def radial_log_power(planes: np.ndarray, n_bins: int | None = None, chunk: int = 64) -> np.ndarray:
    """Radial log power-spectrum profile of each plane.

    Args:
        planes: (n, h, w) float images (one channel each).
        n_bins: radial bins over normalised frequency (0, 1], 1 = Nyquist; default min(h, w) // 2, i.e. one
            frequency step per bin.
        chunk: planes per FFT batch (bounds memory on large images).

    Returns:
        (n, n_bins) float64 log10 of the mean power in each bin.
    """
    n, h, w = planes.shape
    n_bins = min(h, w) // 2 if n_bins is None else n_bins
    if n_bins < 1:
        raise UserError(f"n_bins must be >= 1, got {n_bins} (images are {h}x{w})")
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    radius = np.sqrt(fy**2 + fx**2) / 0.5  # (h, w); corners beyond 1 are not isotropic and are dropped
    # Bin k covers (k/n_bins, (k+1)/n_bins]; DC lands in -1 and is dropped since the mean is removed anyway.
    bin_of = np.ceil(radius * n_bins).astype(np.int64) - 1
    keep = (bin_of >= 0) & (bin_of < n_bins)
    counts = np.bincount(bin_of[keep], minlength=n_bins)
    if (counts == 0).any():
        raise UserError(f"n_bins={n_bins} is too fine for {h}x{w} images: some bins hold no frequency")
    # Each bin's frequencies side by side, so a bin's mean is a sum in a fixed order: a matrix product with a one-hot
    # matrix would do the same, but OpenBLAS splits it differently by thread count (its last bits move on AMD Zen 5).
    by_bin = np.flatnonzero(keep.ravel())[np.argsort(bin_of[keep], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # A window stops the image border's jump from smearing power across all frequencies.
    window = np.outer(np.hanning(h), np.hanning(w))
    out = np.empty((n, n_bins))
    for start in range(0, n, chunk):
        p = planes[start : start + chunk]
        p = p - p.mean(axis=(1, 2), keepdims=True)
        power = np.abs(np.fft.fft2(p * window)) ** 2  # (c, h, w)
        sums = np.add.reduceat(power.reshape(len(p), -1)[:, by_bin], starts, axis=1)
        out[start : start + chunk] = np.log10(sums / counts + 1e-12)
    return out


def _ycbcr(images: np.ndarray, channel: int) -> np.ndarray:
    return images.astype(np.float64) @ _RGB_TO_YCBCR[channel] / 255.0  # (n, h, w)


def spectral_features(images: np.ndarray, n_bins: int | None = None, chunk: int = 64) -> np.ndarray:
    """Radial log power-spectrum profile of each image's luminance (Y).

    Args:
        images: (n, h, w, 3) uint8.
        n_bins: see `radial_log_power`.
        chunk: images per FFT batch.

    Returns:
        (n, n_bins) float64.
    """
    check_images(images)
    return radial_log_power(_ycbcr(images, 0), n_bins, chunk)


def high_frequency_energy(images: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Mean squared detail (the plane minus its Gaussian blur) of Y, Cb and Cr per image.

    Args:
        images: (n, h, w, 3) uint8.
        sigma: blur in pixels; detail finer than about 2 sigma counts.

    Returns:
        (n, 3) float64: [Y, Cb, Cr] energies on [0, 1] values.
    """
    from scipy import ndimage

    check_images(images)
    planes = images.astype(np.float64) @ _RGB_TO_YCBCR.T / 255.0  # (n, h, w, 3)
    detail = planes - ndimage.gaussian_filter(planes, sigma=(0, sigma, sigma, 0), mode="nearest")
    return (detail**2).mean(axis=(1, 2))


def colour_noise_gain(inputs: np.ndarray, outputs: np.ndarray) -> float:
    """How much more a filter raised chroma detail than luminance detail, worst image and chroma plane.

    (chroma HF energy out / in) / max(1, luminance HF energy out / in): sharpening that lifts colour edges no
    more than brightness edges reads <= 1; colour speckle (chroma noise on skin, sky, walls) reads well above.

    Args:
        inputs, outputs: (n, h, w, 3) uint8, pairwise.
    """
    check_pairs(inputs, outputs)
    e_in, e_out = high_frequency_energy(inputs), high_frequency_energy(outputs)
    ratio = e_out / np.maximum(e_in, 1e-12)  # (n, 3)
    return float((ratio[:, 1:] / np.maximum(ratio[:, :1], 1.0)).max())


def spectral_chroma_features(images: np.ndarray, n_bins: int | None = None, chunk: int = 64) -> np.ndarray:
    """Radial log power spectra of the two chroma planes (Cb, Cr), side by side.

    Colour speckle raises chroma power at high frequencies, while grain that follows the skin's own colour
    leaves it nearly where it was: the space that tells the two apart, which luminance spectra cannot.

    Returns:
        (n, 2 * n_bins) float64: [Cb profile, Cr profile].
    """
    check_images(images)
    return np.concatenate([radial_log_power(_ycbcr(images, c), n_bins, chunk) for c in (1, 2)], axis=1)


def _random_conv_weights(seed: int, widths: Sequence[int]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    weights, c_in = [], 3
    for c_out in widths:
        # He scaling keeps ReLU activations at a stable magnitude through layers without any normalisation.
        weights.append(torch.randn(c_out, c_in, 3, 3, generator=g) * math.sqrt(2.0 / (c_in * 9)))
        c_in = c_out
    return weights


def random_conv_features(
    images: np.ndarray, seed: int = 0, widths: Sequence[int] = (16, 32, 64), batch_size: int = 64
) -> np.ndarray:
    """Per-channel mean and std of activations of a fixed, seeded, shallow random ReLU conv net.

    No normalisation layers: they would divide out exactly the activation energy that texture changes. The
    first layer runs at full resolution (pixel-scale texture); each later one has stride 2 (coarser scales).

    Args:
        images: (n, h, w, 3) uint8, scaled to [-1, 1] before the net.
        seed: seed of the weights; same seed -> same features.
        widths: output channels per layer.
        batch_size: images per forward pass.

    Returns:
        (n, 2 * sum(widths)) float64: [mean_1, std_1, mean_2, std_2, ...].
    """
    check_images(images)
    weights = _random_conv_weights(seed, widths)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = to_tensor(images[start : start + batch_size])  # (b, 3, h, w)
            stats = []
            for i, weight in enumerate(weights):
                x = F.relu(F.conv2d(x, weight, stride=1 if i == 0 else 2, padding=1))  # (b, c, h', w')
                stats += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
            out.append(torch.cat(stats, dim=1))
    return torch.cat(out).double().numpy()


@dataclass(frozen=True)
class FeatureSpace:
    """One offline feature space: called on uint8 (n, h, w, 3) images it gives their (n, d) features."""

    extract: Callable[[np.ndarray], np.ndarray]
    about: str
    """What it measures, in a few words (Table 4's notes)."""

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.extract(images)


# Adding a space: one entry here (and, to score it, its name in params.yaml's evaluate.spaces); the config's choices,
# the FD rows, the C2ST, the gate's metric names and Table 4's notes read this dict.
FEATURE_SPACES: dict[str, FeatureSpace] = {
    "spectral": FeatureSpace(spectral_features, "radial log power spectrum of luminance"),
    "spectral_chroma": FeatureSpace(spectral_chroma_features, "the same of Cb and Cr"),
    "random_conv": FeatureSpace(random_conv_features, "statistics of a seeded random conv net"),
}
