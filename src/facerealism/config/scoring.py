"""Config sections of the scoring stages: evaluate, benchmark and register (the promotion gate)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from facerealism.config.base import Section


class EvaluateConfig(Section):
    spaces: list[Literal["spectral", "spectral_chroma", "random_conv"]] = Field(
        default_factory=lambda: ["spectral", "spectral_chroma", "random_conv"])
    """Feature spaces of the Fréchet distances (FD_diff with CIs per space); spectral_chroma sees colour speckle."""
    c2st_folds: int = Field(5, ge=2)
    """Folds of the C2ST: each image is scored by a classifier trained on the other folds (its pair held out too)."""
    c2st_max_images: int = Field(200, ge=8)
    """Images per class for the C2ST (the first n of the held-out split)."""
    controls: list[str] = Field(default_factory=lambda: list(_control_names()))
    """Negative-control filters scored as Table 4 rows and run through the gate (facerealism.scoring.controls)."""

    @field_validator("controls")
    @classmethod
    def _known_controls(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in _control_names()]
        if unknown:
            raise ValueError(f"unknown control(s) {unknown}; choose from {_control_names()}")
        return v
    fitted: list[str] = Field(default_factory=lambda: list(_fitted_names()))
    """Baselines fitted in closed form to the training pairs (facerealism.scoring.fitted), scored as Table 4 rows; the head
    must beat the best of them (register.must_beat_fitted)."""

    @field_validator("fitted")
    @classmethod
    def _known_fitted(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in _fitted_names()]
        if unknown:
            raise ValueError(f"unknown fitted baseline(s) {unknown}; choose from {_fitted_names()}")
        return v
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


def _control_names() -> list[str]:
    from facerealism.scoring.controls import CONTROLS

    return list(CONTROLS)


def _fitted_names() -> list[str]:
    from facerealism.scoring.fitted import FITTERS

    return list(FITTERS)


class BenchmarkConfig(Section):
    sizes: list[int] = Field(default_factory=lambda: [64, 256])
    """Image sides at which the head's inference variants are timed."""
    batch_size: int = Field(1, ge=1)
    """Batch of the batched variant (bf16 autocast); 1 skips it."""
    repeats: int = Field(5, ge=1)
    """Timed calls per measurement after one warm-up; the best is reported (least disturbed by other load)."""
    compile: bool = False
    """Also time torch.compile variants; off by default because compiling costs ~25 s on 2 CPU cores."""
    flops_size: int = Field(512, ge=64)
    """Image side for the weights-free FLUX cost model."""
    pipelines: Literal["tiny", "configured", "skip"] = "tiny"
    """Fig. 8 pipelines: tiny = random tiny FLUX built locally (plumbing-scale timings); configured =
    generate.flux.fast_model / slow_model (the real models, on a GPU); skip = no pipeline timings ("off" would
    read as a YAML boolean)."""
    pipeline_sizes: list[int] = Field(default_factory=lambda: [64, 128])
    """Image sides of the Fig. 8 timings (multiples of 16); the paper's are 256, 512, 768, 1024."""
    pipeline_repeats: int = Field(2, ge=1)
    """Timed images per pipeline and size after one warm-up."""

    @field_validator("pipeline_sizes")
    @classmethod
    def _multiple_of_16(cls, v: list[int]) -> list[int]:
        bad = [s for s in v if s % 16 or s <= 0]
        if bad:
            raise ValueError(f"FLUX image sides must be positive multiples of 16, got {bad}")
        return v


class RegisterConfig(Section):
    model_name: str = "facerealism-head"
    required: dict[str, float] = Field(default_factory=lambda: {
        "fd_diff_ci_low.spectral": 0.0, "fd_diff_ci_low.spectral_chroma": 0.0, "fd_diff_ci_low.random_conv": 0.0})
    """metric -> strict lower bound; a missing metric fails the gate. Default: FD_diff's whole 95 % CI above 0."""
    below: dict[str, float | str] = Field(default_factory=lambda: {
        "c2st.dev_vs_enhanced_ci_high": "c2st.dev_vs_schnell_ci_low", "c2st.dev_vs_enhanced": 0.95})
    """metric -> strict upper bound, a number or another metric's name. Default: the C2ST vs dev must fall clearly
    below schnell's (CIs apart) and under 0.95: the rule every negative control fails and dev passes."""
    max_photo_colour_noise_gain: float = Field(1.1, gt=0)
    """Ceiling of evaluate's photo check (chroma detail gain over luminance detail gain on a real photograph):
    RGB noise of sigma 4/255 reads 1.22 at 64 px and 2.7 at 512 px there; a head that only sharpens reads <= 1."""
    max_photo_edge_overshoot: float = Field(4.0, gt=0)
    """Ceiling of the photo check's luminance overshoot beyond the input's local range at its strongest edges (grey
    levels, worst size): halos and ringing. Measured on the astronaut at 64 / 512 px: unsharp r1 100 % 2.0 / 3.2,
    detail gain x1 2.0 / 3.2, unsharp r2 200 % 7.6 / 12.4, detail gain x2 5.7 / 7.8."""
    max_photo_clipped_gain: float = Field(0.1, gt=0)
    """Ceiling of the share of the photo's pixels whose highlights the head newly blows out (a channel at 255).
    Measured at 64 / 512 px: unsharp r1 100 % 0.05 / 0.01, unsharp r2 200 % 0.21 / 0.05, brightness x1.35 0.40 / 0.41."""
    check_controls: bool = True
    """Refuse to promote unless every Table 4 control fails the gate and dev passes it. false: smoke tests only."""
    must_beat_fitted: bool = True
    """Promote a head only if its C2ST vs dev is clearly below (CIs apart) the best fitted baseline's: a learned head
    that a least-squares filter matches is not promoted, and nothing else is either. false: smoke tests only."""
    champion_metric: str = "fd_diff.spectral"
    """Compared against the current champion's value; higher is better."""
    margin_over_champion: float = 0.0
    """The candidate must beat the champion's champion_metric by more than this to replace it."""
    on_split_change: Literal["absolute_only", "fail"] = "absolute_only"
    """Champion scored on another held-out split: decide on absolute thresholds only, or refuse to promote."""
    min_images_per_s: float = Field(0.5, ge=0)
    """Throughput floor: fp32 head images/s from reports/benchmark.json; a missing benchmark fails the gate."""
    throughput_size: int | None = None
    """Image side whose benchmark is read; null = the first of benchmark.sizes."""
