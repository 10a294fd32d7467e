"""Typed configuration: one pydantic class per params.yaml section, loaded with `--set` overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
import warnings

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# pydantic warns that the `register` section shadows a BaseModel attribute; the name mirrors params.yaml.
warnings.filterwarnings("ignore", message=".*shadows an attribute in parent.*")

STAGE_NAMES = ("prompts", "generate", "validate", "audit", "train", "evaluate", "benchmark", "register")


class ConfigError(ValueError):
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
    source: Literal["faker"] = "faker"
    """faker: offline names across many locales."""
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


class GenerateConfig(Section):
    backend: Literal["synthetic", "flux"] = "synthetic"
    """synthetic: procedural pairs, offline; flux: FLUX schnell -> dev through diffusers."""
    size: int = Field(64, ge=16, le=2048)
    """Square image side in pixels."""
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    flux: FluxConfig = Field(default_factory=FluxConfig)


class ValidateConfig(Section):
    min_std: float = Field(4.0, ge=0.0)
    """Pixel std below this is a blank frame."""
    max_failed_fraction: float = Field(0.02, ge=0.0, le=1.0)
    """The gate: more failed pairs than this fails the pipeline."""


class AuditConfig(Section):
    min_region_entropy: float = Field(0.8, ge=0.0, le=1.0)
    """Normalised entropy of regions below this marks the enriched prompts as not diverse."""
    target_female_fraction: float = Field(0.5, ge=0.0, le=1.0)


class TrainConfig(Section):
    model: Literal["esa_resnet", "resnet"] = "esa_resnet"
    """Generator architecture: ESA-CycleGAN (the paper's) or plain CycleGAN."""
    ngf: int = Field(32, ge=4)
    """Generator width; slim so 2 CPU cores train it in minutes."""
    n_blocks: int = Field(4, ge=1)
    ndf: int = Field(32, ge=4)
    residual_output: bool = True
    """out = x + body(x), starting at the identity; a tanh head drowned in checkerboard noise on CPU."""
    crop: int = Field(32, ge=16)
    """Random crop side: texture is local, small crops make steps cheap."""
    batch_size: int = Field(8, ge=1)
    steps: int = Field(1500, ge=1)
    lr: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    lambda_cyc: float = Field(2.0, ge=0)
    """The paper's best cycle weight."""
    lambda_idt: float = Field(0.5, ge=0)
    """Identity loss weight as a fraction of lambda_cyc (reference CycleGAN convention)."""
    pool_size: int = Field(50, ge=0)
    decay_start: float = Field(0.5, ge=0, le=1)
    """Fraction of steps after which the learning rate decays linearly to 0."""
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    mixed_precision: Literal["fp32", "bf16"] = "bf16"
    """bf16 autocast (~1.8x faster on this CPU) or plain fp32."""
    log_every: int = Field(50, ge=1)
    checkpoint_every: int = Field(250, ge=1)
    threads: int = Field(0, ge=0)
    """torch CPU threads; 0 keeps torch's default."""


class EvaluateConfig(Section):
    spaces: list[Literal["spectral", "random_conv"]] = Field(default_factory=lambda: ["spectral", "random_conv"])
    c2st_epochs: int = Field(20, ge=1)
    c2st_max_images: int = Field(200, ge=8)
    inception_weights: str | None = None
    """Local pt_inception-2015-12-05 weights file for torch-fidelity FID/KID; absent -> reported unavailable."""
    grid_n: int = Field(8, ge=1)


class BenchmarkConfig(Section):
    sizes: list[int] = Field(default_factory=lambda: [64, 256])
    batch_size: int = Field(1, ge=1)
    repeats: int = Field(5, ge=1)
    flops_size: int = Field(512, ge=64)
    """Image side for the weights-free FLUX cost model."""


class RegisterConfig(Section):
    model_name: str = "facerealism-head"
    required: dict[str, float] = Field(
        default_factory=lambda: {"fd_diff.spectral": 0.0, "fd_diff.random_conv": 0.0}
    )
    """metric -> strict lower bound; a missing metric fails the gate."""
    champion_metric: str = "fd_diff.spectral"
    """Compared against the current champion's value; higher is better."""
    margin_over_champion: float = 0.0


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
        if self.train.crop > self.generate.size:
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
