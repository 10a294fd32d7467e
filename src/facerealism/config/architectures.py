"""The head architectures by name: the one list that config choices, trainers, labels and benchmarks read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal


def _resnet_kwargs(t) -> dict:
    kwargs = {"ngf": t.ngf, "n_blocks": t.n_blocks, "residual_output": t.residual_output}
    if t.detail:
        kwargs["detail"] = True  # absent when off, so heads saved before the option load unchanged
        if not t.detail_colour:
            kwargs["detail_colour"] = False  # likewise: absent at its default
        if t.detail_noise:
            kwargs["detail_noise"] = True
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


@dataclass(frozen=True)
class Recipe:
    """What was trained, by name: the one place a head's name is derived (Table 4, MLflow, the model card)."""

    id: str
    """Short, stable: MLflow tags and params (e.g. esa_cyclegan, detail_paired)."""
    label: str
    """What a person reads (Table 4 row, model card title)."""


# The output of a ResNet-family head and whether a paired term trains it: (detail, residual, paired) -> (id, label).
# "ESA-CycleGAN" / "CycleGAN" name only the paper's method: free generator, tanh output, unpaired losses.
_RESNET_RECIPES = {
    (False, False, False): ("cyclegan", "{cyclegan}"),
    (False, True, False): ("residual_unpaired", "{net} residual head (unpaired)"),
    (False, False, True): ("tanh_paired", "{net} tanh head (paired)"),
    (False, True, True): ("residual_paired", "{net} residual head (paired)"),
    (True, True, False): ("detail_unpaired", "detail-gain {net} head (unpaired)"),
    (True, True, True): ("detail_paired", "detail-gain {net} head (paired)"),
}
_RESNET_NAMES = {"esa_resnet": ("ESA", "esa_", "ESA-CycleGAN"), "resnet": ("ResNet", "resnet_", "CycleGAN")}


def recipe(t) -> Recipe:
    """The recipe train.* trains, named truthfully.

    Args:
        t: the TrainConfig, or a dict of its keys (a head.json's config["train"]).
    """
    get = t.get if isinstance(t, dict) else lambda k, d=None: getattr(t, k, d)
    model = get("model")
    if model not in _RESNET_NAMES:
        return Recipe(model, LABELS.get(model, model))
    net, prefix, cyclegan = _RESNET_NAMES[model]
    key = (bool(get("detail", False)), bool(get("residual_output", False)), float(get("lambda_paired", 0.0)) > 0)
    rid, label = _RESNET_RECIPES.get(key, ("invalid", "{net} (detail without residual output)"))
    rid = cyclegan.lower().replace("-", "_") if rid == "cyclegan" else f"{prefix}{rid}"  # esa_cyclegan, cyclegan
    if rid in ("esa_cyclegan", "cyclegan") and float(get("lambda_idt", 0.0)) > 0:
        # the paper's unpaired method has no identity term: G(dev) = dev is this repository's addition
        rid, label = f"{rid}_identity", f"{label} + identity term (λ_idt {float(get('lambda_idt')):g})"
    if rid.startswith(("esa_cyclegan", "cyclegan")) and get("discriminator", "patchgan") != "patchgan":
        # the paper's name promises its critic too
        rid, label = f"{rid}_{get('discriminator')}", f"{label} with a {get('discriminator')} critic"
    if key[0] and get("detail_noise", False):  # noise injection: texture that is not in the input
        rid, label = rid.replace("detail", "detail_noise"), label.replace("detail-gain", "detail-gain + noise")
    return Recipe(rid, label.format(net=net, cyclegan=cyclegan))


def head_recipe(meta: dict) -> Recipe:
    """The recipe of a saved head, from the config its head.json carries; a head saved without one (by hand) is
    named by its architecture and says its losses are unknown, never by the paper's method's name."""
    train = (meta.get("config") or {}).get("train")
    return recipe(train) if train else Recipe(meta["arch"], f"{meta['arch']} head, recipe not recorded")
