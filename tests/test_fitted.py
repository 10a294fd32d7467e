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


# --- the radial spectral equaliser and its photo-safe variant ---------------------------------------------------

def _broadband(n: int = 16, size: int = 64, seed: int = 5) -> np.ndarray:
    """Grey-mean images of independent colour noise (every frequency present) plus a smooth shading."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-30, 30, size)[None, :, None, None] * np.ones((n, 1, 1, 3))
    return np.clip(128 + ramp + 25 * rng.standard_normal((n, size, size, 3)) + 0.5, 0, 255).astype(np.uint8)


def _radially_filtered(images: np.ndarray, curves) -> np.ndarray:
    """images with a known gain curve(r) (r: 0 at DC, 1 at Nyquist) on each Y/Cb/Cr plane: a circular FFT filter
    written here, not the code under test."""
    M = fitted.YCBCR  # test_the_equalisers_spectra_are_the_spectral_feature_spaces: metrics.spaces' matrix

    planes = images.astype(np.float64) @ M.T  # (n, h, w, 3)
    h, w = images.shape[1:3]
    r = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]) / 0.5
    out = np.stack([np.fft.ifft2(np.fft.fft2(planes[..., c], axes=(1, 2)) * curves[c](r), axes=(1, 2)).real
                    for c in range(3)], axis=-1)
    return np.clip(out @ np.linalg.inv(M).T + 0.5, 0, 255).astype(np.uint8)


CURVES = (lambda r: 1 + 1.5 * r, lambda r: 1 + 0.5 * r, lambda r: 1 - 0.4 * r)  # Y boosted, Cb less, Cr cut


def test_the_equaliser_recovers_a_known_radial_gain_per_channel():
    x = _broadband()
    f = fitted.fit("radial equaliser", x, _radially_filtered(x, CURVES))
    centres = (np.arange(fitted.N_BINS) + 0.5) / fitted.N_BINS
    for channel, curve in zip(fitted.CHANNELS, CURVES):
        gains = np.asarray(f.params["gains"][channel])
        assert gains.shape == (32,) and np.abs(gains - curve(centres))[2:].max() < 0.1, (channel, gains.round(2))
    assert f.params["train_pairs"] == 16 and fitted.size(f.params) == 96
    # Applied to fresh inputs, it shapes their spectra the same way: away from the border (which it mirrors where
    # the circular reference wraps), within a few grey levels of the reference, against a change of ~20.
    y = _broadband(seed=6)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    error, change = (np.abs(f(y).astype(int) - _radially_filtered(y, CURVES))[inner].mean(),
                     np.abs(_radially_filtered(y, CURVES).astype(int) - y)[inner].mean())
    assert error < 0.15 * change, (error, change)


def test_the_equalisers_spectra_are_the_spectral_feature_spaces():
    """scoring may not import metrics, so fitted keeps its own copy of their estimator and planes: they must agree."""
    from facerealism.metrics.spaces import _RGB_TO_YCBCR, radial_log_power

    x = _broadband(4, seed=2)
    np.testing.assert_array_equal(fitted.YCBCR, _RGB_TO_YCBCR)
    planes = fitted._planes(x)[:, 1]
    np.testing.assert_allclose(np.log10(fitted.radial_power(planes, 32) + 1e-12), radial_log_power(planes, 32),
                               rtol=1e-10)


def test_fitting_from_two_batches_equals_fitting_from_one():
    """The equaliser keeps sums of power spectra, nothing per image: a split that streams in batches fits the same."""
    x = _broadband(12)
    dev = _radially_filtered(x, CURVES)
    whole = fitted.fit("radial equaliser", x, dev)
    halves = fitted.fit("radial equaliser", lambda: iter([(x[:5], dev[:5]), (x[5:], dev[5:])]))
    for channel in fitted.CHANNELS:
        np.testing.assert_allclose(halves.params["gains"][channel], whole.params["gains"][channel], rtol=1e-12)
    assert halves.params["train_pairs"] == whole.params["train_pairs"] == 12
    sums = fitted.SpectrumSums().add(x[:5], dev[:5]).add(x[5:], dev[5:])
    assert sums.schnell.shape == sums.dev.shape == (3, 32)  # its whole memory, whatever the number of pairs


def test_the_least_squares_fits_from_batches_equal_one_fit_of_every_pixel_and_keep_no_batch():
    """The least-squares fits keep normal equations and energy sums, nothing per image: streamed in batches they give
    what one solve over every pixel at once gives, and no batch outlives the next one."""
    import weakref

    x = _images(20)
    rng = np.random.default_rng(0)
    dev = np.clip(np.roll(x, 1, axis=2) + rng.integers(-20, 21, x.shape), 0, 255).astype(np.uint8)
    alive: list = []

    def batches():  # fresh arrays, so a batch the fit still held would stay alive
        alive.clear()
        for start, stop in ((0, 7), (7, 13), (13, 20)):
            if len(alive) >= 2:
                assert alive[-2]() is None, "a fit kept an earlier batch"
            s, d = x[start:stop].copy(), dev[start:stop].copy()
            alive.append(weakref.ref(s))
            yield s, d

    for name, key in (("detail gains", "gains"), ("detail gains (energy-matched)", "gains"),
                      ("linear 9×9", "weights")):
        whole = fitted.fit(name, x, dev, seed=3, max_shift=1).params[key]
        streamed = fitted.fit(name, batches, seed=3, max_shift=1, train_pairs=20).params[key]
        counted = fitted.fit(name, batches, seed=3, max_shift=1).params[key]  # the pairs counted in a pass first
        np.testing.assert_allclose(streamed, whole, rtol=1e-6, atol=1e-6 * np.abs(whole).max())
        assert counted == streamed, name
    # Least squares over every pixel at once, solved here without normal equations:
    b = fitted.BORDER
    bands = fitted._bands(x.astype(np.float64))[:, :, b:-b, b:-b].reshape(len(fitted.SIGMAS), -1).T
    target = (fitted.align(x, dev, 1).astype(np.float64) - x)[:, b:-b, b:-b].ravel()
    want, *_ = np.linalg.lstsq(bands, target, rcond=None)
    np.testing.assert_allclose(fitted.fit("detail gains", batches, max_shift=1).params["gains"], want, rtol=1e-6)
    with pytest.raises(UserError, match="told of 21 training pairs but read 20"):
        fitted.fit("linear 9×9", batches, max_shift=1, train_pairs=21)


def _photo_safe_args(n_val: int = 6) -> dict:
    """What evaluate gives the photo-safe equaliser: validation pairs, a validation photograph, the photo rules."""
    from facerealism.config import load_config
    from facerealism.scoring.photo import photo_damage, photo_images, photo_limits

    from .conftest import ROOT

    val = _broadband(n_val, seed=9)
    return {"validation": (val, _radially_filtered(val, CURVES)), "photos": [photo_images("chelsea", 64)],
            "limits": photo_limits(load_config(ROOT / "params.yaml")), "damage": photo_damage}


def test_every_fitted_filter_is_rebuilt_from_its_numbers_alone():
    """What Table 4 records (JSON) is what register ships: the rebuilt filter gives the same pixels."""
    import json

    x = _broadband(8)
    dev = _radially_filtered(x, CURVES)
    for name in fitted.FITTERS:
        f = fitted.fit(name, x, dev, max_shift=0, **_photo_safe_args())
        again = fitted.rebuild(name, json.loads(json.dumps(f.params)))
        assert np.array_equal(again(x), f(x)), name
        assert not np.array_equal(f(x), x), name  # and it does filter
    with pytest.raises(UserError, match="recorded numbers are incomplete"):
        fitted.rebuild("radial equaliser", {"n_bins": 32})
    with pytest.raises(UserError, match="validation split"):
        fitted.fit("radial equaliser (photo-safe)", x, dev)


def test_a_fitted_filter_applies_in_chunks_that_change_no_pixel(monkeypatch):
    """Each image is filtered alone (the photo-safe guards' gradients too), so evaluate can apply a filter to the
    test split a chunk at a time: the same pixels whatever the chunk size."""
    x = _broadband(10)
    dev = _radially_filtered(x, CURVES)
    filters = [fitted.fit(name, x, dev, max_shift=0, **_photo_safe_args()) for name in fitted.FITTERS]
    whole = [f(x) for f in filters]
    monkeypatch.setattr(fitted, "APPLY_CHUNK", 3)
    for f, want in zip(filters, whole):
        assert np.array_equal(f(x), want), f.name
        assert np.array_equal(f(x[4:5])[0], want[4]), f.name  # an image alone, as in a batch


def test_the_photo_safe_guards_cap_chroma_fade_out_on_flat_pixels_and_clamp_edges():
    """A strong boost (1 at DC to x3 at Nyquist, like the fitted one) on a photograph: each guard removes the damage it
    is there for."""
    from facerealism import metrics
    from facerealism.scoring.photo import photo_images

    x = photo_images("coffee", 64)
    boost = {"gains": {c: list(1 + 2 * (np.arange(32) + 0.5) / 32) for c in fitted.CHANNELS}, "n_bins": 32}
    plain = fitted.rebuild("radial equaliser", boost)(x)

    def guarded(**g):
        guards = {"chroma_cap": 1.0, "flat_quantile": 0.0, "edge_margin": None, **g}
        return fitted.rebuild("radial equaliser (photo-safe)", {**boost, "guards": guards})(x)

    assert metrics.edge_overshoot(x, plain) > 4 > 3.5 >= metrics.edge_overshoot(x, guarded(edge_margin=3.0))
    assert metrics.flat_grain(x, guarded(flat_quantile=0.25), flat_quantile=0.25) < \
        0.6 * metrics.flat_grain(x, plain, flat_quantile=0.25)  # measured 1.9 against 3.7
    # chroma left alone, only luminance grows: 0.53 against 1.17
    assert metrics.colour_noise_gain(x, plain) > 1.1 > 0.75 > metrics.colour_noise_gain(x, guarded(chroma_cap=0.0))
    capped = fitted._capped(np.asarray([[2.0, 1.5, 0.9], [3.0, 1.2, 1.5], [0.5, 3.0, 0.7]]), 0.5)
    np.testing.assert_allclose(capped, [[2.0, 1.5, 0.9], [1.5, 1.2, 1.0], [0.5, 1.25, 0.7]])  # cuts kept


def test_the_guards_are_the_nearest_dev_setting_whose_damage_stays_within_the_limits():
    x = _broadband(8)
    dev = _radially_filtered(x, CURVES)
    args = _photo_safe_args()
    f = fitted.fit("radial equaliser (photo-safe)", x, dev, **args)
    trials, limits = f.params["trials"], args["limits"]
    chosen = next(t for t in trials if {k: t[k] for k in fitted.GUARD_GRID} == f.params["guards"])
    assert f.params["met_limits_on_validation"] and f.params["validation_pairs"] == 6

    def over(trial: dict) -> bool:
        return any(trial.get(side, {}).get(k, 0) > limits[k] for side in ("photo_damage", "validation_damage")
                   for k in limits)

    assert not over(chosen) and all(k in chosen["validation_damage"] for k in limits)
    nearer = [t for t in trials if t["spectral_distance"] < chosen["spectral_distance"]]
    assert nearer and all(over(t) for t in nearer)  # every setting nearer dev damages a photo or a portrait
    free = fitted.fit("radial equaliser (photo-safe)", x, dev, **{**args, "limits": dict.fromkeys(limits, np.inf)})
    best = min(free.params["trials"], key=lambda t: t["spectral_distance"])
    assert free.params["guards"] == {k: best[k] for k in fitted.GUARD_GRID}
    none = fitted.fit("radial equaliser (photo-safe)", x, dev, **{**args, "limits": dict.fromkeys(limits, -1.0)})
    assert not none.params["met_limits_on_validation"] and none.params["guards"] == fitted.guard_settings()[-1]


def test_the_best_fitted_baseline_is_the_nearest_dev_of_those_that_pass_the_photo_rules():
    from facerealism.scoring.fitted_rows import best_fitted, fitted_metrics

    def row(c2st: float, photo_passes: bool) -> dict:
        return {"c2st_vs_dev": c2st, "c2st_ci": [c2st - 0.04, c2st + 0.04], "photo_passes": photo_passes}

    rows = {"fitted: a": row(0.99, True), "fitted: b": row(0.62, True), "fitted: c": row(0.55, False),
            "fitted: d": row(0.9, True), "control: x": row(0.5, True)}
    table = {"rows": rows, "order": list(rows)}
    assert best_fitted(table) == "fitted: b"  # not the weakest (a), not the photo-damaging one (c), no control
    assert fitted_metrics(table) == {"fitted.best": "fitted: b", "fitted.scored": 4, "c2st.dev_vs_fitted": 0.62,
                                     "c2st.dev_vs_fitted_ci_low": 0.58, "c2st.dev_vs_fitted_ci_high": 0.66}
    for label in ("fitted: a", "fitted: b", "fitted: d"):
        rows[label]["photo_passes"] = False
    assert fitted_metrics(table) == {"fitted.best": None, "fitted.scored": 4}


@pytest.mark.usefixtures("tiny_validated")
def test_the_fits_read_the_training_and_validation_pairs_never_the_test_split(tiny_cfg, monkeypatch):
    from facerealism.data.split import splits
    from facerealism.scoring import fitted_rows

    read: list[str] = []
    load = fitted_rows.load_images
    monkeypatch.setattr(fitted_rows, "load_images", lambda paths: read.extend(map(str, paths)) or load(paths))
    parts = splits(tiny_cfg)
    schnell = load(parts["test"]["schnell_path"])
    filters, params = fitted_rows.fitted_filters(tiny_cfg, schnell.shape[1])
    assert set(filters) == {fitted.label(n) for n in tiny_cfg.evaluate.fitted} and len(tiny_cfg.evaluate.fitted) == 5
    paths = {name: set(map(str, parts[name]["schnell_path"])) | set(map(str, parts[name]["dev_path"]))
             for name in ("train", "validation", "test")}
    assert set(read) <= paths["train"] | paths["validation"] and not set(read) & paths["test"]
    assert paths["validation"] <= set(read)  # the photo-safe equaliser's guards read the validation split
    assert params[fitted.label("radial equaliser (photo-safe)")]["validation_pairs"] == len(parts["validation"])
