"""The model presets, one folder each, found by name: presets/<name>/ holds the params overlay, the architecture
configs, the tiny builder, the architecture family and the licence of one fast -> slow pair.

A preset folder is a package with `PRESET = Preset(...)` (presets/preset.py) in its __init__.py, its `params.yaml` (a
params file for the diffusers backend: `facerealism run --params presets/NAME.yaml` finds it), the architecture
configs (*.json, no weights) only it builds and the `Family` it introduces. What several presets share sits beside
them: shared/ (configs), sdxl.py (SDXL base, under two presets), tiny.py (tokenizers and tiny encoders). Everything
that lists presets (CLI, the FLOPs table, the GPU kit, tests, the docs table) reads `registry()`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
from pathlib import Path

from facerealism.errors import UserError
from facerealism.presets.preset import ROOT, Family, Preset

__all__ = ["Family", "Preset", "active", "config_file", "config_files", "get", "names", "registry"]


@functools.cache
def registry() -> dict[str, Preset]:
    """Every preset folder on the package's path (presets/), by preset name (sorted)."""
    found: dict[str, Preset] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"facerealism.presets.{info.name}")
        preset = getattr(module, "PRESET", None)
        if not isinstance(preset, Preset):
            raise UserError(f"presets/{info.name}/__init__.py must define PRESET = Preset(...)")
        if preset.name.replace("-", "_") != info.name:
            raise UserError(f"preset {preset.name!r} must live in presets/{preset.name.replace('-', '_')}/, "
                            f"not presets/{info.name}/")
        found[preset.name] = dataclasses.replace(preset, folder=Path(module.__file__).parent)
    return found


def names() -> list[str]:
    """The preset names, sorted."""
    return list(registry())


def get(name: str) -> Preset:
    """The preset called `name`; a UserError naming the known ones otherwise."""
    try:
        return registry()[name]
    except KeyError:
        raise UserError(f"unknown preset {name!r}; known: {names()}") from None


def active(diffusers) -> Preset | None:
    """The preset whose models a generate.diffusers section renders (same fast/slow model, UNet and LoRA), or None
    (another pair, or a preset pointed at other weights, e.g. the tiny stand-ins)."""
    from facerealism.config import load_config

    def models(d) -> tuple:
        return d.fast_model, d.slow_model, d.fast_unet, d.fast_lora

    return next((p for p in registry().values() if models(load_config(p.params).generate.diffusers) == models(diffusers)),
                None)


def config_file(name: str) -> Path:
    """The architecture config <name>.json, in the one preset folder (or shared/) that holds it."""
    found = [p for root in __path__ for p in sorted(Path(root).glob(f"*/{name}.json"))]
    if len(found) != 1:
        raise FileNotFoundError(f"preset config {name}.json: {'missing' if not found else 'in several folders'} "
                                f"under {ROOT} ({[str(p) for p in found]})")
    return found[0]


def config_files() -> list[Path]:
    """Every architecture config the presets ship, sorted by name."""
    return sorted((p for root in __path__ for p in Path(root).glob("*/*.json")), key=lambda p: p.stem)
