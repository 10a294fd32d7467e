"""Preset dmd2-sdxl: DMD2's one-step SDXL UNet (LCM, t=399) -> SDXL base 1.0 (50 steps, CFG 5); DMD2 is
CC BY-NC-SA 4.0 (non-commercial), SDXL base CreativeML Open RAIL++-M."""

# The fast model is SDXL base with DMD2's UNet swapped in (a bare state dict, as DMD2 publishes it); text encoders
# and VAE are SDXL base's own (shared/), loaded once for both passes.

from __future__ import annotations

from pathlib import Path

from facerealism.presets.preset import Preset
from facerealism.presets.sdxl import SDXL, sdxl_components, sdxl_unet
from facerealism.presets.tiny import save


def tiny_components(seed: int, shared_seed: int, fast: bool) -> dict:
    """SDXL base's components; the fast model differs only by its UNet (seeded differently)."""
    return sdxl_components(seed, shared_seed)


def build_tiny(out: Path, seed: int) -> dict:
    """A tiny SDXL base pipeline and a tiny UNet state dict under out: generate.diffusers overrides."""
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import save_file

    base = save(StableDiffusionXLPipeline, sdxl_components(seed + 20, seed), out / "sdxl")
    unet = out / "dmd2_unet.safetensors"  # a bare state dict, as DMD2 publishes its UNet
    save_file(sdxl_unet(seed + 10).state_dict(), unet)
    return {"fast_model": base, "slow_model": base, "fast_unet": str(unet)}


PRESET = Preset(name="dmd2-sdxl", family=SDXL, models=("SDXL-DMD2", "SDXL-base-1.0"),
                summary="SDXL + DMD2 one-step UNet (LCM, t=399) -> SDXL base",
                licence="CC BY-NC-SA 4.0 (DMD2) / OpenRAIL++", tiny_components=tiny_components, build_tiny=build_tiny)
