"""What a preset declares about itself: its name, models, licence and tiny builders (`Preset`), and its architecture
family (`Family`): which configs it builds, how its pipelines run guidance, how one denoiser call is probed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent  # presets/: one folder per preset, shared/ beside them


@dataclass(frozen=True)
class Family:
    """One architecture, as the FLOPs model (speed.preset_flops) and the GPU kit (bench.presets) run it."""

    name: str
    denoiser: str
    """Architecture config (<name>.json) of the denoiser."""
    encoders: dict[str, int]
    """Text encoder configs, in the pipeline's order (text_encoder, text_encoder_2, ...) -> prompt tokens they read."""
    vae: str
    denoiser_key: str
    """The pipeline component the denoiser is ("transformer" or "unet")."""
    cfg_batched: bool
    """CFG as one call on a batch of 2 (SD3, SDXL, Z-Image) or a second call (FLUX.2 klein)."""
    negative_encoded: bool
    """The empty negative prompt goes through the text encoders (SDXL zeroes it instead)."""
    cfg_threshold: float
    """CFG runs when guidance_scale > this (Z-Image: > 0; the others > 1)."""
    int_strength: bool
    """SDXL's img2img runs int(steps * strength) steps; the others steps - int(steps * (1 - strength))."""
    denoiser_call: Callable[[Any, int, int], Callable[[], Any]]
    """(module, size, batch) -> one denoiser call on meta tensors of `batch` latents of a size x size image."""
    pipeline_parts: Callable[[], dict]
    """Tokenizers, scheduler and empty slots of the pipeline (what is not built from a config)."""
    encoder_module: Callable[[Any], Any] = lambda module: module
    """The module the pipeline runs of a built encoder (Z-Image: the bare Qwen3 model, not the causal LM)."""
    causal_encoder: bool = False
    """The encoders are causal LMs that take a ready 4D attention mask (Qwen3)."""
    vae_latent_channels: int | None = None
    """Latent channels the VAE decodes, when not its config's (FLUX.2: 32 at 1/8, patchified to 128 outside)."""
    distilled_flag: str | None = None
    """Pipeline component telling the pipeline its model is step-distilled (FLUX.2 klein: is_distilled)."""


@dataclass(frozen=True)
class Preset:
    """One fast -> slow model pair: what it is called, which architecture family it runs, how to build it tiny."""

    name: str
    """What users type (--preset NAME); the folder is the name with '-' as '_'."""
    family: Family
    """Its architecture: which configs it builds, how its pipelines run guidance (several presets may share one)."""
    models: tuple[str, str]
    """The fast and slow models' names: Table 4's reference rows when this preset renders the pairs."""
    summary: str
    """fast -> slow, in words (the docs table)."""
    licence: str
    """The two models' licences, fast / slow."""
    tiny_components: Callable[[int, int, bool], dict]
    """(seed, shared_seed, fast) -> the diffusers pipeline components of a tiny random model of the fast (or slow)
    model: its real wiring, modules shared with the other model built from shared_seed."""
    build_tiny: Callable[[Path, int], dict]
    """(out_dir, seed) -> generate.diffusers overrides pointing the preset at tiny models written under out_dir."""
    distilled: tuple[str, ...] = ()
    """Which of "fast" / "slow" is step-distilled: no CFG whatever guidance_scale says."""
    folder: Path = field(default=ROOT, compare=False)
    """Set by the registry: presets/<name>/."""

    @property
    def params(self) -> Path:
        """The params overlay: a params file for the diffusers backend."""
        return self.folder / "params.yaml"
