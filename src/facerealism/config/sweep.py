"""The `sweep` section: the weekly grid of train settings, which no dvc.yaml stage reads."""

from __future__ import annotations

from pydantic import Field

from facerealism.config.base import Section


class SweepConfig(Section):
    """The paper's hyper-parameter search: a grid over lambda_cyc x lr, one training per cell."""

    lambda_cyc: list[float] = Field(default_factory=lambda: [1.0, 2.0, 5.0, 10.0])
    """Cycle-consistency weights to try."""
    lr: list[float] = Field(default_factory=lambda: [1e-4, 2e-4])
    """Learning rates to try."""
    steps: int | None = Field(None, ge=1)
    """Training steps per trial; null uses train.steps."""
    workers: int = Field(2, ge=1)
    """Trials trained at once, each in its own process (torch and accelerate state is per process)."""
    min_cycle_ssim: float = Field(0.9, ge=0, le=1)
    """SSIM(x, F(G(x))) on held-out images below this marks a trial as failed (it lost the content)."""
