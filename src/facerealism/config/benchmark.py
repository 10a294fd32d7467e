"""The `benchmark` section: what the speed benchmark times."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from facerealism.config.base import Section


class BenchmarkConfig(Section):
    sizes: list[int] = Field(default_factory=lambda: [64, 256])
    """Image sides at which the head's inference variants are timed."""
    batch_size: int = Field(1, ge=1)
    """Batch of the batched variant (the fastest single-image variant this machine runs, batched); 1 skips it."""
    mixed_precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto: time the bf16 variants (and the pipelines in generate.flux.dtype bfloat16) only where the device computes
    bf16 in hardware; on a CPU that emulates it they would take minutes and measure nothing a user runs, so they are
    skipped with the reason in benchmark.json. bf16: time them anyway; fp32: never."""
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
