"""Typed configuration: one pydantic class per params.yaml section, loaded with `--set` overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
import warnings

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from facerealism.architectures import ArchName
from facerealism.errors import UserError

# pydantic warns that the `register` section shadows a BaseModel attribute; the name mirrors params.yaml.
warnings.filterwarnings("ignore", message=".*shadows an attribute in parent.*")

STAGE_NAMES = ("prompts", "generate", "validate", "audit", "train", "evaluate", "benchmark", "register")


class ConfigError(UserError):
    """A params file or override that cannot be used; the message names the offending key."""


class Section(BaseModel):
    # Unknown keys are typos until proven otherwise: reject them, naming the key.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
    n_enriched: int = Field(480, ge=1)
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
    max_failed_fraction: float = Field(0.02, ge=0.0, le=1.0)
    """The gate: more failed pairs than this fails the pipeline."""

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
    """Directory holding DeepFace's weights ($DEEPFACE_HOME/.deepface/weights); perceived gender/age/ethnicity
    are reported unavailable unless deepface is importable and this directory exists."""


class SweepConfig(Section):
    """The paper's hyper-parameter search: a grid over lambda_cyc x lr, one training per cell."""

    lambda_cyc: list[float] = Field(default_factory=lambda: [1.0, 2.0, 5.0, 10.0])
    """Cycle-consistency weights to try."""
    lr: list[float] = Field(default_factory=lambda: [1e-4, 2e-4])
    """Learning rates to try."""
    steps: int | None = Field(None, ge=1)
    """Training steps per trial; null uses train.steps."""
    workers: int = Field(2, ge=1)
    """Trials trained at once, each in its own process (torch and accelerate state is per process)."""
    min_cycle_ssim: float = Field(0.9, ge=0, le=1)
    """SSIM(x, F(G(x))) on held-out images below this marks a trial as failed (it lost the content)."""
    holdout_images: int = Field(16, ge=1)
    """Held-out schnell images scored for the cycle SSIM."""


