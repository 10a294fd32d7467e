"""Tests for facerealism.metrics on procedural dev-like (textured) and schnell-like (blurred) images."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from facerealism.metrics import (
    FEATURE_SPACES,
    INCEPTION_WEIGHTS_FILE,
    bootstrap_ci,
    c2st_images,
    spectral_chroma_features,
    wilson_interval,
    fd_diff,
    frechet_distance,
    inception_metrics,
    inception_weights_problem,
    random_conv_features,
    spectral_features,
)

N, SIZE = 128, 32  # enough rows for stable covariances, small enough for 2 shared cores


def make_dev(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Smooth colour blobs (face-like layout) plus pixel-scale luminance noise (skin texture)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.broadcast_to(rng.uniform(0.3, 0.7, (n, 1, 1, 3)), (n, size, size, 3)).copy()
    for _ in range(5):
        cy, cx = rng.uniform(0, 1, (2, n, 1, 1))
        s = rng.uniform(0.08, 0.3, (n, 1, 1))
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s**2))[..., None] * rng.uniform(-0.3, 0.3, (n, 1, 1, 3))
    img += rng.normal(0, 0.06, (n, size, size, 1))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def blur(images: np.ndarray, sigma: float = 1.2) -> np.ndarray:
    out = gaussian_filter(images.astype(np.float64), sigma=(0, sigma, sigma, 0), mode="reflect")
    return np.clip(out, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def sets():
    # Unpaired, as in reality: dev, schnell and the "enhanced" source are independent draws.
    dev = make_dev(N, seed=1)
    schnell = blur(make_dev(N, seed=2))
    fresh = make_dev(N, seed=3)
    halfway = ((fresh.astype(np.float64) + blur(fresh)) / 2).round().astype(np.uint8)
    return {"dev": dev, "schnell": schnell, "dev_like": fresh, "schnell_like": blur(fresh), "halfway": halfway}


def _exact_gaussian(n, mean, std, seed):
    """Samples whose sample mean and covariance are exactly `mean` and diag(std**2)."""
    z = np.random.default_rng(seed).normal(size=(n, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # whiten: cov(z) == I
    return z * std + mean


# --- Fréchet distance ------------------------------------------------------------------------------------------


def test_frechet_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(300, 6))
    assert frechet_distance(x, x.copy()) == pytest.approx(0.0, abs=1e-8)


def test_frechet_matches_closed_form():
    m1, m2 = np.array([0.0, 1.0, -2.0]), np.array([1.5, 0.0, 0.5])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 1.0, 0.5])
    a, b = _exact_gaussian(400, m1, s1, seed=0), _exact_gaussian(500, m2, s2, seed=1)
    # Commuting (diagonal) covariances: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (s1 - s2)^2.
    expected = np.sum((m1 - m2) ** 2) + np.sum((s1 - s2) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_frechet_shift_only_is_squared_shift():
    x = np.random.default_rng(0).normal(size=(200, 5))
    shift = np.array([1.0, -2.0, 0.0, 0.5, 3.0])
    assert frechet_distance(x, x + shift) == pytest.approx(shift @ shift, rel=1e-6)


def test_frechet_rank_deficient_is_finite():
    # n < d: singular covariances, the usual case for small evaluation sets.
    x = np.random.default_rng(0).normal(size=(5, 20))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-4)
    assert frechet_distance(x, x + 1.0) == pytest.approx(20.0, rel=1e-3)


@pytest.mark.parametrize(
    "a, b, match",
    [
        (np.zeros((1, 3)), np.zeros((5, 3)), "n >= 2"),
        (np.zeros((5, 3)), np.zeros((1, 3)), "n >= 2"),
        (np.zeros((5, 3)), np.zeros((5, 4)), "dimensions differ"),
        (np.zeros(5), np.zeros((5, 1)), r"shape \(n, d\)"),
    ],
)
def test_frechet_rejects_bad_shapes(a, b, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(a, b)


def test_bootstrap_ci_brackets_the_distance_and_is_seeded():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 3)), rng.normal(size=(300, 3)) + 2.0
    low, high = bootstrap_ci(frechet_distance, a, b, n_boot=100, seed=0)
    assert low < frechet_distance(a, b) < high
    assert (low, high) == bootstrap_ci(frechet_distance, a, b, n_boot=100, seed=0)


# --- feature spaces and FD_diff --------------------------------------------------------------------------------


def test_feature_shapes_and_determinism(sets):
    dev = sets["dev"][:16]
    assert spectral_features(dev).shape == (16, SIZE // 2)
    assert spectral_features(dev, n_bins=8).shape == (16, 8)
    f = random_conv_features(dev)
    assert f.shape == (16, 2 * (16 + 32 + 64))
    np.testing.assert_array_equal(f, random_conv_features(dev))
    assert not np.allclose(f, random_conv_features(dev, seed=1))


@pytest.mark.parametrize("extract", [spectral_features, spectral_chroma_features, random_conv_features, c2st_images])
def test_non_uint8_images_are_rejected(extract, sets):
    bad = sets["dev"][:4].astype(np.float32)
    with pytest.raises(ValueError, match="uint8"):
        extract(bad) if extract is not c2st_images else extract(bad, sets["dev"][:4])


@pytest.mark.parametrize("space", sorted(FEATURE_SPACES))
def test_identical_sets_have_zero_distance(space, sets):
    f = FEATURE_SPACES[space]
    assert frechet_distance(f(sets["dev"]), f(sets["dev"].copy())) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("space", sorted(FEATURE_SPACES))
def test_dev_like_output_moves_toward_dev(space, sets):
    r = fd_diff(sets["dev_like"], sets["schnell"], sets["dev"], spaces=(space,))[space]
    assert r["fd_diff"] == pytest.approx(r["fd_enh_schnell"] - r["fd_enh_dev"])
    # A fresh dev sample must sit clearly nearer dev than schnell, beyond sampling noise.
    assert r["fd_diff"] > 0.2 * r["fd_schnell_dev"] > 0


@pytest.mark.parametrize("space", sorted(FEATURE_SPACES))
def test_schnell_like_output_moves_toward_schnell(space, sets):
    r = fd_diff(sets["schnell_like"], sets["schnell"], sets["dev"], spaces=(space,))[space]
    assert r["fd_diff"] < -0.2 * r["fd_schnell_dev"] < 0


@pytest.mark.parametrize("space", sorted(FEATURE_SPACES))
def test_halfway_output_lies_between(space, sets):
    r = fd_diff(sets["halfway"], sets["schnell"], sets["dev"], spaces=(space,))[space]
    gap = r["fd_schnell_dev"]
    assert 0 < r["fd_enh_schnell"] < gap
    assert 0 < r["fd_enh_dev"] < gap


def test_fd_diff_rejects_unknown_space(sets):
    with pytest.raises(ValueError, match="inception"):
        fd_diff(sets["dev"], sets["schnell"], sets["dev"], spaces=("inception",))


# --- C2ST ------------------------------------------------------------------------------------------------------


def test_c2st_same_distribution_is_chance_and_seeded():
    a, b = make_dev(100, seed=10), make_dev(100, seed=11)
    r = c2st_images(a, b, seed=0, paired=False)
    assert 0.35 <= r["accuracy"] <= 0.65
    assert r["ci"][0] < 0.5 < r["ci"][1]  # chance lies inside the interval
    assert r == c2st_images(a, b, seed=0, paired=False)


def test_c2st_detects_blur_with_an_interval_above_chance():
    r = c2st_images(make_dev(100, seed=10), blur(make_dev(100, seed=11)), seed=0, paired=False)
    assert r["accuracy"] > 0.9 and r["ci"][0] > 0.8 and r["auc"] > 0.95


def test_c2st_sees_colour_speckle_that_luminance_cannot():
    a = make_dev(100, seed=10)
    rng = np.random.default_rng(0)
    # Zero-mean chroma noise: opposite signs in R and B leave the luminance nearly untouched.
    n = rng.normal(0, 6, (100, SIZE, SIZE, 1)) * np.array([1.0, -0.3, -1.0])
    speckled = np.clip(a + n, 0, 255).round().astype(np.uint8)
    luma_only = c2st_images(a, speckled, seed=0, spaces=("spectral",))["accuracy"]
    with_chroma = c2st_images(a, speckled, seed=0)["accuracy"]
    assert with_chroma > 0.9 and with_chroma > luma_only + 0.2


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(100, 100)
    assert hi == 1.0 and lo == pytest.approx(0.963, abs=1e-3)  # exactly: the interval holds the estimate 1.0
    assert wilson_interval(0, 119)[0] == 0.0 and wilson_interval(119, 119)[1] == 1.0
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.404, abs=1e-3) and hi == pytest.approx(0.596, abs=1e-3)


# --- torch-fidelity Inception ----------------------------------------------------------------------------------


def test_inception_metrics_without_weights_is_unavailable(tmp_path):
    r = inception_metrics(str(tmp_path), str(tmp_path), None)
    assert r["available"] is False
    assert "evaluate.inception_weights" in r["reason"] and INCEPTION_WEIGHTS_FILE in r["reason"]
    missing = str(tmp_path / INCEPTION_WEIGHTS_FILE)
    r = inception_metrics(str(tmp_path), str(tmp_path), missing)
    assert r["available"] is False and missing in r["reason"]


def test_inception_metrics_rejects_tiny_folders(tmp_path):
    weights = tmp_path / INCEPTION_WEIGHTS_FILE
    weights.touch()  # only existence is checked before the folders
    one = _write_pngs(tmp_path / "one", make_dev(1, seed=0))
    with pytest.raises(ValueError, match=">= 2"):
        inception_metrics(one, one, str(weights))
    with pytest.raises(ValueError, match="does not exist"):
        inception_metrics(str(tmp_path / "nowhere"), one, str(weights))


def _write_pngs(folder, images):
    folder.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i:03d}.png")
    return str(folder)


def test_inception_metrics_with_local_weights_runs(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    # The extractor always loads weights in __init__; skip that once to get a random-init module whose
    # state_dict has exactly the expected keys. Values are meaningless: this checks plumbing only.
    with monkeypatch.context() as m:
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})  # no network here
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        torch.manual_seed(0)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    weights = tmp_path / INCEPTION_WEIGHTS_FILE
    torch.save(net.state_dict(), weights)
    del net
    assert inception_weights_problem(str(weights)) is None

    dir1 = _write_pngs(tmp_path / "a", make_dev(4, seed=20))
    dir2 = _write_pngs(tmp_path / "b", blur(make_dev(4, seed=21)))
    r = inception_metrics(dir1, dir2, str(weights), kid_subset_size=50)
    assert r["available"] is True
    assert r["kid_subset_size"] == 4  # lowered to the set size
    assert all(math.isfinite(r[k]) for k in ("fid", "kid_mean", "kid_std"))


# --- the fast trace route of the Fréchet distance ----------------------------------------------------------------


@pytest.mark.parametrize("n_a, n_b, d", [(300, 200, 6), (11, 9, 224)])  # eigen route; cross-product SVD route
def test_trace_sqrt_product_matches_scipy_sqrtm(n_a, n_b, d):
    import scipy.linalg

    from facerealism.metrics.frechet import _trace_sqrt_product

    rng = np.random.default_rng(0)
    a = rng.normal(size=(n_a, d)) @ rng.normal(size=(d, d))  # correlated features
    b = rng.normal(size=(n_b, d)) * rng.uniform(0.5, 2, d)
    a, b = a - a.mean(0), b - b.mean(0)
    cov_a, cov_b = a.T @ a / (n_a - 1), b.T @ b / (n_b - 1)
    expected = np.trace(np.real(scipy.linalg.sqrtm(cov_a @ cov_b)))
    assert _trace_sqrt_product(a, b) == pytest.approx(expected, rel=1e-5)


def test_frechet_rejects_non_finite_features():
    x = np.random.default_rng(0).normal(size=(10, 3))
    y = x.copy()
    y[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(x, y)


# --- Table 4 rows: FD to both references with bootstrap CIs ----------------------------------------------------


@pytest.mark.parametrize("space", sorted(FEATURE_SPACES))
def test_fd_row_on_paired_sets(space, sets):
    from facerealism.metrics import fd_row

    # Paired like the held-out split: schnell i is a blurred rendering of dev i.
    f, dev = FEATURE_SPACES[space], sets["dev"]
    f_schnell, f_dev = f(blur(dev)), f(dev)
    gap = fd_row(f_dev, f_schnell, f_dev, n_boot=0)
    # The dev set itself: 0 to dev by construction and FD_diff is the whole gap.
    assert gap["fd_dev"] == pytest.approx(0.0, abs=1e-6) and gap["fd_diff"] == pytest.approx(gap["fd_schnell"])
    assert gap["fd_diff"] > 0
    # A (more lightly) blurred copy of the dev set as the "enhanced" output: FD_diff < 0, CI entirely below 0.
    blurred = fd_row(f(blur(dev, sigma=0.9)), f_schnell, f_dev, n_boot=30, seed=0, paired=True)
    assert blurred["fd_diff"] < 0 and blurred["fd_diff_ci"][1] < 0
    assert "fd_diff_ci" not in gap  # n_boot=0 skips the intervals
    # Halfway between the blur and the original lies between those two.
    half = ((dev.astype(np.float64) + blur(dev)) / 2).round().astype(np.uint8)
    assert blurred["fd_diff"] < fd_row(f(half), f_schnell, f_dev, n_boot=0)["fd_diff"] < gap["fd_diff"]


def test_fd_row_intervals_bracket_their_own_estimate_where_repeated_rows_inflate_the_fd():
    """Many features, few images: an FD on a resample (repeated rows) is inflated, so the resamples' percentile
    interval of each distance missed its own plug-in value (as 13 of 26 FD_diff intervals did in the conv-net
    space). Re-centred on it, each interval brackets it and keeps the resamples' spread."""
    from facerealism.metrics import fd_row

    rng = np.random.default_rng(0)
    dev = rng.normal(size=(40, 48))
    schnell = 0.8 * dev + 0.6 * rng.normal(size=dev.shape)
    row = 0.9 * dev + 0.45 * rng.normal(size=dev.shape)
    out = fd_row(row, schnell, dev, n_boot=60, seed=0, paired=True)
    for name in ("fd_schnell", "fd_dev", "fd_diff"):
        low, high = out[f"{name}_ci"]
        assert low < out[name] < high, (name, out)
    # The spread is the resamples': the FD to dev of a resample ranges over more than 10 % of its value.
    assert out["fd_dev_ci"][1] - out["fd_dev_ci"][0] > 0.1 * out["fd_dev"]


