"""Procedural portrait pairs from one seed: a smooth schnell-like image and its detailed dev-like twin."""

# Why this exists: the offline pipeline needs two image domains with a small,
# consistent, *learnable* gap, standing in for FLUX.1-schnell (fast, smooth)
# and FLUX.1-dev (slow, realistic) without weights or a GPU. Both images of a
# pair come from the same base face; only fine detail (skin pores, hair
# strands, eye catchlights), a slight blur and a one-pixel misalignment differ.
# A residual CycleGAN head can learn exactly that gap from unpaired crops.
#
# Rendering uses signed distances (negative inside) turned into coverage with a
# one-pixel ramp, so every edge is anti-aliased analytically: no supersampling,
# no jaggies, and a 64 px pair costs a few milliseconds of numpy.
#
# Geometry lives in "image units": the image spans [0, 1] on both axes, so a
# face looks the same at every size. Texture scales (pore grain, strand width,
# catchlight radius, blur) are authored for 64 px and scale with size / 64, so
# a 256 px pair is a sharper rendering of the same picture, not a new one.
#
# Reserved range: the base image is capped at 240 (_CEILING), so a pixel that
# is >= 245 in all three channels can only be a catchlight (tests rely on it).

from __future__ import annotations

import functools
import math
import numbers

import numpy as np
from scipy import ndimage

from facerealism.errors import UserError

_REF_SIZE = 64  # texture and blur scales are authored at this size
_MIN_SIZE = 16  # below this a face has no room for eyes; refuse rather than render mush

# Skin tones from very light to very dark (sRGB / 255); a tone is interpolated
# along this ramp so every seed lands somewhere on a continuum, not in buckets.
_SKIN_RAMP = np.array([
    [246, 219, 196], [236, 192, 160], [222, 170, 128], [196, 136, 96],
    [160, 104, 70], [122, 78, 52], [88, 56, 38], [62, 40, 28],
]) / 255.0

_HAIR = np.array([
    [22, 18, 16], [48, 32, 22], [84, 56, 36], [120, 80, 48],  # black to brown
    [140, 64, 32], [168, 92, 44],                                # auburn, red
    [196, 160, 100], [214, 196, 150],                            # blonde, platinum
    [150, 146, 142], [196, 194, 190],                            # grey, white-grey
]) / 255.0
_HAIR_P = np.array([0.22, 0.18, 0.14, 0.1, 0.06, 0.05, 0.08, 0.05, 0.07, 0.05])

_IRIS = np.array([
    [70, 42, 24], [104, 66, 36], [120, 98, 52],  # dark brown, brown, hazel
    [78, 112, 70], [70, 112, 168], [112, 126, 140],  # green, blue, grey
]) / 255.0

_EYE_WHITE = np.array([232, 226, 218]) / 255.0  # below the near-white reserve
_CATCHLIGHT = np.array([1.0, 1.0, 1.0])
_CEILING = 0.94  # 240/255: everything but catchlights stays below the 245 near-white reserve

_HAIR_STYLES = ("short", "long", "bun", "afro", "buzz")
_HAIR_STYLE_P = np.array([0.28, 0.32, 0.12, 0.12, 0.16])