class TrainConfig(Section):
    model: ArchName = "esa_resnet"
    """esa_resnet: ESA-CycleGAN (the paper's); resnet: plain CycleGAN; unet_cbam: the paired U-Net+CBAM baseline."""
    ngf: int = Field(32, ge=4)
    """Generator width; slim so 2 CPU cores train it in minutes."""
    n_blocks: int = Field(4, ge=1)
    ndf: int = Field(32, ge=4)
    residual_output: bool = True
    """out = x + body(x), starting at the identity; a tanh head drowned in checkerboard noise on CPU."""
    detail: bool = True
    """(esa_resnet, resnet) the body predicts per-pixel gains of the input's own detail bands instead of an RGB
    residual, so the head amplifies grain that follows the content and cannot paint colour speckle (the RGB
    residual did, under the GAN loss)."""
    lambda_paired: float = Field(100.0, ge=0)
    """(esa_resnet, resnet) weight of a shift-tolerant L1 from G(schnell) to its own dev twin; the pairs are aligned,
    and the unpaired losses alone left the head at C2ST 0.98-1.0 vs dev. Measured at 1000 steps (lr 5e-4, no identity
    loss): 10 -> C2ST vs dev 0.908, 100 -> 0.878 (the adversarial term then only regularises). 0: the paper's
    unpaired CycleGAN."""
    paired_max_shift: int = Field(1, ge=0, le=4)
    """Largest misalignment (px) the paired term forgives, like generate.synthetic.max_shift."""
    crop: int | None = Field(None, ge=16)
    """Random crop side; null trains on whole images. Measured: 32-px crops of 64-px images made the head paint a fixed blob
    into each crop's corner and stripes at full size (FD_diff spectral 8.3, C2ST vs dev 0.99);
    whole 64-px images train what inference sees (FD_diff 34.9, C2ST 0.67) at the same cost."""
    batch_size: int = Field(2, ge=1)
    """2 full images carry the pixels of 8 32-px crops, so a step costs the same."""
    steps: int = Field(1500, ge=1)
    """Optimiser steps; 1500 keep `make run` under 15 minutes on 2 cores (2.2-4 steps/s with the paired term)."""
    lr: float = Field(5e-4, gt=0)
    """Adam learning rate; the detail head's gains train faster than an RGB residual (measured 5e-4 vs 2e-4: C2ST vs dev
    0.918 vs 0.929 at 1000 steps, lambda_paired 30 vs 10)."""
    beta1: float = Field(0.5, ge=0, lt=1)
    lambda_cyc: float = Field(2.0, ge=0)
    """The paper's best cycle weight."""
    lambda_idt: float = Field(0.0, ge=0)
    """Identity loss weight as a fraction of lambda_cyc (reference CycleGAN convention). With the detail head and the
    paired term, G(dev) = dev fights amplifying schnell's faint detail: C2ST vs dev 0.908 at 0 vs 0.918 at 1.0
    (1000 steps, lr 5e-4; lambda_paired 10 and 30 respectively). With the RGB residual (train.detail false) 0.5 left colour speckle; use 1.0 there."""
    pool_size: int = Field(50, ge=0)
    decay_start: float = Field(0.5, ge=0, le=1)
    """Fraction of steps after which the learning rate decays linearly to 0."""
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    mixed_precision: Literal["fp32", "bf16"] = "bf16"
    """bf16 autocast through accelerate (1.3-1.75x faster per step than fp32 on a 2-core AMX CPU at 128 px) or fp32."""
    num_workers: int = Field(0, ge=0)
    """0: decode the training images into memory once (fast for the offline default); > 0: DataLoader worker
    processes decode and crop them from the files each step (datasets larger than memory, e.g. the paper's 140k pairs)."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches accumulated per optimiser step (accelerate's gradient accumulation); the effective batch
    is batch_size x grad_accum x processes. train.steps counts optimiser steps."""
    channels_last: bool = False
    """Nets and batches in channels-last memory format (faster convolutions on GPUs with tensor cores; measured
    slower on this CPU: `python -m facerealism.train_bench`)."""
    compile: bool = False
    """torch.compile the nets through accelerate's dynamo plugin; costs a compile up front (minutes on 2 CPU cores)."""
    compile_backend: str = "inductor"
    """torch.compile backend when train.compile is on (inductor; eager/aot_eager only check the graph capture)."""
    baselines: list[ArchName] = Field(default_factory=list)
    """Architectures trained after train.model with the same settings, into models/baselines/NAME, as nested
    MLflow runs; evaluate adds them to Table 4 and records which head is best. train.model itself is skipped.
    Empty by default so `make run` fits 15 minutes; [resnet] adds the paper's plain CycleGAN (~6 min more)."""
    grid_every: int = Field(0, ge=0)
    """Steps between sample grids logged to MLflow (key train_samples, with its step); 0: once per epoch."""
    log_every: int = Field(50, ge=1)
    checkpoint_every: int = Field(250, ge=1)
    """Steps between full-state checkpoints in models/checkpoints (what train.resume continues from)."""
    resume: bool = False
    """Continue from the newest checkpoint in models/checkpoints (a fresh start when there is none)."""
    threads: int = Field(0, ge=0)
    """torch CPU threads; 0: every CPU this process may use (set explicitly: the pipeline trains in a worker thread)."""
    unet_depth: int = Field(4, ge=1)
    """unet_cbam levels; train.crop must be divisible by 2**(unet_depth-1)."""
    lambda_grad: float = Field(1.0, ge=0)
    """unet_cbam: weight of L1 between the image gradients of output and input (keeps the content)."""
    lambda_lpips: float = Field(1.0, ge=0)
    """unet_cbam: weight of LPIPS(output, dev target)."""
    lambda_l1: float = Field(1.0, ge=0)
    """unet_cbam fallback when LPIPS is unavailable: weight of L1(output, dev target)."""
    lpips_net: Literal["alex", "vgg"] = "alex"
    """LPIPS backbone; train.lpips_weights must hold the matching torchvision state dict."""
    lpips_weights: str | None = None
    """Local torchvision AlexNet/VGG16 state dict (.pth or .safetensors); absent -> L1 fallback, recorded."""
    sweep: SweepConfig = Field(default_factory=SweepConfig)

    @model_validator(mode="after")
    def _unet_crop_divides(self) -> "TrainConfig":
        multiple = 2 ** (self.unet_depth - 1)
        if "unet_cbam" in (self.model, *self.baselines) and self.crop is not None and self.crop % multiple:
            raise ValueError(f"crop ({self.crop}) must be divisible by {multiple} for unet_depth={self.unet_depth}")
        return self

    @property
    def baseline_models(self) -> list[str]:
        """train.baselines without train.model itself (switching the model need not edit the list), once each."""
        return [m for m in dict.fromkeys(self.baselines) if m != self.model]


