"""The `evaluate` section: Table 4's columns, feature spaces, controls and fitted baselines."""

from __future__ import annotations

from pydantic import Field, field_validator

from facerealism.config.base import Section


def _known(names: list[str], known, what: str) -> list[str]:
    """`names` unchanged when each is in `known`; else a ValueError naming the unknown ones and the choices."""
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; choose from {known}")
    return names


class EvaluateConfig(Section):
    spaces: list[str] = Field(default_factory=lambda: list(_space_names()))
    """Feature spaces of the Fréchet distances (FD_diff with CIs per space; facerealism.metrics.spaces);
    spectral_chroma sees colour speckle."""

    @field_validator("spaces")
    @classmethod
    def _known_spaces(cls, v: list[str]) -> list[str]:
        return _known(v, _space_names(), "feature space(s)")
    c2st_folds: int = Field(5, ge=2)
    """Folds of the C2ST: each image is scored by a classifier trained on the other folds (its pair held out too)."""
    c2st_seeds: int = Field(5, ge=1)
    """Fold seeds each C2ST is repeated over, on each test half; the gate reads the worst run (the spread is reported)."""
    c2st_max_images: int = Field(200, ge=8)
    """Images per class for the C2ST (the first n of the held-out split)."""
    controls: list[str] = Field(default_factory=lambda: list(_control_names()))
    """Negative-control filters scored as Table 4 rows and run through the gate (facerealism.scoring.controls)."""

    @field_validator("controls")
    @classmethod
    def _known_controls(cls, v: list[str]) -> list[str]:
        return _known(v, _control_names(), "control(s)")
    fitted: list[str] = Field(default_factory=lambda: list(_fitted_names()))
    """Baselines fitted in closed form to the training pairs (facerealism.scoring.fitted), scored as Table 4 rows; the head
    must beat the best of them (register.must_beat_fitted)."""

    @field_validator("fitted")
    @classmethod
    def _known_fitted(cls, v: list[str]) -> list[str]:
        return _known(v, _fitted_names(), "fitted baseline(s)")
    inception_weights: str | None = None
    """Local weights-inception-2015-12-05 file for torch-fidelity FID/KID; unset -> torch-fidelity's cache/download."""
    lpips_weights: str | None = None
    """Local torchvision AlexNet state_dict (alexnet-owt-7be5be79.pth) for LPIPS; unset -> torchvision's cache or
    download; offline and uncached -> reported unavailable. The same order holds for the settings below."""
    dinov2_weights: str | None = None
    """Local state dict of torch.hub's facebookresearch/dinov2 dinov2_vitl14 for FD-DINOv2; unset -> torch.hub."""
    clip_model: str | None = None
    """Local save_pretrained folder of a CLIP model for CMMD; unset -> openai/clip-vit-large-patch14-336 (HF cache)."""
    bootstrap: int = Field(100, ge=0)
    """Bootstrap resamples for the 95 % CIs of the Fréchet distances; 0 skips the intervals."""
    face_upsample: int = Field(1, ge=0, le=3)
    """dlib HOG detector upsampling for identity; each step doubles the image (finds ~40 px faces at 1)."""
    extra_heads: dict[str, str] = Field(default_factory=dict)
    """Table 4 label -> trained head folder (e.g. CycleGAN: models/head_resnet), evaluated beside models/head."""
    grid_n: int = Field(8, ge=1)
    workers: int = Field(1, ge=1)
    """Processes computing Table 4's features in shards of the test split: 1 here, no cluster; N: a local Dask
    cluster of N single-threaded processes. A scheduler (generate.dask_address, env FACEREALISM_DASK_ADDRESS) wins.
    The numbers are the same bits with any count (facerealism.scoring.shards)."""


def _space_names() -> list[str]:
    from facerealism.metrics.spaces import FEATURE_SPACES

    return list(FEATURE_SPACES)


def _control_names() -> list[str]:
    from facerealism.scoring.controls import CONTROLS

    return list(CONTROLS)


def _fitted_names() -> list[str]:
    from facerealism.scoring.fitted import FITTERS

    return list(FITTERS)