def test_fd_row_paired_needs_equal_lengths():
    from facerealism.metrics import fd_row

    x = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="one length"):
        fd_row(x, x[:8], x, n_boot=2, paired=True)


def test_c2st_identical_sets_is_chance():
    a = make_dev(60, seed=12)
    assert c2st_images(a, a.copy(), seed=0)["accuracy"] == 0.5  # twins share a fold and get one score


def test_empty_and_mismatched_sets_fail_clearly(sets):
    empty = np.zeros((0, SIZE, SIZE, 3), np.uint8)
    with pytest.raises(ValueError, match="is empty"):
        fd_diff(empty, sets["schnell"], sets["dev"])
    with pytest.raises(ValueError, match="sizes differ"):
        c2st_images(sets["dev"][:8], sets["dev"][:8, :16, :16])


# --- input -> output fidelity: SSIM, LPIPS, identity -----------------------------------------------------------


def test_ssim_pairs_identity_is_one_and_mismatch_fails(sets):
    from facerealism.metrics import ssim_pairs

    dev = sets["dev"][:4]
    np.testing.assert_allclose(ssim_pairs(dev, dev.copy()), 1.0)
    assert (ssim_pairs(dev, blur(dev)) < 0.95).all()
    with pytest.raises(ValueError, match="pair up"):
        ssim_pairs(dev, dev[:3])


