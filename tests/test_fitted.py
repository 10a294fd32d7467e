"""Fitted baselines: closed-form least squares on training pairs recovers filters whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from facerealism.errors import UserError
from facerealism.scoring import fitted

from .test_metrics import make_dev


def _images(n: int = 24, size: int = 32) -> np.ndarray:
    return make_dev(n, size, seed=11)


def test_detail_gains_recover_a_known_band_gain():
    x = _images()
    bands = fitted._bands(x.astype(np.float64))
    dev = np.clip(x + 1.5 * bands[0] + 0.5, 0, 255).astype(np.uint8)  # the finest band amplified 2.5x
    f = fitted.fit("detail gains", x, dev, seed=0, max_shift=0)
    assert f.params["gains"][0] == pytest.approx(1.5, abs=0.1), f.params
    assert np.abs(f(x).astype(int) - dev).mean() < 1.0


def test_the_linear_filter_recovers_a_sharpening_kernel_through_a_one_pixel_shift():
    from scipy import ndimage

    x = _images()
    sharp = x + 1.0 * (x - ndimage.uniform_filter(x.astype(np.float64), size=(1, 3, 3, 1)))
    dev = np.roll(np.clip(sharp + 0.5, 0, 255).astype(np.uint8), 1, axis=2)  # dev is 1 px off, as rendered pairs are
    f = fitted.fit("linear 9×9", x, dev, seed=0, max_shift=1)
    out = f(x).astype(int)
    target = np.clip(sharp + 0.5, 0, 255).astype(int)
    inner = (slice(None), slice(4, -4), slice(4, -4))
    assert np.abs(out - target)[inner].mean() < 1.5  # aligned first, so it learned the kernel, not a blur
    assert np.abs(out - x)[inner].mean() > 3  # and it does change the image


def test_fit_refuses_unpaired_or_unknown_input():
    x = _images(4)
    with pytest.raises(UserError, match="unknown fitted baseline"):
        fitted.fit("cubic", x, x, 0)
    with pytest.raises(UserError, match="paired training images"):
        fitted.fit("detail gains", x, x[:2], 0)


def test_energy_matched_gains_amplify_an_uncorrelated_instance_that_least_squares_shrinks():
    """dev's fine texture is a new instance of schnell's (same strength x3, other noise): least squares cannot use
    schnell's instance (gain ~0 or below), matching band energy lifts it to dev's level (gain ~2)."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    base = ndimage.gaussian_filter(_images().astype(np.float64), sigma=(0, 1.5, 1.5, 0))
    grain = lambda: rng.standard_normal(base.shape[:3])[..., None] * np.ones(3)  # noqa: E731 - grey, per pixel
    schnell = np.clip(base + 2.0 * grain() + 0.5, 0, 255).astype(np.uint8)
    dev = np.clip(base + 6.0 * grain() + 0.5, 0, 255).astype(np.uint8)
    ls = fitted.fit("detail gains", schnell, dev, seed=0, max_shift=0)
    em = fitted.fit("detail gains (energy-matched)", schnell, dev, seed=0, max_shift=0)
    assert ls.params["gains"][0] < 0.3, ls.params
    assert em.params["gains"][0] == pytest.approx(2.0, abs=0.4), em.params
    band = lambda imgs: fitted._bands(imgs.astype(np.float64))[0]  # noqa: E731
    assert band(em(schnell)).std() == pytest.approx(band(dev).std(), rel=0.15)  # the output's finest band: dev's
