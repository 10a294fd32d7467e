"""Typed configuration: one pydantic class per params.yaml section, loaded with `--set` overrides."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, model_validator

from facerealism.config.audit import AuditConfig
from facerealism.config.base import STAGE_NAMES, ConfigError, Section
from facerealism.config.benchmark import BenchmarkConfig
from facerealism.config.evaluate import EvaluateConfig
from facerealism.config.generate import DiffusersConfig, FluxConfig, GenerateConfig, SyntheticConfig
from facerealism.config.paths import Paths
from facerealism.config.profile import merged_layers, parse_override, record, set_nested
from facerealism.config.prompts import PromptsConfig
from facerealism.config.rate import RateConfig
from facerealism.config.register import RegisterConfig
from facerealism.config.split import SplitConfig
from facerealism.config.sweep import SweepConfig
from facerealism.config.train import TrainConfig
from facerealism.config.validate import ValidateConfig

__all__ = ["STAGE_NAMES", "AuditConfig", "BenchmarkConfig", "Config", "ConfigError", "DiffusersConfig", "EvaluateConfig",
           "FluxConfig", "GenerateConfig", "Paths", "PromptsConfig", "RateConfig", "RegisterConfig", "Section", "SplitConfig",
           "SweepConfig", "SyntheticConfig", "TrainConfig", "ValidateConfig", "flatten", "load_config", "resolve",
           "sources_table"]

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
    rate: RateConfig = Field(default_factory=RateConfig)

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


def _field_names(model: type[Section]) -> dict[str, type[Section] | None]:
    """Each key a section accepts (aliases as params.yaml spells them) -> its section class, or None for a setting."""
    out = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        out[field.alias or name] = ann if isinstance(ann, type) and issubclass(ann, Section) else None
    return out


def did_you_mean(loc: tuple) -> str:
    """" (did you mean train.steps?)" for an unknown key close to a known one of its section (difflib); else ""."""
    model: type[Section] | None = Config
    for part in loc[:-1]:
        model = _field_names(model).get(str(part)) if model is not None else None
    if model is None:
        return ""
    near = difflib.get_close_matches(str(loc[-1]), list(_field_names(model)), n=1, cutoff=0.6)
    prefix = "".join(f"{p}." for p in loc[:-1])
    return f" (did you mean {prefix}{near[0]}?)" if near else ""


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "<root>"
    msg = first["msg"].replace("Extra inputs are not permitted", "unknown key")
    if key in MOVED:
        msg += f" (moved to {MOVED[key]})"
    elif first["type"] == "extra_forbidden":
        msg += did_you_mean(first["loc"])
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {key}: {msg}{more}"


def load_config(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Config:
    """Load a params file (and the files it `extends`) and apply `section.key=value` overrides.

    Args:
        path: params YAML; a profile names its base with `extends: FILE` and is deep-merged onto it (see
            facerealism.config.profile); a section or key no file sets falls back to its default.
        overrides: strings like "train.steps=10".
    Returns:
        The validated Config.
    Raises:
        ConfigError: naming the file or key that is wrong.
    """
    return resolve(path, overrides)[0]


def resolve(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> tuple[Config, dict[str, str]]:
    """The validated Config and, for every key a file or override set, where its value came from.

    Returns:
        (config, {"train.lr": "params.paper.yaml", "train.steps": "--set", ...}); keys absent: their default.
    """
    path = Path(path)
    data, sources = merged_layers(path, Config)
    given: dict[str, str] = {}  # key -> the override as typed, to quote it in an error
    for item in overrides or []:
        keys, value = parse_override(item)
        set_nested(data, keys, value)
        record(sources, ".".join(keys), "--set")
        given[".".join(keys)] = item.strip()
    try:
        return Config.model_validate(data), sources
    except ValidationError as e:
        key = ".".join(str(p) for p in e.errors()[0]["loc"])
        where = source_of(sources, key)  # the file that set the bad value (a profile's base, say)
        if where == "--set":  # the mistake is the override's, not the params file's
            typed = [v for k, v in given.items() if k == key or k.startswith(f"{key}.") or key.startswith(f"{k}.")]
            where = f"override --set {typed[-1]}" if typed else "an override (--set)"
        raise ConfigError(_format_error(e, where if where != "default" else str(path))) from None


def sources_table(cfg: Config, sources: dict[str, str]) -> list[tuple[str, object, str]]:
    """(key, value, source) for every setting of the resolved config, in params.yaml's order.

    A source is "default" (the config class), a file name (the file that set it last) or "--set".
    """
    rows = []

    def walk(section: Section, data: dict, prefix: str) -> None:
        for name, field in type(section).model_fields.items():
            key = field.alias or name
            value = getattr(section, name)
            path = f"{prefix}{key}"
            if isinstance(value, Section):
                walk(value, data[key], f"{path}.")
            else:
                rows.append((path, data[key], source_of(sources, path)))

    walk(cfg, cfg.dump(), "")
    return rows


def source_of(sources: dict[str, str], key: str) -> str:
    """Who set `key`: itself, else the override/file that set a part of it (e.g. register.required.x), else the
    nearest section a file replaced as a whole, else its default."""
    if key in sources:
        return sources[key]
    parts = [v for k, v in sources.items() if k.startswith(key + ".")]
    if parts:
        return parts[-1]
    head = key
    while "." in head:
        head = head.rsplit(".", 1)[0]
        if head in sources:
            return sources[head]
    return "default"
