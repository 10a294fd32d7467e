"""torch-fidelity FID / KID with its own Inception weights (configured, cached or downloaded; never random)."""

from __future__ import annotations

import os

import torch

from facerealism.errors import UserError
import facerealism.metrics.pretrained as pretrained  # not `from facerealism.metrics import`: see stages/__init__.py

# torch-fidelity's own Inception weights (TF 2015-12-05 graph converted to its FeatureExtractorInceptionV3
# state_dict); this is the name its downloader caches under $TORCH_HOME/hub/checkpoints/.
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


# Metrics of the paper's family that need weights nothing here can provide offline; reported, never faked.
NO_OFFLINE_WEIGHTS = {
    "clip_iqa": "CLIP-IQA needs CLIP weights (openai/clip-vit-base-patch32 via torchmetrics/transformers), which "
                "are not available offline here",
}


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
            raise UserError(f"image folder {d!r} does not exist")
        # Count exactly the files torch-fidelity will read, so the KID subset size fits.
        sizes.append(len(glob_samples_paths(d, False, "png,jpg,jpeg", verbose=False)))
    if min(sizes) < 2:
        raise UserError(f"FID/KID need >= 2 png/jpg images per folder; found {sizes} in {[dir_input1, dir_input2]}")
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
