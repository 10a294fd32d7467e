"""Table 4's per-image features shard by shard: each row a recipe for any range of its images, made from the image
files a shard reads, mapped in this process or over a Dask client and concatenated in index order."""

# Why the numbers cannot move with the shards or the workers: every row and feature space computes its images in
# batches that start at multiples of 64 (controls.CHUNK, fitted.APPLY_CHUNK, the spaces' chunks, the heads' 16) and
# treats each image alone, except the noise controls, whose one noise stream a shard resumes where the images
# before it left it (controls.streams). A shard starts at a multiple of SHARD, so it holds the same batches as one
# pass over the whole row; tests/test_evaluate_shards.py holds that to bit-identical features.

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from facerealism import metrics
from facerealism.data.split import ImageFiles
from facerealism.errors import UserError
from facerealism.head import WEIGHTS, enhance_array, load_head
from facerealism.progress import progress
from facerealism.scoring import controls

SHARD = 256  # images a shard makes and measures: a multiple of 64 (above); ~3 MB of 64-px images on a worker

Source = np.ndarray | ImageFiles
"""Images (n, h, w, 3) uint8 in memory, or their files, read only where a shard asks for them."""


def narrow(src: Source, index: slice | list[int]) -> Source:
    """The images of `src` at `index`, still unread when `src` is files (what a shard is sent: its own paths)."""
    if not isinstance(src, ImageFiles):
        return src[index]
    return ImageFiles(src.paths[index] if isinstance(index, slice) else [src.paths[i] for i in index])


class Recipe:
    """A Table 4 row that makes its images from its sources: all at once (`recipe()`), or in shards (`parts`),
    each a recipe of the same kind over only its range's sources, small enough to send to a worker."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __call__(self) -> np.ndarray:
        raise NotImplementedError

    def narrow(self, lo: int, hi: int) -> "Recipe":
        raise NotImplementedError

    def parts(self, bounds: Sequence[tuple[int, int]], shape: tuple[int, ...]) -> list["Recipe"]:
        """One recipe per (lo, hi) of `bounds`; shape: the row's (n, h, w, 3)."""
        return [self.narrow(lo, hi) for lo, hi in bounds]


@dataclass(frozen=True)
class Images(Recipe):
    """A row that is its images: schnell, dev, the dev check sample."""

    images: Source

    def __len__(self) -> int:
        return len(self.images)

    def __call__(self) -> np.ndarray:
        return self.images[:]

    def narrow(self, lo: int, hi: int) -> Images:
        return Images(narrow(self.images, slice(lo, hi)))


@functools.lru_cache(maxsize=8)
def _head(folder: str, stamp: tuple[int, int]):
    """A head loaded once per process (the weights file's mtime and size in the key: a retrained head is reloaded)."""
    return load_head(folder)[0]


@dataclass(frozen=True)
class Headed(Recipe):
    """A trained head's outputs on its schnell inputs, the head read from its folder by each process once."""

    folder: str
    inputs: Source

    def __len__(self) -> int:
        return len(self.inputs)

    def __call__(self) -> np.ndarray:
        st = os.stat(os.path.join(self.folder, WEIGHTS))
        return enhance_array(_head(self.folder, (st.st_mtime_ns, st.st_size)), self.inputs[:])

    def narrow(self, lo: int, hi: int) -> Headed:
        return replace(self, inputs=narrow(self.inputs, slice(lo, hi)))


@dataclass(frozen=True)
class Filtered(Recipe):
    """A filter's outputs on the schnell inputs, each image filtered alone (the fitted baselines)."""

    filter: Callable[[np.ndarray], np.ndarray]
    inputs: Source

    def __len__(self) -> int:
        return len(self.inputs)

    def __call__(self) -> np.ndarray:
        return self.filter(self.inputs[:])

    def narrow(self, lo: int, hi: int) -> Filtered:
        return replace(self, inputs=narrow(self.inputs, slice(lo, hi)))


@dataclass(frozen=True)
class Controlled(Recipe):
    """A negative control on the schnell inputs; `dev`: their dev twins (the pasted controls' donors)."""

    name: str
    seed: int
    schnell: Source
    dev: Source

    def __len__(self) -> int:
        return len(self.schnell)

    def __call__(self) -> np.ndarray:
        return _ControlPart(self.name, self.schnell, self._donors(0, len(self)), np.random.default_rng(self.seed),
                            (0, len(self)))()

    def _donors(self, lo: int, hi: int) -> Source | None:
        if not controls.CONTROLS[self.name].donors:
            return None
        if len(self.dev) != len(self.schnell) or len(self.schnell) < 2:
            raise UserError("the pasted-texture controls need the dev twins of >= 2 schnell images, paired one to one")
        return narrow(self.dev, controls.donor_positions(lo, hi, len(self.dev)))

    def narrow(self, lo: int, hi: int) -> Recipe:
        return self.parts([(lo, hi)], (len(self), *self.schnell[:1].shape[1:]))[0]

    def parts(self, bounds, shape):
        rngs = controls.streams(self.name, self.seed, [lo for lo, _ in bounds], shape[1:3])
        reach, n = controls.CONTROLS[self.name].reach, len(self)
        if reach and controls.CONTROLS[self.name].noise:  # its noise stream would start at the neighbours
            raise UserError(f"control {self.name!r}: a noise control cannot reach across images, sharded")
        out = []
        for (lo, hi), rng in zip(bounds, rngs):
            a, b = max(lo - reach, 0), min(hi + reach, n)  # the part and the neighbours that reach into it
            out.append(_ControlPart(self.name, narrow(self.schnell, slice(a, b)), self._donors(a, b), rng,
                                    (lo - a, hi - a)))
        return out