def test_lpips_needs_local_backbone_and_uses_it(tmp_path, sets):
    import torchvision

    from facerealism.metrics import lpips_pairs

    dev = sets["dev"][:3]
    r = lpips_pairs(dev, dev, None)
    assert r["available"] is False and "evaluate.lpips_weights" in r["reason"]
    assert "does not exist" in lpips_pairs(dev, dev, str(tmp_path / "nope.pth"))["reason"]
    # A seeded random AlexNet in torchvision's state_dict format: plumbing only, values carry no meaning.
    torch.manual_seed(0)
    weights = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights)
    same = lpips_pairs(dev, dev.copy(), str(weights))
    assert same["available"] and same["mean"] == pytest.approx(0.0, abs=1e-6)
    assert lpips_pairs(dev, 255 - dev, str(weights))["mean"] > 0
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a torchvision AlexNet"):
        lpips_pairs(dev, dev, str(bad))


def test_identity_on_a_photograph_and_on_cartoons(sets):
    from skimage import data

    from facerealism.metrics import identity_similarity

    photo = data.astronaut()[None]  # a real portrait bundled with scikit-image (512x512)
    soft = blur(photo, sigma=1.5)
    r = identity_similarity(photo, soft)
    assert r["available"] and r["pairs_scored"] == 1 and 0.9 < r["mean_cosine"] <= 1.0
    assert identity_similarity(photo, photo.copy())["mean_cosine"] == pytest.approx(1.0, abs=1e-6)
    # Small procedural images hold no detectable face: unavailable, with the reason.
    r = identity_similarity(sets["dev"][:4], sets["dev"][:4])
    assert r["available"] is False and "0/4 inputs" in r["reason"]


