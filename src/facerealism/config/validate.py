"""The `validate` section: the expectations suite's thresholds and the quarantine gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from facerealism.config.base import Section


class ValidateConfig(Section):
    min_std: float = Field(4.0, ge=0.0)
    """Pixel std (contrast) below this is a blank frame."""
    max_std: float = Field(110.0, ge=0.0)
    """Pixel std above this is salt-and-pepper-like garbage, not a portrait."""
    min_brightness: float = Field(16.0, ge=0.0, le=255.0)
    """Mean grey level below this is a black frame."""
    max_brightness: float = Field(240.0, ge=0.0, le=255.0)
    """Mean grey level above this is a white / blown-out frame."""
    min_sharpness: float = Field(0.5, ge=0.0)
    """Variance of the Laplacian below this is a smeared frame. It falls with resolution: blurred synthetic
    faces measure 40+ at 64 px but 0.7 at 512 px; raise it for photographic backends."""
    max_sharpness: float = Field(20000.0, ge=0.0)
    """Variance of the Laplacian above this is noise (uniform noise measures ~1e5)."""
    phash_size: int = Field(16, ge=4, le=32)
    """Perceptual hash side: phash_size**2 bits. 64-bit hashes (8) called distinct 64 px synthetic faces
    near-duplicates (distance 2); with 256 bits their closest pair is 34 apart."""
    phash_max_distance: int = Field(10, ge=0)
    """Hamming distance at or below which two images of one side are near-duplicates (+-1 pixel noise: 4)."""
    face_check_backends: list[str] = Field(default_factory=lambda: ["flux", "diffusers"])
    """Backends whose images must show exactly one plausible face; synthetic cartoons are not photographs
    (dlib's HOG finds a face in some 256 px schnell-like cartoons and none in their dev partners)."""
    face_detector: Literal["hog", "cnn"] = "hog"
    """dlib detector: hog (fast CPU) or cnn (MMOD; slow without a GPU)."""
    face_upsample: int = Field(1, ge=0, le=3)
    """Image upsamplings before detection; HOG's window is 80 px, one upsampling finds faces down to ~40 px."""
    face_min_score: float = Field(0.5, ge=-2.0)
    """Detector confidence below this is ignored (a false positive on astronaut.png scores 0.12, the face 1.16)."""
    face_min_size: float = Field(0.1, gt=0.0, le=1.0)
    """Smallest plausible face box side, as a fraction of the image side."""
    face_max_size: float = Field(0.9, gt=0.0, le=1.0)
    face_center_margin: float = Field(0.1, ge=0.0, lt=0.5)
    """A face whose centre lies within this fraction of an image border is cut off, not a portrait."""
    pair_check_backends: list[str] = Field(default_factory=lambda: ["synthetic", "flux", "diffusers"])
    """Backends whose dev image is checked against its own schnell image (the next three keys): FLUX img2img
    below strength ~0.9 is reported to return hazy images or near-copies of its input."""
    min_sharpness_ratio: float = Field(0.5, ge=0.0)
    """Floor of dev/schnell high-pass share (Laplacian variance / pixel variance, contrast-free): a hazy dev.
    Measured (2026-12-04): synthetic 32 px >= 1.02, 64 px >= 6.5; tiny random FLUX 0.80-1.93; dev = schnell
    blurred sigma 1 <= 0.16. 0.5 sits 1.6x below the lowest good pair and 3x above the haziest planted one."""
    min_contrast_ratio: float = Field(0.8, ge=0.0)
    """Floor of dev/schnell pixel std: a washed-out dev. Measured: synthetic >= 0.96, tiny random FLUX
    0.93-1.17, dev = 60 % schnell + 40 % its mean 0.60."""
    max_pair_ssim: float = Field(0.985, ge=-1.0, le=1.0)
    """Ceiling of SSIM(dev, schnell) (luma, 7x7): a near-copy. Measured: synthetic 32 px <= 0.979 (1000 pairs),
    64 px <= 0.949; tiny random FLUX <= 0.15; dev = schnell +-2 grey levels >= 0.992 (200 pairs). The gap is
    narrow only for 32 px cartoons, whose schnell keeps 35 % of dev's detail; img2img at 0.7 repaints far more.
    At 512 px it misses JPEG, noisy and shifted copies of photographs: max_pair_detail_correlation catches those."""
    max_pair_detail_correlation: float = Field(0.6, ge=-1.0, le=1.0)
    """Ceiling of the correlation of dev's fine detail with its schnell image's (luma minus its sigma-1 blur, the
    best of shifts up to 2 px): a near-copy at the sizes where SSIM cannot see one. Measured at 512 px on 8 real
    photographs (tests/test_validate.py): JPEG q90 copies >= 0.92, q75 >= 0.85, copy + sigma-4 noise >= 0.80, 1-px
    shifted copy 1.00 (their SSIM 0.70-0.99, under the 0.985 ceiling); re-render stand-ins (a photograph whose
    detail finer than a sigma-1.5 blur is replaced by a fresh instance of its own spectrum) 0.10-0.27; synthetic
    pairs <= 0.19."""
    detail_correlation_min_size: int = Field(256, ge=8)
    """generate.size from which the check above applies. Small synthetic pairs correlate by construction: their
    schnell is dev's own face blurred, and at 32-128 px the face's edges are the fine detail (up to 0.93 at 32 px,
    0.56 at 128, 0.30 at 256, 0.19 at 512; 16 pairs each); there the SSIM ceiling is the near-copy check."""
    max_failed_fraction: float = Field(0.02, ge=0.0, le=1.0)
    """The gate: more failed pairs than this fails the pipeline. The median of each pair ratio must also clear
    its bound: a set whose typical pair is hazy or a copy fails whatever this fraction allows."""

    @model_validator(mode="after")
    def _ranges_ordered(self) -> "ValidateConfig":
        for lo, hi in (("min_std", "max_std"), ("min_brightness", "max_brightness"),
                       ("min_sharpness", "max_sharpness"), ("face_min_size", "face_max_size")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} ({getattr(self, lo)}) is larger than {hi} ({getattr(self, hi)})")
        return self
