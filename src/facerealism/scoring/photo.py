"""The photo rules, in one place: each rule's measurement, harm and the reason for its ceiling, and the photo check that
applies them to a head or fitted filter on real photographs (evaluate, trials, the gate and the fitted guards read them
here; the ceilings are register.photo_max)."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from facerealism import metrics
from facerealism.data import catalog
from facerealism.errors import UserError
from facerealism.files import save_png


class PhotoRule(NamedTuple):
    """One rule of the photo check: its key, how it is measured, the harm it names, and why its ceiling
    (register.photo_max[key] in params.yaml) sits where it does."""

    key: str
    """photo_check's key and register.photo_max's; metrics.json holds it as photo.KEY."""
    measure: Callable[[np.ndarray, np.ndarray], float]
    """(inputs, outputs) uint8 (n, h, w, 3) -> the damage, worst image; higher is worse."""
    short: str
    """Column and rule name in recipe trials."""
    harm: str
    ceiling: float
    """The default of register.photo_max[key] (params.yaml spells it): the value may not exceed it."""
    why: str
    """What the measure reads for known filters on the gate's photograph: the reason for the ceiling."""


# Adding a rule: one PhotoRule here and its ceiling in params.yaml's register.photo_max (tests/test_config.py checks
# that params.yaml spells the default); the config's default, the photo check, metrics.json, the gate, trials, the
# fitted guards and the reports read this tuple.
PHOTO_RULES = (
    PhotoRule("colour_noise_gain", metrics.colour_noise_gain, "colour noise",
              "the head adds colour noise to a photo", 1.1,
              why="chroma detail gain over luminance detail gain: RGB noise of sigma 4/255 reads 1.22 at 64 px and 2.7 "
                  "at 512 px; a head that only sharpens reads <= 1"),
    PhotoRule("edge_overshoot", metrics.edge_overshoot, "edge overshoot",
              "the head draws halos or rings at a photo's edges", 4.0,
              why="luminance overshoot beyond the input's local range at its strongest edges (grey levels, worst "
                  "size): halos and ringing. At 64 / 512 px: unsharp r1 100 % 2.0 / 3.2, detail gain x1 2.0 / 3.2, "
                  "unsharp r2 200 % 7.6 / 12.4, detail gain x2 5.7 / 7.8"),
    PhotoRule("clipped_gain", metrics.clipped_gain, "clipped", "the head blows out a photo's highlights", 0.1,
              why="share of the photo's pixels whose highlights the head newly blows out (a channel at 255). At 64 / "
                  "512 px: unsharp r1 100 % 0.05 / 0.01, unsharp r2 200 % 0.21 / 0.05, brightness x1.35 0.40 / 0.41"),
    # the photo's flattest quarter (metrics.flat_grain's default is the flattest half)
    PhotoRule("flat_grain", functools.partial(metrics.flat_grain, flat_quantile=0.25), "flat grain",
              "the head paints grain on a photo's flat regions", 6.0,
              why="RMS luminance grain (grey levels, worst size) the head adds in the flattest quarter of the photo: "
                  "texture in the wrong place. At 64 / 512 px: unsharp r1 100 % 3.6 / 0.7, detail gain x1 3.7 / 0.9, "
                  "luma noise sigma 4 3.5 / 3.3, sigma 8 6.9 / 6.5, grain on flat regions sigma 8 6.9 / 6.5, unsharp "
                  "r2 200 % 8.1 / 1.9"),
)


def photo_limits(cfg) -> dict[str, float]:
    """{photo_check key: ceiling} of every photo rule, from register.photo_max.

    Args:
        cfg: the run's Config (untyped here: config builds register.photo_max's default from this module's rules).

    Raises:
        UserError: register.photo_max names a key no rule has (with the rule it is closest to), or lacks a rule's
            ceiling; preflight reports it before a run.
    """
    given, keys = cfg.register.photo_max, [rule.key for rule in PHOTO_RULES]
    unknown = [key for key in given if key not in keys]
    if unknown:
        near = difflib.get_close_matches(unknown[0], keys, n=1, cutoff=0.6)
        hint = f" (did you mean register.photo_max.{near[0]}?)" if near else ""
        more = f" (+{len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise UserError(f"register.photo_max.{unknown[0]}: no photo rule of that name{hint}{more}; the rules "
                        f"(scoring/photo.py): {', '.join(keys)}")
    missing = [key for key in keys if key not in given]
    if missing:
        raise UserError(f"register.photo_max has no ceiling for the photo rule(s) {', '.join(missing)}: every rule "
                        f"needs one (a profile that sets register.photo_max replaces the whole mapping)")
    return {key: given[key] for key in keys}