def test_spectral_features_of_a_smooth_ramp_leak_no_high_frequency_power():
    """A ramp has no texture; only the window keeps the jump at its border (the FFT wraps around) from leaking
    ~1/f^2 power into every bin (measured: 3.7 decades above the uint8 noise floor without it, 6 with it)."""
    ramp = np.broadcast_to(np.linspace(40, 200, SIZE)[None, :, None], (SIZE, SIZE, 3)).round().astype(np.uint8)
    profile = spectral_features(ramp[None])[0]
    assert profile[len(profile) // 2 :].max() < profile[0] - 4


def test_flat_grain_sees_texture_on_flat_regions_and_not_sharpening_or_tone():
    """Half a flat wall, half busy texture: sharpening the texture and brightening everything add no grain to the
    wall; grey noise on the wall reads its own sigma."""
    from facerealism.metrics import flat_grain

    rng = np.random.default_rng(0)
    img = np.full((1, 64, 64, 3), 120.0)
    img[:, :, 32:] += gaussian_filter(rng.normal(0, 30, (64, 32)), 1.0)[None, :, :, None]
    x = np.clip(img, 0, 255).astype(np.uint8)
    sharpened = np.clip(x + 1.5 * (x - gaussian_filter(x.astype(float), (0, 1, 1, 0))), 0, 255).astype(np.uint8)
    noisy = np.clip(x + rng.normal(0, 8, (1, 64, 64, 1)), 0, 255).astype(np.uint8)
    assert flat_grain(x, x) == 0
    assert flat_grain(x, np.clip(x.astype(int) + 20, 0, 255).astype(np.uint8)) < 0.5
    assert flat_grain(x, sharpened) < 1.0
    assert 5.0 < flat_grain(x, noisy, flat_quantile=0.25) < 9.0
