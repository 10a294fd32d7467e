"""The `rate` section: the two-alternative rating page (`facerealism rate`) and where its votes are kept."""

from __future__ import annotations

from pydantic import Field

from facerealism.config.base import Section


class RateConfig(Section):
    database: str = "sqlite:///data/ratings.db"
    """SQLAlchemy URL of the votes; a relative SQLite path is resolved against the project. A team shares one
    PostgreSQL database, e.g. postgresql+psycopg2://USER@HOST:5432/DB."""
    pairs_per_comparison: int = Field(20, ge=1)
    """Held-out prompts shown per comparison (head vs dev, vs schnell, vs the best fitted baseline)."""
    attention_checks: int = Field(5, ge=1)
    """Trials of dev vs a heavily degraded copy per rater; a rater who misses them is set aside as careless."""
    min_attention: float = Field(0.8, ge=0, le=1)
    """Share of attention checks a rater must answer right to be counted (raters who answered none are not)."""
    display_px: int = Field(384, ge=64)
    """Largest side an image is shown at (nearest-neighbour upscaling keeps the pixels' texture visible)."""
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=1, le=65535)
