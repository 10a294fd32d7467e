"""The `generate` section: which backend renders the pairs, and each backend's own settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from facerealism.config.base import Section


class SyntheticConfig(Section):
    blur_sigma: float = Field(0.7, ge=0.0)
    """How much the schnell-like image is smoothed (the gap the head must learn)."""
    max_shift: int = Field(1, ge=0, le=4)
    """Pixel misalignment between the pair, as img2img re-renders move details slightly."""
    texture_strength: float = Field(1.0, ge=0.0)
    """Multiplier on dev's detail (pores, strands, catchlights)."""
    texture_hint: float = Field(0.35, ge=0.0, le=1.0)
    """Fraction of dev's detail the schnell image keeps: texture that follows the content, as FLUX.1-schnell's faint
    skin grain does. With 0 schnell holds no trace of dev's pores, so a head would have to invent texture (noise)."""


class FluxConfig(Section):
    """The paper's data engine: fast text-to-image, then slow image-to-image on that image, same prompt and seed."""

    fast_model: str = "black-forest-labs/FLUX.1-schnell"
    """Hub id or local directory (diffusers layout) of the fast model."""
    slow_model: str = "black-forest-labs/FLUX.1-dev"
    fast_steps: int = Field(4, ge=1)
    fast_guidance: float = Field(0.0, ge=0)
    max_sequence_length: int = Field(256, ge=1)
    strength: float = Field(0.7, gt=0, le=1)
    """img2img strength: 0.7 keeps the schnell layout and re-renders the details."""
    slow_steps: int = Field(50, ge=1)
    slow_guidance: float = Field(3.0, ge=0)
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    device: str = "auto"
    """auto: cuda when available, else cpu."""
    cpu_offload: bool = False
    """diffusers model CPU offload: fits a 24 GB GPU at the cost of speed."""
    vae_slicing: bool = False
    vae_tiling: bool = False
    batch_size: int = Field(1, ge=1)
    share_components: bool = True
    """Load the slow pipeline's text encoders, tokenizers and VAE from the fast one when their files are identical
    (FLUX.1 schnell and dev ship the same CLIP-L, T5-XXL and autoencoder: ~10 GB less GPU memory). Off with
    cpu_offload, whose hooks are per pipeline. Hub ids compare by cached blob name; separate local copies are
    hashed on each load (SHA-256 at ~2 GiB/s here: ~10 s for both copies of T5-XXL)."""


class DiffusersConfig(Section):
    """Any fast/slow model pair through diffusers' AutoPipelines: fast text-to-image, slow image-to-image on it."""

    fast_model: str = "stabilityai/stable-diffusion-3.5-large-turbo"
    """Hub id or local diffusers directory, loaded with AutoPipelineForText2Image."""
    slow_model: str = "stabilityai/stable-diffusion-3.5-large"
    """Hub id or local diffusers directory, loaded with AutoPipelineForImage2Image."""
    fast_kwargs: dict[str, Any] = Field(default_factory=lambda: {"num_inference_steps": 4, "guidance_scale": 0.0})
    """Call arguments of the fast pipeline (SD3.5 Large Turbo: 4 steps, no guidance)."""
    slow_kwargs: dict[str, Any] = Field(default_factory=lambda: {"num_inference_steps": 28, "guidance_scale": 3.5})
    """Call arguments of the slow pipeline, for img2img and for reference renders (SD3.5 Large: 28 steps, 3.5)."""
    strength: float = Field(0.7, gt=0, le=1)
    """img2img strength of the slow pass."""
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    device: str = "auto"
    """auto: cuda when available (one GPU per shard on a multi-GPU worker), else cpu."""
    batch_size: int = Field(1, ge=1)
    share_components: bool = True
    """Load the slow pipeline's components that are byte-identical to the fast one's (text encoders, VAE, ...) once:
    SD3.5 Large Turbo and Large, or SDXL-Lightning and SDXL, differ only in the denoiser."""
    fast_pipeline: str | None = None
    """diffusers pipeline class of the fast text-to-image model (e.g. Flux2KleinPipeline); null: AutoPipeline."""
    slow_pipeline: str | None = None
    """diffusers pipeline class of the slow image-to-image model; null: AutoPipeline. FLUX.2 klein has no strength
    img2img: Flux2KleinInpaintPipeline with slow_full_mask does it."""
    slow_full_mask: bool = False
    """Pass an all-white mask_image to the slow pipeline: an inpaint pipeline then re-renders the whole image at
    `strength`, as img2img does."""
    fast_unet: str | None = None
    """A UNet replacing the fast model's own: a diffusers UNet folder, a state-dict file (.safetensors/.bin, e.g.
    DMD2's one-step SDXL UNet), or hub `owner/repo/file` in the local cache. The slow model keeps its own UNet."""
    fast_scheduler: str | None = None
    """diffusers scheduler class for the fast model (e.g. LCMScheduler), built from its own scheduler's config."""
    fast_scheduler_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Overrides of that scheduler's config (e.g. {timestep_spacing: trailing} for SDXL-Lightning)."""
    fast_lora: str | None = None
    """A LoRA (file, folder, or hub `owner/repo/file` in the local cache) loaded onto the fast model with
    load_lora_weights, e.g. a Lightning LoRA; when fast_model == slow_model the base weights are loaded once and
    the LoRA is switched off for the slow pass."""


class GenerateConfig(Section):
    backend: Literal["synthetic", "flux", "diffusers"] = "synthetic"
    """synthetic: procedural pairs, offline; flux: FLUX schnell -> dev; diffusers: any AutoPipeline model pair."""
    size: int = Field(64, ge=16, le=2048)
    """Square image side in pixels."""
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    flux: FluxConfig = Field(default_factory=FluxConfig)
    diffusers: DiffusersConfig = Field(default_factory=DiffusersConfig)
    reference_count: int = Field(0, ge=0)
    """Slow-model text-to-image renders (no fast image involved) into data/reference, the FID_dev reference set; 0: off."""
    shards: int = Field(1, ge=1)
    """The prompts are split round-robin into this many shards, each rendered by one pipeline (one worker)."""
    shard_index: int | None = None
    """Render only this shard (0-based) in `facerealism stage generate`; null: every shard, one after another."""
    workers: int = Field(2, ge=1)
    """Local Dask worker processes of flows/generate.py (one pipeline each); ignored with dask_address."""
    dask_address: str | None = None
    """Scheduler of an existing Dask cluster (tcp://host:8786) for flows/generate.py; env FACEREALISM_DASK_ADDRESS wins."""
    sample_pairs: int = Field(8, ge=0)
    """Pairs shown in reports/generate_samples.png (schnell row over dev row); 0: no contact sheet."""

    @model_validator(mode="after")
    def _shard_in_range(self) -> "GenerateConfig":
        if self.shard_index is not None and not 0 <= self.shard_index < self.shards:
            raise ValueError(f"shard_index {self.shard_index} is outside 0..{self.shards - 1} (generate.shards)")
        return self