def meets_photo_rules(photo: dict, limits: dict[str, float]) -> bool:
    """Does a photo check (photo_check's dict) stay within every ceiling of `limits` (photo_limits)?"""
    return all(isinstance(photo.get(key), (int, float)) and photo[key] <= bound for key, bound in limits.items())


PHOTO_SIZES = (64, 512)  # the default head's training size and the paper's
PHOTO = "astronaut"  # the gate's photograph (scikit-image, public domain, NASA): never used to tune anything
VALIDATION_PHOTOS = ("chelsea", "coffee", "rocket")  # other scikit-image photographs: what fitted guards are tuned on


def photo_images(name: str, size: int) -> np.ndarray:
    """scikit-image's photograph `name`, centre-cropped square and resized to size x size: uint8 (1, s, s, 3)."""
    from PIL import Image
    from skimage import data

    photo = getattr(data, name)()[..., :3]
    h, w = photo.shape[:2]
    side = min(h, w)
    square = photo[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    return np.asarray(Image.fromarray(square).resize((size, size), Image.LANCZOS))[None]


def photo_sizes(train_size: int) -> list[int]:
    return sorted({train_size, *PHOTO_SIZES})


def validation_photos(train_size: int) -> list[np.ndarray]:
    """VALIDATION_PHOTOS at the photo check's sizes: photographs for tuning photo guards, never the gate's own."""
    return [photo_images(name, size) for name in VALIDATION_PHOTOS for size in photo_sizes(train_size)]


def photo_damage(inputs: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
    """Every photo rule's measurement (by PHOTO_RULES key) of a filter's outputs on its inputs, worst image."""
    return {rule.key: rule.measure(inputs, outputs) for rule in PHOTO_RULES}


def photo_check(enhance, train_size: int, reports: Path | None = None) -> dict:
    """A head or fitted filter (`enhance`: uint8 (n, h, w, 3) -> the same) on a real photograph (scikit-image's
    astronaut) at its training size and 512 px, measured by every rule of PHOTO_RULES.

    A head must not turn a photo's skin, sky and walls into colour speckle: `colour_noise_gain` <= 1 means it
    lifted colour detail no more than brightness detail. It must not draw halos or rings at the photo's edges,
    blow out its highlights or paint grain on its flattest quarter either: texture statistics of the portraits do
    not see those. Saves the before/after pairs to reports/photo.png (when `reports` is given).

    Returns:
        {rule key: worst over sizes, for each rule; "by_size": {size: colour_noise_gain}, "<key>_by_size" for the
        other rules, "image": "photo.png"}.
    """
    from PIL import Image

    by_size: dict[str, dict[str, float]] = {rule.key: {} for rule in PHOTO_RULES}
    pairs = []
    for size in photo_sizes(train_size):
        x = photo_images(PHOTO, size)  # (1, s, s, 3)
        out = enhance(x)
        for key, value in photo_damage(x, out).items():
            by_size[key][str(size)] = value
        big = np.asarray(Image.fromarray(np.concatenate([x[0], out[0]], axis=1)).resize((1024, 512), Image.NEAREST))
        pairs.append(big)
    if reports is not None:
        save_png(reports / catalog.PHOTO.name, np.concatenate(pairs, axis=0))
    worst = {key: max(values.values()) for key, values in by_size.items()}  # a size that fails, fails the photo
    first = PHOTO_RULES[0].key  # the first rule's sizes keep their original key "by_size" (committed reports read it)
    return {**worst, "by_size": by_size[first],
            **{f"{key}_by_size": values for key, values in by_size.items() if key != first},
            **({"image": catalog.PHOTO.name} if reports is not None else {})}
