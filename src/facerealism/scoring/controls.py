"""Negative controls: cheap filters on the held-out schnell images that a sound realism gate must reject.

Each one adds high-frequency energy without knowing what a face is (noise, sharpening), puts texture in the wrong
place (grain on flat background and clothing), draws halos and ringing at edges, or blows out highlights: the ways
a metric that only counts high frequencies is fooled, and the damage a head can do. Evaluate scores them as Table 4 rows beside the heads;
register runs each through the promotion gate and refuses to promote anything while one of them passes.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from facerealism.errors import UserError

_Y = np.array([0.299, 0.587, 0.114])
CHUNK = 64  # images a control computes at once: its float64 working arrays stay a chunk's size, not the test split's


def _chunks(n: int) -> list[slice]:
    return [slice(i, i + CHUNK) for i in range(0, max(n, 1), CHUNK)]


def _in_chunks(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """`fn(images, *args)` on CHUNK images at a time, concatenated: for a filter that treats each image alone, the
    same pixels as one call on all of them."""

    @functools.wraps(fn)
    def chunked(images: np.ndarray, *args) -> np.ndarray:
        return np.concatenate([fn(images[part], *args) for part in _chunks(len(images))])

    return chunked


def _noise(images: np.ndarray, sigma: float, luma: bool, rng: np.random.Generator) -> np.ndarray:
    out = []
    for part in _chunks(len(images)):
        x = images[part]
        # Luminance noise is one field added to all three channels (grey grain); RGB noise draws each channel
        # apart, which is colour speckle. Drawn chunk after chunk from one RNG: the numbers of one draw for all.
        field = rng.standard_normal((*x.shape[:3], 1 if luma else 3)) * sigma
        out.append(np.clip(x.astype(np.float64) + field + 0.5, 0, 255).astype(np.uint8))
    return np.concatenate(out)


def _pil(images: np.ndarray, filt: ImageFilter.Filter) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(img).filter(filt)) for img in images])


@_in_chunks
def _detail_gain(images: np.ndarray, gain: float) -> np.ndarray:
    # The content-blind version of what a detail head does: amplify everything above a sigma-1 blur.
    from scipy import ndimage

    x = images.astype(np.float64)
    high = x - ndimage.gaussian_filter(x, sigma=(0, 1.0, 1.0, 0), mode="nearest")
    return np.clip(x + gain * high + 0.5, 0, 255).astype(np.uint8)


def _grain_on_flat(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    # Texture in the wrong place: grey grain only where the image is flat (background, plain clothing, the
    # smooth parts of skin), none on the hair and edges where dev's detail lives.
    from scipy import ndimage

    out = []
    for part in _chunks(len(images)):  # the grain drawn chunk after chunk from one RNG, as _noise
        x = images[part].astype(np.float64)
        y = x @ _Y  # (n, h, w)
        local_std = np.sqrt(np.maximum(ndimage.uniform_filter(y**2, size=(1, 5, 5))
                                       - ndimage.uniform_filter(y, size=(1, 5, 5)) ** 2, 0))
        flat = (local_std < np.quantile(local_std, 0.5, axis=(1, 2), keepdims=True))[..., None]  # (n, h, w, 1)
        field = rng.standard_normal(y.shape)[..., None] * sigma
        out.append(np.clip(x + flat * field + 0.5, 0, 255).astype(np.uint8))
    return np.concatenate(out)


@_in_chunks
def _ringing(images: np.ndarray, cutoff: float, boost: float) -> np.ndarray:
    # Over-sharpening with a brick-wall low-pass (Gibbs): every edge gets repeated fringes, a ringing halo.
    x = images.astype(np.float64)
    f = np.fft.fft2(x, axes=(1, 2))
    fy, fx = np.fft.fftfreq(x.shape[1])[:, None], np.fft.fftfreq(x.shape[2])[None, :]
    low = np.real(np.fft.ifft2(f * (np.hypot(fy, fx) <= cutoff)[None, :, :, None], axes=(1, 2)))
    return np.clip(x + boost * (x - low) + 0.5, 0, 255).astype(np.uint8)


@_in_chunks
def _high_pass(images: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    from scipy import ndimage

    x = images.astype(np.float64)
    return x - ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest")  # (n, h, w, 3)


def _skin(images: np.ndarray) -> np.ndarray:
    """(n, h, w, 1) soft mask of skin-coloured pixels: the classic YCbCr box (Cb 77..127, Cr 133..173), blurred
    by 1 px so the mask has no hard rim of its own."""
    from scipy import ndimage

    ycc = images.astype(np.float64) @ np.array([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]).T + 128
    box = (ycc[..., 0] >= 77) & (ycc[..., 0] <= 127) & (ycc[..., 1] >= 133) & (ycc[..., 1] <= 173)
    return ndimage.gaussian_filter(box.astype(np.float64), sigma=(0, 1, 1))[..., None]


def _pasted_texture(images: np.ndarray, donors: np.ndarray, skin_only: bool) -> np.ndarray:
    # Misplaced texture with dev's exact statistics: each schnell image gets the sigma-1 high-pass of *another*
    # test pair's dev image (its donor: the previous pair's, see Control.donors), so its detail follows that
    # face's skin, hair and edges, not its own. skin_only keeps it to this image's skin-coloured pixels: roughly
    # placed, still another face's detail.
    detail = _high_pass(donors)
    if skin_only:
        detail = detail * _skin(images)
    return np.clip(images.astype(np.float64) + detail + 0.5, 0, 255).astype(np.uint8)


def _light_band(images: np.ndarray, lift: float, offset: int, width: int) -> np.ndarray:
    # The halo a head draws above brows and hairlines: a band `width` px tall, `offset` px above every strong
    # horizontal edge whose upper side is the brighter one, lifted by `lift` grey levels and softened by 1 px.
    from scipy import ndimage

    x = images.astype(np.float64)
    y = x @ _Y  # (n, h, w)
    gy = ndimage.sobel(y, axis=1)  # > 0: brighter below
    strong = -gy >= np.quantile(np.abs(gy), 0.9, axis=(1, 2), keepdims=True)  # brighter above, dark below (a brow)
    band = np.zeros_like(y)
    for d in range(offset, offset + width):
        band[:, :-d] = np.maximum(band[:, :-d], strong[:, d:])
    band = ndimage.gaussian_filter(band, sigma=(0, 1, 1))[..., None]
    return np.clip(x + lift * band + 0.5, 0, 255).astype(np.uint8)


@_in_chunks
def _clip_highlights(images: np.ndarray, gain: float) -> np.ndarray:
    # Blown highlights: a brightness gain that saturates the brightest skin, catchlights and clothing at 255.
    return np.clip(images.astype(np.float64) * gain + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Control:
    """One negative control: `filter(schnell images (n, h, w, 3) uint8, noise generator, donors)` -> images of the
    same shape. Each image is filtered alone but for the fields below, which say what else reaches it: how evaluate's
    shards (scoring.shards) make any part of the row with the pixels of one call on the whole row."""

    filter: Callable[[np.ndarray, np.random.Generator, np.ndarray | None], np.ndarray]
    noise: int = 0
    """Standard normals it draws per pixel (0: none): how a part of the row finds its place in the stream."""
    donors: bool = False
    """It reads the dev image of the previous test pair beside each schnell image (the first takes the last's);
    None is passed to the others."""
    reach: int = 0
    """Neighbouring images on each side whose pixels reach an image's output: the light band's ndimage.sobel also
    smooths across the stack of images ([1, 2, 1] over the image axis; kept, so Table 4's numbers stay as they
    were). A part of the row is computed with them, then cut back."""


CONTROLS: dict[str, Control] = {
    "luma noise σ4": Control(lambda x, rng, donors: _noise(x, 4.0, True, rng), noise=1),
    "luma noise σ8": Control(lambda x, rng, donors: _noise(x, 8.0, True, rng), noise=1),
    "luma noise σ16": Control(lambda x, rng, donors: _noise(x, 16.0, True, rng), noise=1),
    "RGB noise σ4": Control(lambda x, rng, donors: _noise(x, 4.0, False, rng), noise=3),
    "RGB noise σ8": Control(lambda x, rng, donors: _noise(x, 8.0, False, rng), noise=3),
    "RGB noise σ16": Control(lambda x, rng, donors: _noise(x, 16.0, False, rng), noise=3),
    "unsharp r1 100%": Control(lambda x, rng, donors: _pil(x, ImageFilter.UnsharpMask(radius=1, percent=100,
                                                                                       threshold=0))),
    "unsharp r2 200%": Control(lambda x, rng, donors: _pil(x, ImageFilter.UnsharpMask(radius=2, percent=200,
                                                                                       threshold=0))),
    "detail gain ×1": Control(lambda x, rng, donors: _detail_gain(x, 1.0)),
    "detail gain ×2": Control(lambda x, rng, donors: _detail_gain(x, 2.0)),
    "grain on flat regions σ8": Control(lambda x, rng, donors: _grain_on_flat(x, 8.0, rng), noise=1),
    "ringing (brick-wall sharpen)": Control(lambda x, rng, donors: _ringing(x, 0.15, 1.5)),
    "halo: unsharp r3 300%": Control(lambda x, rng, donors: _pil(x, ImageFilter.UnsharpMask(radius=3, percent=300,
                                                                                             threshold=0))),
    "clipped highlights ×1.3": Control(lambda x, rng, donors: _clip_highlights(x, 1.3)),
    "halo: light band above edges": Control(lambda x, rng, donors: _light_band(x, 24.0, 1, 3), reach=1),
    "texture pasted from another dev image": Control(lambda x, rng, donors: _pasted_texture(x, donors, False),
                                                     donors=True),
    "texture pasted from another dev image, skin only": Control(
        lambda x, rng, donors: _pasted_texture(x, donors, True), donors=True),
}
"""Table 4 label (prefixed "control: ") -> the control. Only the pasted-texture controls read dev images."""

PREFIX = "control: "


def apply(name: str, images: np.ndarray, seed: int, dev: np.ndarray | None = None) -> np.ndarray:
    """One control's output on uint8 schnell images (n, h, w, 3); seeded, so a rerun gives the same pixels.
    `dev`: their dev twins, which the pasted-texture controls take their detail from."""
    donors = None
    if _control(name).donors:
        if dev is None or dev.shape != images.shape or len(images) < 2:
            raise UserError("the pasted-texture controls need the dev twins of >= 2 schnell images, paired one to one")
        donors = dev[donor_positions(0, len(dev), len(dev))]
    return apply_part(name, images, np.random.default_rng(seed), donors)


def donor_positions(lo: int, hi: int, n: int) -> list[int]:
    """Which dev images (positions among n test pairs) the pasted controls take detail from for images lo..hi:
    each the previous pair's, the first the last's."""
    return [(i - 1) % n for i in range(lo, hi)]


def apply_part(name: str, images: np.ndarray, rng: np.random.Generator, donors: np.ndarray | None) -> np.ndarray:
    """A control on images lo..hi of a row: `rng` as streams() gives it for lo (copied: a retried part draws the same
    noise), `donors` the dev images at donor_positions(lo, hi, n) for a control that reads them (else None).
    On the whole row (lo = 0, a fresh generator of the seed) it is apply()."""
    control = _control(name)
    if control.donors and (donors is None or donors.shape != images.shape):
        raise UserError(f"control {name!r} needs one donor dev image per schnell image (donor_positions)")
    return control.filter(images, copy.deepcopy(rng), donors if control.donors else None)


def streams(name: str, seed: int, starts: Sequence[int], shape: tuple[int, int]) -> list[np.random.Generator]:
    """The control's noise generator as apply() leaves it after the images before each of `starts` (ascending
    image positions in the row, images of `shape` (h, w)): what apply_part on images from there needs to draw
    what apply() draws for them on the whole row. One pass along the stream for all starts, drawing and dropping
    a chunk's numbers at a time (no shortcut: a normal deviate takes a varying count of raw draws)."""
    rng, done, out = np.random.default_rng(seed), 0, []
    per_image = _control(name).noise * shape[0] * shape[1]
    for start in starts:
        if per_image:
            for i in range(done, start, CHUNK):
                rng.standard_normal(per_image * (min(i + CHUNK, start) - i))
        done = max(done, start)
        out.append(copy.deepcopy(rng))
    return out


def _control(name: str) -> Control:
    if name not in CONTROLS:
        raise UserError(f"unknown control {name!r}; choose from {sorted(CONTROLS)}")
    return CONTROLS[name]


ORACLE = "oracle: schnell + its own dev twin's high-pass"
"""The positive control: each schnell image plus the sigma-1 high-pass of its own dev twin, i.e. dev's texture in
dev's place. Table 4 scores it beside the negative controls; the gate must pass it, as it must pass dev."""


def oracle(images: np.ndarray, dev: np.ndarray) -> np.ndarray:
    """The ORACLE row's images: schnell + high-pass (sigma 1) of its own dev twin."""
    if dev.shape != images.shape:
        raise UserError(f"the oracle needs dev twins paired with the schnell images, got {dev.shape} vs {images.shape}")
    return np.clip(images.astype(np.float64) + _high_pass(dev) + 0.5, 0, 255).astype(np.uint8)


def label(name: str) -> str:
    """The control's Table 4 row label."""
    return PREFIX + name


def is_control(row_label: str) -> bool:
    return row_label.startswith(PREFIX)
