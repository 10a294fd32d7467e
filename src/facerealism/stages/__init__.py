"""The pipeline's stages, one module each; `run_stage(name, cfg)` is the single entry point."""

from __future__ import annotations

import importlib
import threading

from facerealism.config import STAGE_NAMES, Config
from facerealism.errors import UserError


# The pipeline runs stages side by side in worker threads (audit ∥ train, evaluate ∥ benchmark). Two threads importing
# modules that import each other can be handed a partially initialised module by Python's per-module import locks
# ("cannot import name 'load_lpips' from partially initialized module 'facerealism.metrics.paired'", seen in the
# nightly deployment test): a stage's own imports happen one stage at a time.
_IMPORTING = threading.Lock()


def run_stage(name: str, cfg: Config) -> dict:
    """Run one stage's core function; returns its short summary (the full report is on disk)."""
    if name not in STAGE_NAMES:
        raise UserError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
    # Imported lazily: the CLI should not pay for torch when it only builds prompts.
    with _IMPORTING:
        module = importlib.import_module(f"facerealism.stages.{name}")
    return module.run(cfg)