def render_pair(seed: int, size: int = 64, *, blur_sigma: float = 0.7, max_shift: int = 1,
                texture_strength: float = 1.0, texture_hint: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Render one (schnell_like, dev_like) pair; both uint8 arrays of shape (size, size, 3).

    Args:
        seed: non-negative integer; the same seed always gives the same pair.
        size: output side in pixels (>= 16; 32 to 512 is the tested range).
        blur_sigma: Gaussian sigma of the schnell-like blur, in pixels of a
            64 px image (scaled by size / 64 so the look is size-independent).
        max_shift: the schnell-like image is shifted by an rng-chosen integer
            in [-max_shift, max_shift] pixels on each axis (edge-padded).
        texture_strength: multiplier on the dev-like details (0 disables them).
        texture_hint: strength of the schnell-like image's own faint detail, added after its blur: an
            independent instance of dev's kind of texture (same content, another rng), never a copy of dev's,
            so a head must render dev-like texture, not amplify dev's own instance.

    Returns:
        (schnell_like, dev_like), each a uint8 array of shape (size, size, 3).
    """
    _check_args(seed, size, blur_sigma, max_shift, texture_strength, texture_hint)
    rng = np.random.default_rng(seed)
    face = _sample_face(rng)
    canvas = _paint_base(face, size)
    # Both branches share this ceiling, so the near-white range stays free for
    # catchlights without making dev's highlights differ in tone from schnell's.
    np.clip(canvas.rgb, 0.0, _CEILING, out=canvas.rgb)

    # The rng draws below always happen in the same order whatever the
    # arguments, so one seed gives the same face for every texture_strength.
    dev = _add_details(canvas, face, rng, texture_strength)
    shift = rng.integers(-max_shift, max_shift + 1, size=2)

    scale = size / _REF_SIZE
    schnell = canvas.rgb
    if blur_sigma > 0:
        schnell = ndimage.gaussian_filter(schnell, sigma=(blur_sigma * scale, blur_sigma * scale, 0),
                                          mode="nearest")
    if texture_hint > 0:
        # schnell's own faint texture: the same kind of pores and strands following the same skin, light and hair
        # direction, but another instance (its own rng), as FLUX.1-dev re-renders high frequencies from noise
        # rather than amplifying schnell's. A copy of dev's instance made the task "undo a 0.35 gain", which three
        # least-squares band gains solve.
        own = _add_details(canvas, face, np.random.default_rng([seed, 1]), texture_strength)
        schnell = schnell + texture_hint * (own - canvas.rgb)
    schnell = _shift_edge(schnell, int(shift[0]), int(shift[1]))
    return _to_uint8(schnell), _to_uint8(dev)


def _check_args(seed, size, blur_sigma, max_shift, texture_strength, texture_hint) -> None:
    # bool is an int subclass; True as a seed is almost certainly a bug upstream.
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise UserError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise UserError(f"seed must be non-negative (numpy SeedSequence rule), got {seed}")
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise UserError(f"size must be an int, got {type(size).__name__} {size!r}")
    if size < _MIN_SIZE:
        raise UserError(f"size must be >= {_MIN_SIZE} pixels to fit a face, got {size}")
    if not blur_sigma >= 0:
        raise UserError(f"blur_sigma must be >= 0, got {blur_sigma}")
    if isinstance(max_shift, bool) or not isinstance(max_shift, numbers.Integral) or max_shift < 0:
        raise UserError(f"max_shift must be a non-negative int, got {max_shift!r}")
    if not texture_strength >= 0:
        raise UserError(f"texture_strength must be >= 0, got {texture_strength}")
    if not 0 <= texture_hint <= 1:
        raise UserError(f"texture_hint must be in [0, 1], got {texture_hint}")


# ----------------------------------------------------------------------------
# Sampling: every random choice about the base face, drawn before any pixel is
# touched, so the parameters are a plain dict that is easy to inspect.
# ----------------------------------------------------------------------------

def _sample_face(rng: np.random.Generator) -> dict:
    f: dict = {}
    # Background: two muted colours and a gradient direction.
    grey = rng.uniform(0.25, 0.75)
    f["bg"] = [0.5 * rng.uniform(0.1, 0.85, 3) + 0.5 * grey for _ in range(2)]
    f["bg_dir"] = rng.normal(size=2)

    # Head: an egg-shaped ellipse, roughly centred, with a small tilt and yaw.
    a = rng.uniform(0.17, 0.21)
    f.update(cx=0.5 + rng.uniform(-0.04, 0.04), cy=rng.uniform(0.41, 0.47), a=a,
             b=a * rng.uniform(1.22, 1.38), jaw=rng.uniform(0.08, 0.22),
             tilt=rng.uniform(-0.12, 0.12), yaw=rng.uniform(-1.0, 1.0))
    # Light from above, left or right; shared by shading and catchlights.
    light = np.array([rng.uniform(-0.6, 0.6), -rng.uniform(0.2, 0.6), 1.0])
    f["light"] = light / np.linalg.norm(light)

    t = rng.uniform(0, len(_SKIN_RAMP) - 1)
    i = min(int(t), len(_SKIN_RAMP) - 2)
    skin = _SKIN_RAMP[i] * (1 - (t - i)) + _SKIN_RAMP[i + 1] * (t - i)
    # Small rosy/olive cast so equal lightness does not mean equal colour.
    f["skin"] = np.clip(skin * (1 + rng.normal(0, 0.03, 3)), 0, 0.97)

    hair = _HAIR[rng.choice(len(_HAIR), p=_HAIR_P)]
    f["hair"] = np.clip(hair * (1 + rng.normal(0, 0.06, 3)), 0, 0.9)
    f["style"] = _HAIR_STYLES[rng.choice(len(_HAIR_STYLES), p=_HAIR_STYLE_P)]
    f["hairline"] = rng.uniform(0.3, 0.62)   # fraction of b above the centre
    f["hair_curve"] = rng.uniform(0.1, 0.45)  # how far the hairline drops at the temples
    f["bangs"] = rng.uniform() < 0.25
    f["hair_len"] = rng.uniform(0.02, 0.3)
    f["hair_volume"] = rng.uniform(1.06, 1.18)
    f["bun"] = (rng.uniform(-0.2, 0.2), rng.uniform(0.32, 0.48))
    f["part"] = rng.uniform(-0.5, 0.5)  # crown offset (fraction of a): strands radiate from it
    f["phase"] = rng.uniform(0, 2 * math.pi)

    f["eye_y"] = rng.uniform(0.02, 0.12)
    f["eye_dx"] = rng.uniform(0.38, 0.46)
    f["eye_w"] = rng.uniform(0.21, 0.26)
    f["eye_h"] = rng.uniform(0.42, 0.55)
    f["iris"] = _IRIS[rng.integers(len(_IRIS))] * rng.uniform(0.85, 1.15)
    f["iris_r"] = rng.uniform(0.85, 1.0)
    f["pupil_r"] = rng.uniform(0.38, 0.5)
    f["gaze"] = rng.uniform(-0.25, 0.25)
    f["brow_up"] = rng.uniform(2.2, 3.0)
    f["brow_w"] = rng.uniform(1.1, 1.35)
    f["brow_t"] = rng.uniform(0.006, 0.011)
    f["brow_arch"] = rng.uniform(0.004, 0.014)
    f["brow_tilt"] = rng.uniform(-0.15, 0.1)

    f["nose_y"] = rng.uniform(0.26, 0.36)
    f["nose_w"] = rng.uniform(0.16, 0.22)
    f["mouth_y"] = rng.uniform(0.54, 0.63)
    f["mouth_w"] = rng.uniform(0.28, 0.38)
    f["lip_h"] = rng.uniform(0.16, 0.26)
    f["smile"] = rng.uniform(-0.004, 0.012)
    f["lip_tint"] = rng.uniform(0.15, 0.55)
    f["blush"] = rng.uniform(0.0, 0.18)

    f["neck_w"] = rng.uniform(0.5, 0.62)
    f["shoulder"] = (rng.uniform(-0.03, 0.03), rng.uniform(0.36, 0.48), rng.uniform(0.2, 0.27))
    cloth = rng.uniform(0.08, 0.82, 3)
    f["cloth"] = 0.7 * cloth + 0.3 * rng.uniform(0.08, 0.82)  # muted, never white
    f["neckline"] = (rng.uniform(1.1, 2.0), rng.uniform(0.0, 0.1))  # width (× neck), depth
    return f


# ----------------------------------------------------------------------------
# Base rendering: layered painting, back to front. Coverage maps record where
# skin and hair end up visible, so details land only where they belong.
# ----------------------------------------------------------------------------

class _Canvas:
    def __init__(self, size: int):
        self.size = size
        self.px = 1.0 / size  # one pixel in image units: the anti-aliasing ramp width
        self.rgb = np.zeros((size, size, 3))
        self.skin = np.zeros((size, size))
        self.hair = np.zeros((size, size))
        self.eye = np.zeros((size, size))  # visible eye white + iris: where catchlights may go

    def paint(self, alpha: np.ndarray, color, kind: str | None = None) -> None:
        # Most layers (eyes, nostrils, lips) cover a few percent of the image;
        # blending only their bounding box makes painting ~3x cheaper at 256 px.
        rows = np.flatnonzero(alpha.any(axis=1))
        if rows.size == 0:
            return
        cols = np.flatnonzero(alpha.any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        alpha = alpha[box]
        color = np.asarray(color, dtype=float)
        if color.ndim == 3:
            color = color[box]
        rgb = self.rgb[box]
        rgb += alpha[..., None] * (color - rgb)
        # Whatever is painted on top hides the coverage below it.
        for name in ("skin", "hair", "eye"):
            cov = getattr(self, name)[box]
            cov *= 1.0 - alpha
            if name == kind:
                cov += alpha


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    # Pixel centres in image units; cached because every pair at a size reuses it.
    c = (np.arange(size) + 0.5) / size
    y, x = np.meshgrid(c, c, indexing="ij")  # (h, w) each
    y.flags.writeable = x.flags.writeable = False
    return x, y


def _alpha(sd: np.ndarray, ramp: float) -> np.ndarray:
    # Coverage from a signed distance; ramp = px gives crisp anti-aliased edges,
    # a larger ramp gives soft shading blobs (cheeks, nose shadow).
    return np.clip(0.5 - sd / ramp, 0.0, 1.0)


def _ellipse_sd(x, y, a, b):
    # First-order distance to an ellipse: (k - 1) / |grad k|. Exact on the
    # boundary, which is all the anti-aliasing ramp needs; inside it stays
    # negative (the eps keeps the centre at a large negative value, not 0/0).
    k = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    grad = np.sqrt((x / a**2) ** 2 + (y / b**2) ** 2) / np.maximum(k, 1e-9)
    return (k - 1.0) / np.maximum(grad, 1e-9)


def _box_sd(x, y, hw, hh, r):
    # Exact rounded-box distance (Inigo Quilez's formula).
    qx, qy = np.abs(x) - (hw - r), np.abs(y) - (hh - r)
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0) - r


def _paint_base(f: dict, size: int) -> _Canvas:
    cv = _Canvas(size)
    px = cv.px
    x, y = _grid(size)
    a, b, skin, hair = f["a"], f["b"], f["skin"], f["hair"]

    # Face frame: origin at the face centre, rotated by the head tilt, so all
    # facial features tilt together while background and shoulders stay put.
    ct, st = math.cos(f["tilt"]), math.sin(f["tilt"])
    dx, dy = x - f["cx"], y - f["cy"]
    u, v = ct * dx + st * dy, -st * dx + ct * dy
    lx, ly, lz = f["light"]

    # 1. Background: two-colour gradient with a gentle vignette.
    d = f["bg_dir"] / (np.linalg.norm(f["bg_dir"]) + 1e-9)
    t = np.clip(0.5 + 0.9 * ((x - 0.5) * d[0] + (y - 0.5) * d[1]), 0, 1)[..., None]
    vign = 1.0 - 0.35 * ((x - 0.5) ** 2 + (y - 0.5) ** 2)
    cv.rgb[:] = ((1 - t) * f["bg"][0] + t * f["bg"][1]) * vign[..., None]

    # 2. Long hair falls behind the head and over the shoulders.
    if f["style"] == "long":
        length = b + f["hair_len"] + 0.08
        back = np.minimum(_ellipse_sd(u, v + 0.05 * b, a * 1.22, b * 1.05),
                          _box_sd(u, v - length / 2, a * 1.28, length / 2, a * 0.5))
        cv.paint(_alpha(back, px), hair * 0.78, "hair")
    if f["style"] == "bun":
        bx, br = f["bun"]
        bun = np.hypot(u - bx * a, v + b * 1.08 + br * a * 0.5) - br * a
        cv.paint(_alpha(bun, px), hair * 0.85, "hair")

    # 3. Shoulders: chest skin first, then clothing with a neckline hole.
    sx, sa, sb = f["shoulder"]
    top = f["cy"] + b + 0.1
    sh = _ellipse_sd(x - f["cx"] - sx, y - top - sb, sa, sb)
    neck_hw = a * f["neck_w"]
    nl_w, nl_d = f["neckline"]
    hole = _ellipse_sd(x - f["cx"], y - top, neck_hw * nl_w, max(nl_d, 1e-3))
    cv.paint(_alpha(np.maximum(sh, hole), px), skin * 0.9, "skin")
    neck_top = f["cy"] + 0.4 * b
    neck = _box_sd(x - f["cx"], y - (neck_top + top + 0.03) / 2, neck_hw, (top + 0.03 - neck_top) / 2, 0.01)
    # The jaw shadows the top of the neck; the light side is a touch brighter.
    neck_shade = (0.72 + 0.2 * np.clip((y - neck_top - 0.6 * b) / (0.35 * b), 0, 1)
                  + 0.08 * lx * np.clip((x - f["cx"]) / neck_hw, -1, 1))
    cv.paint(_alpha(neck, px), skin * neck_shade[..., None], "skin")
    cloth_shade = 1.0 - 0.25 * np.clip(((x - f["cx"] - sx) / sa) ** 2, 0, 1)
    cv.paint(_alpha(np.maximum(sh, -hole), px), f["cloth"] * cloth_shade[..., None])

    # 4. Ears sit half behind the face outline.
    ey = -f["eye_y"] * b
    for side in (-1, 1):
        ear = _ellipse_sd(u - side * a * 0.96, v - ey - 0.12 * b, a * 0.17, b * 0.2)
        cv.paint(_alpha(ear, px), skin * 0.86, "skin")

    # 5. Face: an egg (narrower jaw) shaded by a fake sphere normal for volume.
    jaw = 1.0 - f["jaw"] * np.clip(v / b, 0, 1) ** 2
    face_sd = _ellipse_sd(u / jaw, v, a, b)
    nx, ny = u / (a * jaw), v / b
    nz = np.sqrt(np.clip(1.0 - nx**2 - ny**2, 0.0, 1.0))
    lambert = np.clip(nx * lx + ny * ly + nz * lz, 0.0, 1.0)
    cv.paint(_alpha(face_sd, px), skin * (0.7 + 0.32 * lambert)[..., None], "skin")

    # 6. Hair on the head: a cap over the skull minus the forehead below the hairline.
    _paint_hair_cap(cv, f, u, v, face_sd, px)

    # 7. Features, all in the face frame; yaw slides them toward one side.
    ox = _yaw_offset(f)
    _paint_eyes_and_brows(cv, f, u - ox, v, ey, px)
    _paint_nose(cv, f, u - ox * 1.3, v, px)
    _paint_mouth(cv, f, u - ox, v, px)
    return cv


def _paint_hair_cap(cv: _Canvas, f: dict, u, v, face_sd, px) -> None:
    a, b, hair, style = f["a"], f["b"], f["hair"], f["style"]
    if style == "afro":
        # A big, slightly lumpy volume around the head.
        theta = np.arctan2(v, u)
        cap = _ellipse_sd(u, v + 0.22 * b, a * 1.5, b * 1.12) + 0.008 * np.sin(9 * theta + f["phase"])
        side_cut = 0.45 * b
    elif style == "buzz":
        cap = _ellipse_sd(u, v + 0.04 * b, a * 1.03, b * 1.02)
        side_cut = -0.15 * b
    else:
        vol = f["hair_volume"]
        cap = _ellipse_sd(u, v + 0.1 * b, a * vol, b * (vol - 0.04))
        side_cut = {"short": -0.05 * b, "bun": -0.1 * b, "long": 0.35 * b}[style]
    # Hairline: highest in the middle, dropping toward the temples; bangs are
    # lower and ragged.
    hl = -f["hairline"] * b + f["hair_curve"] * b * (u / a) ** 2
    if f["bangs"] and style in ("short", "long", "bun"):
        hl = -0.3 * b + 0.25 * b * (u / a) ** 2 + 0.03 * b * np.sin(u / a * 11 + f["phase"])
    forehead = np.maximum(face_sd, hl - v)
    cap = np.maximum(np.maximum(cap, -forehead), v - side_cut)
    opacity = 0.82 if style == "buzz" else 1.0  # cropped hair lets skin show through
    # Sheen: the lit side of the hair volume is lighter.
    lx, ly, _ = f["light"]
    sheen = 0.82 + 0.3 * np.clip((u * lx / a + v * ly / b), -1, 1)
    cv.paint(opacity * _alpha(cap, px), hair * sheen[..., None], "hair")


def _yaw_offset(f: dict) -> float:
    # A turned head slides the features sideways within the face outline.
    return 0.12 * f["yaw"] * f["a"]


def _irises(f: dict) -> list[tuple[float, float, float]]:
    # (u, v, radius) of each iris in the face frame, before _yaw_offset;
    # shared by the painter and the catchlight pass so the dots land on the pupils.
    a, b = f["a"], f["b"]
    ew = f["eye_w"] * a
    eh = f["eye_h"] * ew
    return [(side * f["eye_dx"] * a + f["gaze"] * ew * 0.4, -f["eye_y"] * b, f["iris_r"] * eh) for side in (-1, 1)]


def _paint_eyes_and_brows(cv: _Canvas, f: dict, u, v, ey, px) -> None:
    a, b, skin = f["a"], f["b"], f["skin"]
    ew = f["eye_w"] * a
    eh = f["eye_h"] * ew
    brow_color = np.minimum(f["hair"] * 0.7, skin * 0.55)  # brows read darker than hair and skin
    for side, (ix, _, ir) in zip((-1, 1), _irises(f)):
        ex = side * f["eye_dx"] * a
        # Socket shadow gives the eye depth.
        socket = _ellipse_sd(u - ex, v - ey + 0.3 * eh, ew * 1.5, eh * 2.2)
        cv.paint(0.45 * _alpha(socket, 3 * eh), skin * 0.8, "skin")
        eye = _ellipse_sd(u - ex, v - ey, ew, eh)
        cv.paint(_alpha(eye, px), _EYE_WHITE * (0.86 + 0.1 * np.clip(1 - np.abs(u - ex) / ew, 0, 1))[..., None],
                 "eye")
        cv.paint(_alpha(np.maximum(np.hypot(u - ix, v - ey) - ir, eye), px), f["iris"], "eye")
        cv.paint(_alpha(np.maximum(np.hypot(u - ix, v - ey) - f["pupil_r"] * ir, eye), px), [0.04, 0.03, 0.03],
                 "eye")
        # Upper lid line: a thin ring on the upper half of the eye outline.
        lid = np.maximum(np.abs(eye) - 0.006, v - ey + 0.2 * eh)
        cv.paint(0.85 * _alpha(lid, px), skin * 0.3)
        # Brow: a bent, tapered bar above the eye; the outer end is thinner.
        bx, by, bw = ex + side * 0.1 * ew, ey - f["brow_up"] * eh, f["brow_w"] * ew
        s = (u - bx) / bw * side  # -1 at the inner end, +1 at the outer end
        centre = by - f["brow_arch"] * (1 - s**2) + f["brow_tilt"] * f["brow_arch"] * 3 * s
        thick = f["brow_t"] * (1.0 - 0.45 * np.clip(s, 0, 1))
        brow = np.maximum(np.abs(v - centre) - thick, np.abs(u - bx) - bw)
        cv.paint(0.9 * _alpha(brow, px), brow_color)


def _paint_nose(cv: _Canvas, f: dict, u, v, px) -> None:
    a, b, skin = f["a"], f["b"], f["skin"]
    ny, nw = f["nose_y"] * b, f["nose_w"] * a
    shadow_side = -1.0 if f["light"][0] > 0 else 1.0
    # Bridge shadow on the side away from the light: a soft vertical bar.
    bridge = _box_sd(u - shadow_side * nw * 0.55, v - ny * 0.45, nw * 0.12, ny * 0.55, nw * 0.1)
    cv.paint(0.35 * _alpha(bridge, 2.5 * nw * 0.2 + px), skin * 0.72, "skin")
    cv.paint(0.5 * _alpha(_ellipse_sd(u, v - ny - nw * 0.55, nw * 0.85, nw * 0.22), nw * 0.35 + px),
             skin * 0.78, "skin")
    cv.paint(0.45 * _alpha(_ellipse_sd(u, v - ny + nw * 0.05, nw * 0.45, nw * 0.35), nw * 0.4 + px),
             np.minimum(skin * 1.08, 0.97), "skin")
    for side in (-1, 1):
        nostril = _ellipse_sd(u - side * nw * 0.5, v - ny - nw * 0.2, nw * 0.26, nw * 0.14)
        cv.paint(0.75 * _alpha(nostril, px), skin * 0.42)


def _paint_mouth(cv: _Canvas, f: dict, u, v, px) -> None:
    a, b, skin = f["a"], f["b"], f["skin"]
    my, mw = f["mouth_y"] * b, f["mouth_w"] * a
    lh = f["lip_h"] * mw
    # Bend the frame so the corners lift (smile) or drop; every mouth part shares it.
    vv = v + f["smile"] * (u / mw) ** 2 * 4
    lip = skin * (1 - f["lip_tint"]) * np.array([0.86, 0.62, 0.62]) + f["lip_tint"] * np.array([0.62, 0.26, 0.3])
    lip = np.minimum(lip, skin * 0.95)
    # Cheek blush, very soft.
    for side in (-1, 1):
        cheek = _ellipse_sd(u - side * a * 0.5, v - b * 0.2, a * 0.22, a * 0.16)
        cv.paint(f["blush"] * _alpha(cheek, a * 0.25), np.array([0.8, 0.35, 0.35]) * skin.max(), "skin")
    upper = _ellipse_sd(u, vv - my + lh * 0.5, mw, lh)
    lower = _ellipse_sd(u, vv - my - lh * 0.7, mw * 0.82, lh * 1.15)
    cv.paint(_alpha(np.maximum(upper, vv - my), px), lip * 0.9)
    cv.paint(_alpha(np.maximum(lower, my - vv), px), lip)
    line = np.maximum(np.abs(vv - my) - 0.004, np.abs(u) - mw * 0.98)
    cv.paint(0.8 * _alpha(line, px), lip * 0.4)


# ----------------------------------------------------------------------------
# Dev-like details: the gap the head has to learn. All three are fine-scale,
# local and mask-bound, so a small residual network can reproduce them.
# ----------------------------------------------------------------------------

def _add_details(cv: _Canvas, f: dict, rng: np.random.Generator, strength: float) -> np.ndarray:
    size = cv.size
    scale = size / _REF_SIZE
    x, y = _grid(size)
    rgb = cv.rgb.copy()

    # Skin pores: a grain of about one 64-px pixel plus a true-pixel octave so
    # large renders are not just upscaled noise; normalised to unit std.
    grain = ndimage.gaussian_filter(rng.standard_normal((size, size)), 0.45 * scale)
    fine = ndimage.gaussian_filter(rng.standard_normal((size, size)), 0.5)
    # At 64 px both octaves coincide; at larger sizes the true-pixel one
    # dominates, so skin reads as fine grain rather than blotches.
    pores = 0.6 * grain / (grain.std() + 1e-9) + fine / (fine.std() + 1e-9)
    # Pores read as darker pits, so the negative side is stronger than the positive.
    pores = np.where(pores < 0, 1.4 * pores, 0.6 * pores)
    # Partly additive: purely multiplicative texture all but vanishes on dark
    # skin, and the gap should be about equally learnable for every skin tone.
    skin_tex = (strength * cv.skin * pores)[..., None]
    rgb = rgb * (1.0 + 0.03 * skin_tex) + 0.01 * skin_tex

    # Hair strands: a random 1-D profile indexed by the angle around the crown,
    # so streaks radiate from the parting the way combed hair does, with
    # per-strand phase breaks along the radius.
    a, b = f["a"], f["b"]
    ct, st = math.cos(f["tilt"]), math.sin(f["tilt"])
    dx, dy = x - f["cx"], y - f["cy"]
    u, v = ct * dx + st * dy, -st * dx + ct * dy
    du, dv = u - f["part"] * a, v + 1.2 * b  # crown above the scalp: no visible starburst
    theta = np.arctan2(dv, du)
    r = np.hypot(du, dv)
    strands = np.zeros_like(theta)
    for cells, amp in ((int(2 * math.pi * b * _REF_SIZE * 1.6), 1.0), (int(2 * math.pi * b * size * 1.6), 0.5)):
        prof = rng.standard_normal(cells)
        phase = rng.uniform(0, 2 * math.pi, cells)
        pos = (theta + math.pi) / (2 * math.pi) * cells
        i0 = np.floor(pos).astype(int) % cells
        w = pos - np.floor(pos)
        i1 = (i0 + 1) % cells
        line = prof[i0] * (1 - w) + prof[i1] * w
        breaks = 0.7 + 0.3 * np.sin(r * size / (3.0 * scale) + phase[i0])
        strands += amp * line * breaks
    strands *= np.clip(r / (0.4 * b), 0, 1)  # converging strands would alias into noise
    strands /= strands.std() + 1e-9
    hair_mask = (strength * cv.hair)[..., None]
    rgb = rgb * (1.0 + 0.14 * hair_mask * strands[..., None]) + 0.04 * hair_mask * strands[..., None]
    rgb = np.clip(rgb, 0.0, _CEILING)  # textures must not reach the catchlight reserve

    # Catchlights: one reflection of the key light per pupil (sometimes a second,
    # smaller, dimmer fill reflection). The dot centre snaps to a pixel centre so
    # even at 64 px at least one pixel is fully white rather than smeared grey.
    px = 1.0 / size
    lx, ly, _ = f["light"]
    second = rng.uniform() < 0.5
    radius = max(0.6 * px, 0.6 * scale * px)
    for iu, iv, ir in _irises(f):
        dots = [(lx * 0.5, ly * 0.6, 1.0)] + ([(-lx * 0.3 + 0.3, 0.45, 0.6)] if second else [])
        for ou, ov, k in dots:
            pu, pv = iu + ou * ir + _yaw_offset(f), iv + ov * ir
            cx = f["cx"] + ct * pu - st * pv
            cy = f["cy"] + st * pu + ct * pv
            col, row = _snap_to_eye(cv.eye, cx * size, cy * size)
            cx, cy = (col + 0.5) / size, (row + 0.5) / size
            alpha = min(strength, 1.0) * k * _alpha(np.hypot(x - cx, y - cy) - radius * k ** 0.5, px)
            alpha *= np.clip(cv.eye * 1.5, 0, 1)  # never on skin: a lid or hair over the eye hides it
            rgb += alpha[..., None] * (_CATCHLIGHT - rgb)
    return rgb


def _snap_to_eye(eye: np.ndarray, col: float, row: float) -> tuple[int, int]:
    # At 64 px an eye is ~3 px tall, so the nearest pixel centre can fall on the
    # lid line; take the most eye-covered pixel of the 3x3 neighbourhood instead
    # (ties go to the nearest), so every face gets its catchlight.
    c0, r0 = math.floor(col), math.floor(row)
    h, w = eye.shape
    best, best_score = (min(max(c0, 0), w - 1), min(max(r0, 0), h - 1)), -np.inf
    for r in range(max(r0 - 1, 0), min(r0 + 2, h)):
        for c in range(max(c0 - 1, 0), min(c0 + 2, w)):
            score = eye[r, c] - 0.05 * math.hypot(c + 0.5 - col, r + 0.5 - row)
            if score > best_score:
                best, best_score = (c, r), score
    return best


def _shift_edge(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    # out[i, j] = img[i - dy, j - dx], repeating edge pixels rather than wrapping,
    # so no stripe of the opposite border appears on the image.
    if dy == 0 and dx == 0:
        return img
    m = max(abs(dy), abs(dx))
    p = np.pad(img, ((m, m), (m, m), (0, 0)), mode="edge")
    h, w = img.shape[:2]
    return p[m - dy:m - dy + h, m - dx:m - dx + w]


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
