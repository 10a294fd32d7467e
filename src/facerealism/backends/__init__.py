"""Generation backends behind one interface: the `Backend` protocol and the registry of backends by name."""

# Implementations: synthetic.py (procedural pairs, painter.py), flux.py (FLUX schnell -> dev through diffusers),
# diffusers.py (any AutoPipeline-loadable fast/slow pair). tiny_flux.py and full_flux.py build FLUX pipelines
# for tests and the GPU kit; they are not backends. Imports below are absolute, so `import diffusers` inside
# this package is the library, never backends/diffusers.py.

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from facerealism.backends.diffusers import DiffusersBackend
from facerealism.backends.flux import FluxBackend
from facerealism.backends.synthetic import SyntheticBackend
from facerealism.config import Config
from facerealism.errors import UserError


@runtime_checkable
class Backend(Protocol):
    """What the generate stage and `facerealism generate` need from a backend; models load lazily."""

    name: str  # the registry key, recorded in the manifest

    def load(self) -> None:
        """Load the models now (no-op when loaded), so a missing model fails before stale renders are deleted."""

    def generate(self, rows: pd.DataFrame) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(id, schnell-like uint8 (size, size, 3), dev-like uint8 (size, size, 3)) for each row (id, prompt, seed)."""

    def reference(self, rows: pd.DataFrame) -> Iterator[tuple[str, np.ndarray]]:
        """(id, dev-like uint8 (size, size, 3)) rendered from scratch, with no fast image: the FID_dev reference."""

    def fast_renderer(self) -> Callable[[str, int], np.ndarray]:
        """(prompt, seed) -> the fast model's uint8 (size, size, 3) image; loads only the fast model."""

    def describe(self) -> dict:
        """Everything that changes the pixels (the manifest's params; finished renders with others are stale)."""


BACKENDS: dict[str, Callable[[Config], Backend]] = {
    SyntheticBackend.name: SyntheticBackend,
    FluxBackend.name: FluxBackend,
    DiffusersBackend.name: DiffusersBackend,
}


def build_backend(cfg: Config) -> Backend:
    """The backend `generate.backend` names; cheap, as backends load their models on first use.

    Raises:
        UserError: an unknown name, listing the registered ones.
    """
    name = cfg.generate.backend
    if name not in BACKENDS:
        raise UserError(f"generate.backend: unknown backend {name!r}; known: {sorted(BACKENDS)}")
    return BACKENDS[name](cfg)
