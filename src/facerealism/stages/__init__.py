"""The pipeline's stages, one module each; `run_stage(name, cfg)` is the single entry point."""

from __future__ import annotations

import importlib

from facerealism.config import STAGE_NAMES, Config
from facerealism.errors import UserError


def run_stage(name: str, cfg: Config) -> dict:
    """Run one stage's core function; returns its short summary (the full report is on disk)."""
    if name not in STAGE_NAMES:
        raise UserError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
    # Imported lazily: the CLI should not pay for torch when it only builds prompts.
    return importlib.import_module(f"facerealism.stages.{name}").run(cfg)
