"""Head architectures (generators, discriminators), built by name through a factory."""

from collections.abc import Callable

import torch.nn as nn

from facerealism.errors import UserError
from facerealism.models.esa_cyclegan import ESA, ResnetGenerator
from facerealism.models.patchgan import HighpassPatchDiscriminator, PatchDiscriminator
from facerealism.models.unet_cbam import CBAM, UNetCBAM

# Lambdas rather than functools.partial: passing `esa=` to "resnet" must fail
# (multiple values for 'esa'), not silently turn it into the other architecture.
GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "esa_resnet": lambda **kw: ResnetGenerator(esa=True, **kw),
    "resnet": lambda **kw: ResnetGenerator(esa=False, **kw),
    "unet_cbam": UNetCBAM,
}
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "patchgan": PatchDiscriminator,
    "patchgan_highpass": HighpassPatchDiscriminator,
}


def _build(registry: dict[str, Callable[..., nn.Module]], kind: str, name: str, kwargs: dict) -> nn.Module:
    if name not in registry:
        raise UserError(f"unknown {kind} {name!r}; known: {', '.join(sorted(registry))}")
    return registry[name](**kwargs)


def build_generator(name: str, **kwargs) -> nn.Module:
    """Build a generator by name.

    Args:
        name: one of GENERATORS ("esa_resnet", "resnet", "unet_cbam").
        **kwargs: constructor arguments of the architecture (e.g. ngf, n_blocks).
    Returns:
        The module, with PyTorch's default init (call `init_weights` for CycleGAN's).
    """
    return _build(GENERATORS, "generator", name, kwargs)


def build_discriminator(name: str, **kwargs) -> nn.Module:
    """Build a discriminator by name (one of DISCRIMINATORS: "patchgan", "patchgan_highpass")."""
    return _build(DISCRIMINATORS, "discriminator", name, kwargs)


def init_weights(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """CycleGAN's "normal" init: conv/linear weights N(0, gain), norm weights N(1, gain), biases 0.

    Convs marked `zero_init` (the last conv of residual-output generators) stay zero, so
    those generators remain the exact identity after this call.

    Returns:
        The same module, for chaining.
    """
    for m in module.modules():
        if getattr(m, "zero_init", False):
            continue
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)) and m.weight is not None:
            # _NormBase covers BatchNorm and InstanceNorm; only affine ones have weights.
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return module


__all__ = [
    "CBAM",
    "DISCRIMINATORS",
    "ESA",
    "GENERATORS",
    "HighpassPatchDiscriminator",
    "PatchDiscriminator",
    "ResnetGenerator",
    "UNetCBAM",
    "build_discriminator",
    "build_generator",
    "init_weights",
]
