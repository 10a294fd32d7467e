"""The base of every config section, the stage names and the config error type."""

from __future__ import annotations

import warnings

from pydantic import BaseModel, ConfigDict

from facerealism.errors import ConfigError  # noqa: F401 - defined with every error type; config re-exports it

# pydantic warns that the `register` section shadows a BaseModel attribute; the name mirrors params.yaml.
warnings.filterwarnings("ignore", message=".*shadows an attribute in parent.*")

STAGE_NAMES = ("prompts", "generate", "validate", "audit", "train", "evaluate", "benchmark", "register")


class Section(BaseModel):
    # Unknown keys are typos until proven otherwise: reject them, naming the key.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
