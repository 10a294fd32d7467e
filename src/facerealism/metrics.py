"""Realism-gap metrics: Fréchet distances in offline feature spaces, FD_diff, C2ST, torch-fidelity FID/KID."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import scipy.linalg
import torch
import torch.nn as nn
import torch.nn.functional as F

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


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    Args:
        feats_a: (n_a, d) features, n_a >= 2.
        feats_b: (n_b, d) features, n_b >= 2.
        eps: diagonal offset added to both covariances when the matrix square root is not finite.

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

    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        # Singular covariances (n < d) are expected here; the finiteness check below is the real guard.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(covmean).all():
            offset = np.eye(cov_a.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    # The product of two PSD matrices has a real square root; imaginary parts are round-off.
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    fd = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
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


# ---------------------------------------------------------------------------------------------------------------
# Offline feature spaces (no downloads): both see the high-frequency texture gap between schnell and dev
# ---------------------------------------------------------------------------------------------------------------


def spectral_features(images: np.ndarray, n_bins: int | None = None, chunk: int = 64) -> np.ndarray:
    """Radial log power-spectrum profile of each image's luminance.

    Args:
        images: (n, h, w, 3) uint8.
        n_bins: radial bins over normalised frequency (0, 1], 1 = Nyquist; default min(h, w) // 2, i.e. one
            frequency step per bin.
        chunk: images per FFT batch (bounds memory on large images).

    Returns:
        (n, n_bins) float64 log10 of the mean power in each bin.
    """
    _check_images(images)
    n, h, w, _ = images.shape
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
    rgb_to_y = np.array([0.299, 0.587, 0.114])
    out = np.empty((n, n_bins))
    for start in range(0, n, chunk):
        lum = images[start : start + chunk].astype(np.float64) @ rgb_to_y / 255.0  # (c, h, w)
        lum -= lum.mean(axis=(1, 2), keepdims=True)
        power = np.abs(np.fft.fft2(lum * window)) ** 2  # (c, h, w)
        out[start : start + chunk] = np.log10(power[:, keep] @ one_hot + 1e-12)
    return out


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


def _c2st_net() -> nn.Module:
    # Small on purpose: a capable classifier saturates on any artifact (environment notes), and it must train
    # in seconds on 2 CPU cores. Global pooling makes it size-agnostic.
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 1),
    )


def c2st_accuracy(
    images_a: np.ndarray,
    images_b: np.ndarray,
    seed: int = 0,
    folds: int = 2,
    epochs: int = 20,
    batch_size: int = 16,
    lr: float = 2e-3,
) -> float:
    """Classifier two-sample test: held-out accuracy of a small CNN telling images_a from images_b.

    Args:
        images_a: (n_a, h, w, 3) uint8.
        images_b: (n_b, h, w, 3) uint8, same h, w.
        seed: seeds the subsampling, fold split, init and batch order; same seed -> same accuracy.
        folds: k of the k-fold split; every image is scored once by a net that never trained on it.
        epochs: training epochs per fold.
        batch_size: training batch size; 16 gives enough steps to learn from ~100 images per side.
        lr: Adam learning rate.

    Returns:
        Accuracy over all held-out images, with min(n_a, n_b) images per class; ~0.5 = indistinguishable.
    """
    _check_images(images_a, "images_a")
    _check_images(images_b, "images_b")
    if images_a.shape[1:] != images_b.shape[1:]:
        raise ValueError(f"image sizes differ: {images_a.shape[1:]} vs {images_b.shape[1:]}")
    n = min(len(images_a), len(images_b))
    if folds < 2 or n < folds:
        raise ValueError(f"need folds >= 2 and at least `folds` images per class, got folds={folds}, n={n}")

    rng = np.random.default_rng(seed)
    # Equal class sizes so that 0.5 is chance level.
    x = _to_tensor(np.concatenate([images_a[rng.permutation(len(images_a))[:n]],
                                   images_b[rng.permutation(len(images_b))[:n]]]))  # (2n, 3, h, w)
    y = torch.cat([torch.zeros(n), torch.ones(n)])
    fold_of = np.tile(rng.permutation(n) % folds, 2)  # stratified: each fold holds n/folds of each class

    correct = 0
    # fork_rng: seed layer init without disturbing the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for k in range(folds):
            train = torch.from_numpy(np.flatnonzero(fold_of != k))
            test = torch.from_numpy(np.flatnonzero(fold_of == k))
            net = _c2st_net()
            opt = torch.optim.Adam(net.parameters(), lr=lr)
            for _ in range(epochs):
                for batch in train[torch.randperm(len(train))].split(batch_size):
                    loss = F.binary_cross_entropy_with_logits(net(x[batch]).squeeze(1), y[batch])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            with torch.inference_mode():
                pred = (net(x[test]).squeeze(1) > 0).float()
            correct += int((pred == y[test]).sum())
    return correct / (2 * n)


# ---------------------------------------------------------------------------------------------------------------
# torch-fidelity FID / KID with user-supplied Inception weights
# ---------------------------------------------------------------------------------------------------------------


def inception_weights_problem(weights_path: str | None) -> str | None:
    """Why FID/KID cannot run with these Inception weights, or None when the file is there.

    Args:
        weights_path: the setting evaluate.inception_weights.

    Returns:
        A reason naming the setting and the expected file, or None.
    """
    expected = (
        f"a torch-fidelity FeatureExtractorInceptionV3 state_dict (torch-fidelity's release file "
        f"{INCEPTION_WEIGHTS_FILE})"
    )
    if weights_path is None:
        return f"evaluate.inception_weights is not set; point it at {expected}"
    if not os.path.isfile(weights_path):
        return f"evaluate.inception_weights={weights_path!r} does not exist; expected {expected}"
    return None


def inception_metrics(
    dir_input1: str, dir_input2: str, weights_path: str | None, kid_subset_size: int = 50
) -> dict:
    """FID and KID from torch-fidelity's Inception, only with a local weights file (nothing is downloaded).

    Args:
        dir_input1: folder of png/jpg images (non-recursive, as torch-fidelity reads it).
        dir_input2: second folder.
        weights_path: torch-fidelity InceptionV3 state_dict (evaluate.inception_weights), or None.
        kid_subset_size: KID subset size, lowered to the smaller set's size when the sets are smaller.

    Returns:
        {"available": True, "fid", "kid_mean", "kid_std", "kid_subset_size"} or
        {"available": False, "reason"} when no weights file is given or it does not exist.
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
        feature_extractor_weights_path=weights_path,
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
