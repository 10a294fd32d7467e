"""What a preset declares about itself (`Preset`): its name, architecture family, licence and tiny builders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent  # presets/: one folder per preset, shared/ beside them


@dataclass(frozen=True)
class Preset:
    """One fast -> slow model pair: what it is called, which architecture family it runs, how to build it tiny."""

    name: str
    """What users type (--preset NAME); the folder is the name with '-' as '_'."""
    family: str
    """Architecture family (speed.preset_flops.FAMILIES): how its pipelines run guidance and which configs it builds."""
    models: tuple[str, str]
    """The fast and slow models' names: Table 4's reference rows when this preset renders the pairs."""
    summary: str
    """fast -> slow, in words (the docs table)."""
    licence: str
    """The two models' licences, fast / slow."""
    tiny_components: Callable[[int, int, bool], dict]
    """(seed, shared_seed, fast) -> the diffusers pipeline components of a tiny random model of the fast (or slow)
    model: its real wiring, modules shared with the other model built from shared_seed."""
    build_tiny: Callable[[Path, int], dict]
    """(out_dir, seed) -> generate.diffusers overrides pointing the preset at tiny models written under out_dir."""
    distilled: tuple[str, ...] = ()
    """Which of "fast" / "slow" is step-distilled: no CFG whatever guidance_scale says."""
    folder: Path = field(default=ROOT, compare=False)
    """Set by the registry: presets/<name>/."""

    @property
    def params(self) -> Path:
        """The params overlay: a params file for the diffusers backend."""
        return self.folder / "params.yaml"
