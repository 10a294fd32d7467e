"""Preset sdxl-lightning-lora: SDXL base + the SDXL-Lightning 4-step LoRA (ByteDance) -> SDXL base 1.0 (50 steps,
CFG 5), both OpenRAIL++."""

# The fast model is "base + LoRA": one copy of SDXL base in memory, the LoRA switched on for the fast pass and off
# for the slow one; its architecture configs are SDXL base's (shared/).

from __future__ import annotations

from pathlib import Path

from facerealism.presets.preset import Preset
from facerealism.presets.sdxl import SDXL, save_sdxl_lora, sdxl_components, sdxl_unet
from facerealism.presets.tiny import save


def tiny_components(seed: int, shared_seed: int, fast: bool) -> dict:
    """SDXL base's components (a LoRA is not built here: random LoRA weights would measure nothing)."""
    return sdxl_components(seed, shared_seed)


def build_tiny(out: Path, seed: int) -> dict:
    """A tiny SDXL base pipeline and a random LoRA over its UNet under out: generate.diffusers overrides."""
    from diffusers import StableDiffusionXLPipeline

    components = sdxl_components(seed + 20, seed)
    lora = save_sdxl_lora(sdxl_unet(seed + 20), out / "lora", seed=seed + 10)
    base = save(StableDiffusionXLPipeline, components, out / "sdxl")
    return {"fast_model": base, "slow_model": base, "fast_lora": str(lora)}


PRESET = Preset(name="sdxl-lightning-lora", family=SDXL, models=("SDXL-Lightning-4step", "SDXL-base-1.0"),
                summary="SDXL + Lightning 4-step LoRA -> SDXL base",
                licence="OpenRAIL++ / OpenRAIL++", tiny_components=tiny_components, build_tiny=build_tiny)