class EvaluateConfig(Section):
    spaces: list[Literal["spectral", "spectral_chroma", "random_conv"]] = Field(
        default_factory=lambda: ["spectral", "spectral_chroma", "random_conv"])
    """Feature spaces of the Fréchet distances (FD_diff with CIs per space); spectral_chroma sees colour speckle."""
    c2st_folds: int = Field(5, ge=2)
    """Folds of the C2ST: each image is scored by a classifier trained on the other folds (its pair held out too)."""
    c2st_max_images: int = Field(200, ge=8)
    """Images per class for the C2ST (the first n of the held-out split)."""
    controls: list[str] = Field(default_factory=lambda: list(_control_names()))
    """Negative-control filters scored as Table 4 rows and run through the gate (facerealism.controls)."""

    @field_validator("controls")
    @classmethod
    def _known_controls(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in _control_names()]
        if unknown:
            raise ValueError(f"unknown control(s) {unknown}; choose from {_control_names()}")
        return v
    inception_weights: str | None = None
    """Local weights-inception-2015-12-05 file for torch-fidelity FID/KID; unset -> torch-fidelity's cache/download."""
    lpips_weights: str | None = None
    """Local torchvision AlexNet state_dict (alexnet-owt-7be5be79.pth) for LPIPS; unset -> torchvision's cache or
    download; offline and uncached -> reported unavailable. The same order holds for the settings below."""
    dinov2_weights: str | None = None
    """Local state dict of torch.hub's facebookresearch/dinov2 dinov2_vitl14 for FD-DINOv2; unset -> torch.hub."""
    clip_model: str | None = None
    """Local save_pretrained folder of a CLIP model for CMMD; unset -> openai/clip-vit-large-patch14-336 (HF cache)."""
    bootstrap: int = Field(100, ge=0)
    """Bootstrap resamples for the 95 % CIs of the Fréchet distances; 0 skips the intervals."""
    face_upsample: int = Field(1, ge=0, le=3)
    """dlib HOG detector upsampling for identity; each step doubles the image (finds ~40 px faces at 1)."""
    extra_heads: dict[str, str] = Field(default_factory=dict)
    """Table 4 label -> trained head folder (e.g. CycleGAN: models/head_resnet), evaluated beside models/head."""
    grid_n: int = Field(8, ge=1)


def _control_names() -> list[str]:
    from facerealism.controls import CONTROLS

    return list(CONTROLS)


class BenchmarkConfig(Section):
    sizes: list[int] = Field(default_factory=lambda: [64, 256])
    """Image sides at which the head's inference variants are timed."""
    batch_size: int = Field(1, ge=1)
    """Batch of the batched variant (bf16 autocast); 1 skips it."""
    repeats: int = Field(5, ge=1)
    """Timed calls per measurement after one warm-up; the best is reported (least disturbed by other load)."""
    compile: bool = False
    """Also time torch.compile variants; off by default because compiling costs ~25 s on 2 CPU cores."""
    flops_size: int = Field(512, ge=64)
    """Image side for the weights-free FLUX cost model."""
    pipelines: Literal["tiny", "configured", "skip"] = "tiny"
    """Fig. 8 pipelines: tiny = random tiny FLUX built locally (plumbing-scale timings); configured =
    generate.flux.fast_model / slow_model (the real models, on a GPU); skip = no pipeline timings ("off" would
    read as a YAML boolean)."""
    pipeline_sizes: list[int] = Field(default_factory=lambda: [64, 128])
    """Image sides of the Fig. 8 timings (multiples of 16); the paper's are 256, 512, 768, 1024."""
    pipeline_repeats: int = Field(2, ge=1)
    """Timed images per pipeline and size after one warm-up."""

    @field_validator("pipeline_sizes")
    @classmethod
    def _multiple_of_16(cls, v: list[int]) -> list[int]:
        bad = [s for s in v if s % 16 or s <= 0]
        if bad:
            raise ValueError(f"FLUX image sides must be positive multiples of 16, got {bad}")
        return v


