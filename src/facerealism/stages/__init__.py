"""The pipeline's stages, one module each; `run_stage(name, cfg)` is the single entry point."""

from __future__ import annotations

import importlib
import threading

from facerealism.config import STAGE_NAMES, Config
from facerealism.errors import UserError


# The pipeline runs stages side by side in worker threads (audit ∥ train, evaluate ∥ benchmark), and stages import
# lazily. A module that a package's __init__ loads must import its siblings by their full name
# (`import facerealism.metrics.pretrained as pretrained`), never `from facerealism.metrics import pretrained`: that form
# waits on the package's own import lock, and while another thread holds it inside __init__, waiting on this module,
# Python breaks the deadlock by handing one of them a partially initialised module ("cannot import name 'load_lpips'
# from partially initialized module 'facerealism.metrics.paired'", seen in the nightly deployment test).
# tests/test_imports.py holds the tree to that rule; the lock below also keeps the stage modules' own imports serial.
_IMPORTING = threading.Lock()


def run_stage(name: str, cfg: Config) -> dict:
    """Run one stage's core function; returns its short summary (the full report is on disk)."""
    if name not in STAGE_NAMES:
        raise UserError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
    # Imported lazily: the CLI should not pay for torch when it only builds prompts.
    with _IMPORTING:
        module = importlib.import_module(f"facerealism.stages.{name}")
    return module.run(cfg)
