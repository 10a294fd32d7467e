"""Table 4's measures shard by shard: each row a recipe for any range of its images, made from the image files a
shard reads (with its inputs' and dev twins' where a measure asks), measured in this process or over a Dask client,
per image results concatenated in index order and counts summed."""

# Why the numbers cannot move with the shards or the workers: every row and feature space computes its images in
# batches that start at multiples of 64 (controls.CHUNK, fitted.APPLY_CHUNK, the spaces' chunks, the heads' 16) and
# treats each image alone, except the noise controls, whose one noise stream a shard resumes where the images
# before it left it (controls.streams). A shard starts at a multiple of SHARD, so it holds the same batches as one
# pass over the whole row; tests/test_evaluate_shards.py holds that to bit-identical results. Nor may a measure depend
# on the thread count (a Dask worker has one): a BLAS product split across threads moved the spectral features' last
# bit on AMD Zen 5, so metrics.spaces sums its bins in a fixed order instead.

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

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


class Pair(NamedTuple):
    """What a measure sees of one shard of a row: the row's images, and where it asked for them, their schnell
    inputs and dev twins (a row scored as dev is its own twin), read from the same range of their files."""

    images: np.ndarray
    """(b, h, w, 3) uint8: the row's images lo..lo+b."""
    inputs: np.ndarray | None
    twins: np.ndarray | None
    lo: int
    """The shard's first index in its row (where a measure that writes files puts them)."""
    label: str
    """The row's label."""


@dataclass(frozen=True)
class Measure:
    """Something computed on each shard of a row (Pair -> array): per image (concatenated in index order, the
    first axis the shard's images) or, with `total`, counts summed over the shards (a histogram). It runs on the
    workers: a picklable function (module level, or a functools.partial of one)."""

    fn: Callable[[Pair], np.ndarray]
    inputs: bool = False
    twins: bool = False
    total: bool = False


def feature(space: str) -> Measure:
    """A feature space of metrics.FEATURE_SPACES as a Measure: (b, d) features of the row's images."""
    return Measure(functools.partial(_space, space))


def _space(space: str, pair: Pair) -> np.ndarray:
    return metrics.FEATURE_SPACES[space](pair.images)


@dataclass(frozen=True)
class Job:
    """A row to measure: its recipe, the measures (by name), and where its inputs and twins are read (a Source of
    the row's length each, or None: the row is its own twin; no inputs)."""

    recipe: Recipe
    measures: Mapping[str, Measure]
    inputs: Source | None = None
    twins: Source | None = None


def shard_measures(part: Recipe, measures: Mapping[str, Measure], inputs: Source | None, twins: Source | None,
                   lo: int, label: str, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """What a worker runs: the part's images (checked against the row's image size), their inputs and twins where a
    measure asks for them, and every measure on them."""
    imgs = part()
    if imgs.shape[1:] != tuple(shape[1:]) or len(imgs) != len(part):
        raise UserError(f"Table 4 row {label!r} has images {imgs.shape[1:]} (a shard of {len(imgs)}), expected "
                        f"{tuple(shape[1:])} like schnell")
    need_inputs = any(m.inputs for m in measures.values())
    need_twins = any(m.twins for m in measures.values())
    pair = Pair(imgs, inputs[:] if need_inputs and inputs is not None else None,
                (imgs if twins is None else twins[:]) if need_twins else None, lo, label)
    return {name: m.fn(pair) for name, m in measures.items()}


def measure(jobs: Mapping[str, Job], shape: tuple[int, ...], client=None, shard: int = SHARD,
            what: str = "evaluate: features") -> dict[str, dict[str, np.ndarray]]:
    """{label: {measure name: per-image array over the whole row, or summed counts}} of every row, shard by shard.

    Args:
        jobs: label -> what to measure on that row.
        shape: (n, h, w, 3) of the schnell images: every row's images have their size.
        client: a distributed.Client whose workers compute the shards (all rows' at once); None: this process, one
            after another. Either way the results are the same bits (see the module's head).
        shard: images per shard, a multiple of 64.
        what: the progress bar's label.
    """
    work = []
    for label, job in jobs.items():
        n = len(job.recipe)
        for side in (job.inputs, job.twins):
            if side is not None and len(side) != n:
                raise UserError(f"Table 4 row {label!r} has {n} images but {len(side)} inputs or twins to pair them with")
        spans = bounds(n, shard)
        for (lo, hi), part in zip(spans, job.recipe.parts(spans, shape)):
            work.append((label, part, None if job.inputs is None else narrow(job.inputs, slice(lo, hi)),
                         None if job.twins is None else narrow(job.twins, slice(lo, hi)), lo))
    out: dict[str, dict[str, list]] = {label: {name: [] for name in job.measures} for label, job in jobs.items()}
    totals: dict[str, dict[str, np.ndarray]] = {label: {} for label in jobs}

    def keep(label: str, done: dict[str, np.ndarray]) -> None:  # per image: kept in order; totals: summed now
        for name, value in done.items():
            if jobs[label].measures[name].total:
                totals[label][name] = totals[label][name] + value if name in totals[label] else value
            else:
                out[label][name].append(value)

    with progress() as bar:  # without a terminal: a "done/total, rate, eta" line every ~30 s
        task = bar.add_task(what, total=len(work))
        if client is None:
            for label, part, inputs, twins, lo in work:
                keep(label, shard_measures(part, jobs[label].measures, inputs, twins, lo, label, shape))
                bar.advance(task)
        else:
            from distributed import as_completed

            futures = client.map(shard_measures, *zip(*[(part, dict(jobs[label].measures), inputs, twins, lo, label,
                                                          tuple(shape)) for label, part, inputs, twins, lo in work]),
                                 pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            done: dict[int, dict] = {}
            nxt = 0
            for future in as_completed(futures):  # kept in submission order: shards by row, then by index
                done[index[future.key]] = future.result()
                future.release()
                while nxt in done:
                    keep(work[nxt][0], done.pop(nxt))
                    nxt += 1
                bar.advance(task)
    return {label: {**{name: np.concatenate(parts) for name, parts in by.items() if parts}, **totals[label]}
            for label, by in out.items()}


def features(rows: Mapping[str, Recipe], spaces: Sequence[str], shape: tuple[int, ...], client=None,
             shard: int = SHARD) -> dict[str, dict[str, np.ndarray]]:
    """{space: {label: (n_row, d) features}} of every row in each of `spaces` (measure's args), shard by shard."""
    done = measure({label: Job(recipe, {space: feature(space) for space in spaces}) for label, recipe in rows.items()},
                   shape, client, shard)
    return {space: {label: done[label][space] for label in rows} for space in spaces}
