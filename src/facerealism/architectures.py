"""The head architectures by name: the one list that config choices, trainers, labels and benchmarks read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal


def _resnet_kwargs(t) -> dict:
    kwargs = {"ngf": t.ngf, "n_blocks": t.n_blocks, "residual_output": t.residual_output}
    if t.detail:
        kwargs["detail"] = True  # absent when off, so heads saved before the option load unchanged
    return kwargs


def _unet_kwargs(t) -> dict:
    return {"base": t.ngf, "depth": t.unet_depth, "residual_output": t.residual_output}


@dataclass(frozen=True)
class Architecture:
    label: str
    """Table 4 row label."""
    trainer: str
    """Key of the trainer in facerealism.trainers.TRAINERS: "cyclegan" (unpaired, with a cycle) or "paired"."""
    kwargs: Callable
    """TrainConfig -> the generator's constructor arguments (stored in head.json and checkpoints)."""


# Torch-free on purpose: config.py reads the names, and the CLI should not import torch to validate params.
ARCHITECTURES: dict[str, Architecture] = {
    "esa_resnet": Architecture("ESA-CycleGAN", "cyclegan", _resnet_kwargs),
    "resnet": Architecture("CycleGAN", "cyclegan", _resnet_kwargs),
    "unet_cbam": Architecture("U-Net+CBAM (paired)", "paired", _unet_kwargs),
}
NAMES: tuple[str, ...] = tuple(ARCHITECTURES)
ArchName = Literal[NAMES]  # type: ignore[valid-type]  # Literal of a tuple: one Literal of each name
CYCLE_MODELS: tuple[str, ...] = tuple(n for n, a in ARCHITECTURES.items() if a.trainer == "cyclegan")
LABELS: dict[str, str] = {n: a.label for n, a in ARCHITECTURES.items()}


def generator_kwargs(t) -> dict:
    """The constructor arguments of the generator train.* builds.

    Args:
        t: the TrainConfig (train.model picks the architecture).
    """
    return ARCHITECTURES[t.model].kwargs(t)
