"""Pretrained feature spaces of the current literature: FD-DINOv2 (Stein et al. 2023) and CMMD (Jayasumana et al. 2024)."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from facerealism.errors import UserError
from facerealism.metrics import check_images, pretrained

# CMMD's Gaussian RBF kernel bandwidth and output scale, as in the paper's reference code.
CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _batches(images: np.ndarray, batch_size: int):
    for start in range(0, len(images), batch_size):
        # (b, h, w, 3) uint8 -> (b, 3, h, w) float in [0, 1]
        yield torch.from_numpy(images[start : start + batch_size]).permute(0, 3, 1, 2).float().div(255.0)


def dinov2_features(images: np.ndarray, model, size: int = 224, batch_size: int = 32) -> np.ndarray:
    """DINOv2 CLS features as dgm-eval computes them: bicubic resize to `size`, ImageNet normalisation.

    Args:
        images: (n, h, w, 3) uint8.
        model: from pretrained.dinov2().
        size: input side; a multiple of the ViT's patch size (14).
        batch_size: images per forward pass.

    Returns:
        (n, d) float64 features.
    """
    check_images(images)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for x in _batches(images, batch_size):
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
            out.append(model((x - mean) / std).float())
    return torch.cat(out).double().numpy()


def clip_embeddings(images: np.ndarray, model, processor, batch_size: int = 32) -> np.ndarray:
    """L2-normalised CLIP image embeddings as CMMD computes them: bicubic resize to the processor's crop size.

    Args:
        images: (n, h, w, 3) uint8.
        model: CLIPVisionModelWithProjection from pretrained.clip().
        processor: its CLIPImageProcessor (normalisation constants and input size).
        batch_size: images per forward pass.

    Returns:
        (n, d) float64 unit-norm embeddings.
    """
    check_images(images)
    crop = processor.crop_size
    size = (crop["height"], crop["width"])
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for x in _batches(images, batch_size):
            # Resize the whole image instead of the processor's shorter-side resize + centre crop: faces fill
            # the frame, and cropping would drop hair and chin (CMMD's reference code does the same).
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
            emb = model(pixel_values=(x - mean) / std).image_embeds.float()
            out.append(emb / emb.norm(dim=-1, keepdim=True))
    return torch.cat(out).double().numpy()


def cmmd(x: np.ndarray, y: np.ndarray, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE) -> float:
    """CMMD: scaled squared MMD with a Gaussian RBF kernel between two embedding sets (the paper's estimator).

    Args:
        x: (n, d) embeddings.
        y: (m, d) embeddings.
        sigma: kernel bandwidth; k(a, b) = exp(-||a - b||^2 / (2 sigma^2)).
        scale: output scale.

    Returns:
        scale * (mean k(x, x') + mean k(y, y') - 2 mean k(x, y)), >= 0; 0 for identical sets.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise UserError(f"CMMD needs (n, d) and (m, d) embeddings with one d, got {x.shape} and {y.shape}")
    gamma = 1.0 / (2.0 * sigma**2)

    def k_mean(a: np.ndarray, b: np.ndarray) -> float:
        sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T  # (n, m) squared distances
        return float(np.exp(-gamma * np.clip(sq, 0, None)).mean())

    return max(scale * (k_mean(x, x) + k_mean(y, y) - 2.0 * k_mean(x, y)), 0.0)


def dinov2_model(configured: str | None = None):
    """pretrained.dinov2, loaded once per process and place it is read from (evaluate's shards ask on every shard)."""
    return _dinov2(configured, str(pretrained.torch_hub_dir()))


@functools.lru_cache(maxsize=2)
def _dinov2(configured: str | None, hub: str):
    return pretrained.dinov2(configured)


def clip_model(configured: str | None = None):
    """pretrained.clip (model, processor), loaded once per process and Hugging Face cache."""
    from huggingface_hub import constants

    return _clip(configured, constants.HF_HUB_CACHE)


@functools.lru_cache(maxsize=2)
def _clip(configured: str | None, cache: str):
    return pretrained.clip(configured)
