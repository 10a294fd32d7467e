"""How a head learns: the trainers keyed by architecture (config.architectures), their samplers and checkpoints."""

from __future__ import annotations

from facerealism.config import Config
from facerealism.config.architectures import ARCHITECTURES
from facerealism.trainers.base import Trainer, linear_decay, make_accelerator
from facerealism.trainers.cyclegan import CycleGAN, ImagePool, lsgan, shift_tolerant_l1
from facerealism.trainers.paired import Paired, build_lpips, gradient_loss

TRAINERS: dict[str, type[Trainer]] = {"cyclegan": CycleGAN, "paired": Paired}


def trainer_class(model: str) -> type[Trainer]:
    """The trainer of an architecture name (train.model)."""
    return TRAINERS[ARCHITECTURES[model].trainer]


def build_trainer(cfg: Config, accelerator) -> Trainer:
    """The trainer of train.model, its nets built and prepared by `accelerator`."""
    return trainer_class(cfg.train.model)(cfg, accelerator)


__all__ = ["TRAINERS", "CycleGAN", "ImagePool", "Paired", "Trainer", "build_lpips", "build_trainer", "gradient_loss",
           "linear_decay", "lsgan", "make_accelerator", "shift_tolerant_l1", "trainer_class"]
