"""Typed configuration: one pydantic class per params.yaml section, loaded with `--set` overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from facerealism.config.base import STAGE_NAMES, ConfigError, Section
from facerealism.config.data import (AuditConfig, DiffusersConfig, FluxConfig, GenerateConfig, Paths, PromptsConfig,
                                     SyntheticConfig, ValidateConfig)
from facerealism.config.model import SplitConfig, SweepConfig, TrainConfig
from facerealism.config.scoring import BenchmarkConfig, EvaluateConfig, RegisterConfig

__all__ = ["STAGE_NAMES", "AuditConfig", "BenchmarkConfig", "Config", "ConfigError", "DiffusersConfig", "EvaluateConfig",
           "FluxConfig", "GenerateConfig", "Paths", "PromptsConfig", "RegisterConfig", "Section", "SplitConfig",
           "SweepConfig", "SyntheticConfig", "TrainConfig", "ValidateConfig", "flatten", "load_config"]

# Keys that moved to their own section: an old params file or override gets told where they went.
MOVED = {"train.holdout_fraction": "split.holdout_fraction", "train.sweep": "sweep",
         "train.sweep.holdout_images": "train.cycle_ssim_images"}

class Config(Section):
    seed: int = 0
    paths: Paths = Field(default_factory=Paths)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    audit: AuditConfig = Field(default_factory=AuditConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)
    register: RegisterConfig = Field(default_factory=RegisterConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    @model_validator(mode="after")
    def _crop_fits(self) -> "Config":
        if self.train.crop is not None and self.train.crop > self.generate.size:
            raise ValueError(f"train.crop ({self.train.crop}) is larger than generate.size ({self.generate.size})")
        return self

    def dump(self) -> dict[str, Any]:
        """The resolved config as plain data, keyed exactly like params.yaml."""
        return json.loads(self.model_dump_json(by_alias=True))


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}: the spelling of MLflow params and of `--set` overrides."""
    out = {}
    for k, v in config.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


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
    if key in MOVED:
        msg += f" (moved to {MOVED[key]})"
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