@dataclass(frozen=True)
class _ControlPart(Recipe):
    """A control on a part of the row, computed with `reach` neighbours each side and cut back to `keep`."""

    name: str
    schnell: Source
    donors: Source | None
    rng: np.random.Generator
    keep: tuple[int, int]

    def __len__(self) -> int:
        return self.keep[1] - self.keep[0]

    def __call__(self) -> np.ndarray:
        out = controls.apply_part(self.name, self.schnell[:], self.rng, None if self.donors is None else self.donors[:])
        return out[self.keep[0]:self.keep[1]]


@dataclass(frozen=True)
class Oracle(Recipe):
    """The positive control: each schnell image plus its own dev twin's high-pass (controls.oracle)."""

    schnell: Source
    dev: Source

    def __len__(self) -> int:
        return len(self.schnell)

    def __call__(self) -> np.ndarray:
        return controls.oracle(self.schnell[:], self.dev[:])

    def narrow(self, lo: int, hi: int) -> Oracle:
        return Oracle(narrow(self.schnell, slice(lo, hi)), narrow(self.dev, slice(lo, hi)))


def recipe_of(row) -> Recipe:
    """A row as a Recipe: a Recipe as it is, images in memory as Images; any other callable is made here, once."""
    if isinstance(row, Recipe):
        return row
    return Images(row if isinstance(row, (np.ndarray, ImageFiles)) else row())


def bounds(n: int, shard: int = SHARD) -> list[tuple[int, int]]:
    """(lo, hi) of each shard of n images, lo a multiple of `shard`."""
    if shard < 1 or shard % 64:
        raise UserError(f"a feature shard must hold a multiple of 64 images (the rows' batches), got {shard}")
    return [(lo, min(lo + shard, n)) for lo in range(0, n, shard)]


def shard_features(part: Recipe, spaces: Sequence[str], label: str, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """What a worker runs: the part's images, checked against the row's image size, in each feature space."""
    imgs = part()
    if imgs.shape[1:] != tuple(shape[1:]) or len(imgs) != len(part):
        raise UserError(f"Table 4 row {label!r} has images {imgs.shape[1:]} (a shard of {len(imgs)}), expected "
                        f"{tuple(shape[1:])} like schnell")
    return {space: metrics.FEATURE_SPACES[space](imgs) for space in spaces}


def features(rows: Mapping[str, Recipe], spaces: Sequence[str], shape: tuple[int, ...], client=None,
             shard: int = SHARD) -> dict[str, dict[str, np.ndarray]]:
    """{space: {label: (n_row, d) features}} of every row, shard by shard.

    Args:
        rows: label -> recipe of its images.
        shape: (n, h, w, 3) of the schnell images: every row's images have their size.
        client: a distributed.Client whose workers compute the shards (all rows' at once); None: this process, one
            after another. Either way the features are the same bits (see the module's head).
        shard: images per shard, a multiple of 64.
    """
    jobs = [(label, part) for label, recipe in rows.items() for part in recipe.parts(bounds(len(recipe), shard), shape)]
    with progress() as bar:  # without a terminal: a "done/total, rate, eta" line every ~30 s
        task = bar.add_task("evaluate: features", total=len(jobs))
        if client is None:
            done = []
            for label, part in jobs:
                done.append(shard_features(part, spaces, label, shape))
                bar.advance(task)
        else:
            from distributed import as_completed

            futures = client.map(shard_features, [p for _, p in jobs], [list(spaces)] * len(jobs),
                                 [label for label, _ in jobs], [tuple(shape)] * len(jobs), pure=False)
            for _ in as_completed(futures):
                bar.advance(task)
            done = client.gather(futures)  # in submission order: shards by row, then by index
    out: dict[str, dict[str, list]] = {space: {label: [] for label in rows} for space in spaces}
    for (label, _), feats in zip(jobs, done):
        for space in spaces:
            out[space][label].append(feats[space])
    return {space: {label: np.concatenate(parts) for label, parts in by.items()} for space, by in out.items()}
