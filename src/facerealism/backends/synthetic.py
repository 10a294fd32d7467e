"""The `synthetic` backend: procedural portrait pairs (backends/painter.py), the offline stand-in for FLUX."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from facerealism.config import Config

_REFERENCE_SALT = 0x5BD1E995  # moves a reference image's seed off its pair's, onto another face


class SyntheticBackend:
    """Procedural portrait pairs: the offline stand-in for FLUX schnell -> dev."""

    name = "synthetic"

    def __init__(self, cfg: Config):
        self.size = cfg.generate.size
        self.params = cfg.generate.synthetic.model_dump()

    def load(self) -> None:
        """Nothing to load: the painter is plain numpy."""

    def _pair(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        from facerealism.backends.painter import render_pair  # scipy loads only when it renders

        return render_pair(seed, self.size, **self.params)

    def generate(self, rows: pd.DataFrame) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for row in rows.itertuples():
            schnell, dev = self._pair(int(row.seed))
            yield row.id, schnell, dev

    def reference(self, rows: pd.DataFrame) -> Iterator[tuple[str, np.ndarray]]:
        """A dev-like image of another face: like a slow-model render from scratch, unrelated to the pair's schnell."""
        for row in rows.itertuples():
            yield row.id, self._pair((int(row.seed) + _REFERENCE_SALT) & 0x7FFFFFFF)[1]

    def fast_renderer(self) -> Callable[[str, int], np.ndarray]:
        """The schnell-like half of a procedural pair; the prompt counts only through its seed."""
        return lambda prompt, seed: self._pair(seed)[0]

    def describe(self) -> dict:
        return {"size": self.size, **self.params}
