"""Negative controls: cheap filters on the held-out schnell images that a sound realism gate must reject.

Each one adds high-frequency energy without knowing what a face is (noise, sharpening), puts texture in the wrong
place (grain on flat background and clothing), draws halos and ringing at edges, or blows out highlights: the ways
a metric that only counts high frequencies is fooled, and the damage a head can do. Evaluate scores them as Table 4 rows beside the heads;
register runs each through the promotion gate and refuses to promote anything while one of them passes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from facerealism.errors import UserError

_Y = np.array([0.299, 0.587, 0.114])


def _noise(images: np.ndarray, sigma: float, luma: bool, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n, h, w, _ = images.shape
    # Luminance noise is one field added to all three channels (grey grain); RGB noise draws each channel
    # apart, which is colour speckle.
    field = rng.standard_normal((n, h, w, 1 if luma else 3)) * sigma
    return np.clip(images.astype(np.float64) + field + 0.5, 0, 255).astype(np.uint8)


def _pil(images: np.ndarray, filt: ImageFilter.Filter) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(img).filter(filt)) for img in images])


def _detail_gain(images: np.ndarray, gain: float) -> np.ndarray:
    # The content-blind version of what a detail head does: amplify everything above a sigma-1 blur.
    from scipy import ndimage

    x = images.astype(np.float64)
    high = x - ndimage.gaussian_filter(x, sigma=(0, 1.0, 1.0, 0), mode="nearest")
    return np.clip(x + gain * high + 0.5, 0, 255).astype(np.uint8)


def _grain_on_flat(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    # Texture in the wrong place: grey grain only where the image is flat (background, plain clothing, the
    # smooth parts of skin), none on the hair and edges where dev's detail lives.
    from scipy import ndimage

    x = images.astype(np.float64)
    y = x @ _Y  # (n, h, w)
    local_std = np.sqrt(np.maximum(ndimage.uniform_filter(y**2, size=(1, 5, 5))
                                   - ndimage.uniform_filter(y, size=(1, 5, 5)) ** 2, 0))
    flat = (local_std < np.quantile(local_std, 0.5, axis=(1, 2), keepdims=True))[..., None]  # (n, h, w, 1)
    field = np.random.default_rng(seed).standard_normal(y.shape)[..., None] * sigma
    return np.clip(x + flat * field + 0.5, 0, 255).astype(np.uint8)


def _ringing(images: np.ndarray, cutoff: float, boost: float) -> np.ndarray:
    # Over-sharpening with a brick-wall low-pass (Gibbs): every edge gets repeated fringes, a ringing halo.
    x = images.astype(np.float64)
    f = np.fft.fft2(x, axes=(1, 2))
    fy, fx = np.fft.fftfreq(x.shape[1])[:, None], np.fft.fftfreq(x.shape[2])[None, :]
    low = np.real(np.fft.ifft2(f * (np.hypot(fy, fx) <= cutoff)[None, :, :, None], axes=(1, 2)))
    return np.clip(x + boost * (x - low) + 0.5, 0, 255).astype(np.uint8)


def _clip_highlights(images: np.ndarray, gain: float) -> np.ndarray:
    # Blown highlights: a brightness gain that saturates the brightest skin, catchlights and clothing at 255.
    return np.clip(images.astype(np.float64) * gain + 0.5, 0, 255).astype(np.uint8)


CONTROLS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "luma noise σ4": lambda x, seed: _noise(x, 4.0, True, seed),
    "luma noise σ8": lambda x, seed: _noise(x, 8.0, True, seed),
    "luma noise σ16": lambda x, seed: _noise(x, 16.0, True, seed),
    "RGB noise σ4": lambda x, seed: _noise(x, 4.0, False, seed),
    "RGB noise σ8": lambda x, seed: _noise(x, 8.0, False, seed),
    "RGB noise σ16": lambda x, seed: _noise(x, 16.0, False, seed),
    "unsharp r1 100%": lambda x, seed: _pil(x, ImageFilter.UnsharpMask(radius=1, percent=100, threshold=0)),
    "unsharp r2 200%": lambda x, seed: _pil(x, ImageFilter.UnsharpMask(radius=2, percent=200, threshold=0)),
    "detail gain ×1": lambda x, seed: _detail_gain(x, 1.0),
    "detail gain ×2": lambda x, seed: _detail_gain(x, 2.0),
    "grain on flat regions σ8": lambda x, seed: _grain_on_flat(x, 8.0, seed),
    "ringing (brick-wall sharpen)": lambda x, seed: _ringing(x, 0.15, 1.5),
    "halo: unsharp r3 300%": lambda x, seed: _pil(x, ImageFilter.UnsharpMask(radius=3, percent=300, threshold=0)),
    "clipped highlights ×1.3": lambda x, seed: _clip_highlights(x, 1.3),
}
"""Table 4 label (prefixed "control: ") -> filter(images (n, h, w, 3) uint8, seed) -> images of the same shape."""

PREFIX = "control: "


def apply(name: str, images: np.ndarray, seed: int) -> np.ndarray:
    """One control's output on uint8 images (n, h, w, 3); seeded, so a rerun gives the same pixels."""
    if name not in CONTROLS:
        raise UserError(f"unknown control {name!r}; choose from {sorted(CONTROLS)}")
    return CONTROLS[name](images, seed)


def label(name: str) -> str:
    """The control's Table 4 row label."""
    return PREFIX + name


def is_control(row_label: str) -> bool:
    return row_label.startswith(PREFIX)
