"""The `split` section: the held-out split, read by train, evaluate and register."""

from __future__ import annotations

from pydantic import Field, model_validator

from facerealism.config.base import Section


class SplitConfig(Section):
    """Three splits by hashed pair id: train learns on train, tuning reads validation, only Table 4 and the gate read
    test (the held-out pairs)."""

    holdout_fraction: float = Field(0.3, gt=0, lt=1)
    """Share of validated pairs in the test split (hashed ids, so adding pairs never moves one across a split)."""
    validation_fraction: float = Field(0.15, ge=0, lt=1)
    """Share in the validation split: the sweep's and recipe trials' scores, never Table 4's."""

    @model_validator(mode="after")
    def _leaves_training_pairs(self):
        if self.holdout_fraction + self.validation_fraction >= 1:
            raise ValueError(f"split.holdout_fraction + split.validation_fraction = "
                             f"{self.holdout_fraction + self.validation_fraction:g} leaves no training pairs; keep it < 1")
        return self