class RegisterConfig(Section):
    model_name: str = "facerealism-head"
    required: dict[str, float] = Field(default_factory=lambda: {
        "fd_diff_ci_low.spectral": 0.0, "fd_diff_ci_low.spectral_chroma": 0.0, "fd_diff_ci_low.random_conv": 0.0})
    """metric -> strict lower bound; a missing metric fails the gate. Default: FD_diff's whole 95 % CI above 0."""
    below: dict[str, float | str] = Field(default_factory=lambda: {
        "c2st.dev_vs_enhanced_ci_high": "c2st.dev_vs_schnell_ci_low", "c2st.dev_vs_enhanced": 0.95})
    """metric -> strict upper bound, a number or another metric's name. Default: the C2ST vs dev must fall clearly
    below schnell's (CIs apart) and under 0.95: the rule every negative control fails and dev passes."""
    max_photo_colour_noise_gain: float = Field(1.1, gt=0)
    """Ceiling of evaluate's photo check (chroma detail gain over luminance detail gain on a real photograph):
    RGB noise of sigma 4/255 reads 1.22 at 64 px and 2.7 at 512 px there; a head that only sharpens reads <= 1."""
    check_controls: bool = True
    """Refuse to promote unless every Table 4 control fails the gate and dev passes it. false: smoke tests only."""
    champion_metric: str = "fd_diff.spectral"
    """Compared against the current champion's value; higher is better."""
    margin_over_champion: float = 0.0
    """The candidate must beat the champion's champion_metric by more than this to replace it."""
    on_split_change: Literal["absolute_only", "fail"] = "absolute_only"
    """Champion scored on another held-out split: decide on absolute thresholds only, or refuse to promote."""
    min_images_per_s: float = Field(0.5, ge=0)
    """Throughput floor: fp32 head images/s from reports/benchmark.json; a missing benchmark fails the gate."""
    throughput_size: int | None = None
    """Image side whose benchmark is read; null = the first of benchmark.sizes."""


class Config(Section):
    seed: int = 0
    paths: Paths = Field(default_factory=Paths)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    audit: AuditConfig = Field(default_factory=AuditConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)
    register: RegisterConfig = Field(default_factory=RegisterConfig)

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    @model_validator(mode="after")
    def _crop_fits(self) -> "Config":
        if self.train.crop is not None and self.train.crop > self.generate.size:
            raise ValueError(f"train.crop ({self.train.crop}) is larger than generate.size ({self.generate.size})")
        return self

    def dump(self) -> dict[str, Any]:
        """The resolved config as plain data, keyed exactly like params.yaml."""
        return json.loads(self.model_dump_json(by_alias=True))


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    key, raw = item.split("=", 1)
    # YAML parsing gives numbers, booleans, lists and null the same spelling as params.yaml.
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def _set_nested(data: dict, keys: list[str], value: Any) -> None:
    node = data
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {'.'.join(keys)}: {k} is not a section")
        node = child
    node[keys[-1]] = value


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "<root>"
    msg = first["msg"].replace("Extra inputs are not permitted", "unknown key")
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {key}: {msg}{more}"


def load_config(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Config:
    """Load a params file and apply `section.key=value` overrides.

    Args:
        path: params YAML; every section is optional and falls back to its defaults.
        overrides: strings like "train.steps=10".
    Returns:
        The validated Config.
    Raises:
        ConfigError: naming the file or key that is wrong.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"params file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    for item in overrides or []:
        keys, value = _parse_override(item)
        _set_nested(data, keys, value)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(e, str(path))) from None
