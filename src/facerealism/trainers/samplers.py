"""Training batches cropped from the image files as drawn: in this process (Sampler) or DataLoader workers (FileSampler)."""

from __future__ import annotations

import numpy as np
import torch

from facerealism.config import Config
from facerealism.config.architectures import ARCHITECTURES
from facerealism.data.split import to_tensor
from facerealism.errors import UserError
from facerealism.files import load_rgb


def draws_pairs(cfg: Config) -> bool:
    """Whether batches hold aligned (schnell, dev) pairs: the paired baseline, or a CycleGAN with a paired term."""
    return ARCHITECTURES[cfg.train.model].trainer == "paired" or cfg.train.lambda_paired > 0


def image_size(rows, crop: int | None) -> tuple[int, int]:
    """(h, w) of the first training image, read from its file: every image must share it (CropJobs checks each).

    Raises:
        UserError: the images are smaller than train.crop.
    """
    h, w = load_rgb(rows["schnell_path"].iloc[0]).shape[:2]
    if crop is not None and min(h, w) < crop:
        raise UserError(f"images are {w}x{h} px, smaller than train.crop={crop}")
    return h, w


class CropJobs(torch.utils.data.Dataset):
    """Decodes one (A, B) sample per job, in this process (Sampler) or in DataLoader workers (FileSampler); the job
    says which images, where to crop and whether to flip, so every random choice stays with the sampler."""

    def __init__(self, a_paths: list[str], b_paths: list[str], size: tuple[int, int], crop: int):
        self.a, self.b, self.size, self.crop = a_paths, b_paths, size, crop

    def __len__(self) -> int:
        return len(self.a)

    def _patch(self, path: str, y: int, x: int, flip: bool) -> torch.Tensor:
        img = load_rgb(path)  # (h, w, 3) uint8
        if img.shape[:2] != self.size:
            raise UserError(f"{path} is {img.shape[1]}x{img.shape[0]} px, the first training image "
                            f"{self.size[1]}x{self.size[0]}: the head trains on one size")
        patch = to_tensor(img[None, y : y + self.crop, x : x + self.crop])[0]  # (3, crop, crop)
        return patch.flip(-1) if flip else patch

    def __getitem__(self, job: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        ia, ya, xa, fa, ib, yb, xb, fb = job
        return self._patch(self.a[ia], ya, xa, fa), self._patch(self.b[ib], yb, xb, fb)


def placed(a: torch.Tensor, b: torch.Tensor, device, memory_format, non_blocking: bool = False):
    """A batch pair on the training device in the memory format the nets use."""
    return (a.to(device, non_blocking=non_blocking).contiguous(memory_format=memory_format),
            b.to(device, non_blocking=non_blocking).contiguous(memory_format=memory_format))


class Sampler:
    """Batches decoded from the image files in this process, only the images each batch draws (train.num_workers 0).

    It holds the files' paths, never their pixels: its memory does not grow with the number of pairs. Its one RNG
    makes every random choice (part of the checkpoint), in the order the in-memory sampler it replaced drew them,
    so a seed gives the same batches as before.
    """

    def __init__(self, rows, cfg: Config, device, seed):
        t = cfg.train
        self.t, self.device, self.n = t, device, len(rows)
        self.h, self.w = image_size(rows, t.crop)
        self.crop = t.crop or self.w  # null: whole images
        self.files = CropJobs(list(rows["schnell_path"]), list(rows["dev_path"]), (self.h, self.w), self.crop)
        self.memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
        self.paired = draws_pairs(cfg)
        self.rng = np.random.default_rng(seed)

    def _windows(self, count: int) -> list[tuple[int, int, bool]]:
        """(y, x, flip) of `count` crops, each drawn y, x, flip in that order."""
        rng = self.rng
        return [(int(rng.integers(0, self.h - self.crop + 1)), int(rng.integers(0, self.w - self.crop + 1)),
                 bool(rng.random() < 0.5)) for _ in range(count)]

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        size, rng = self.t.batch_size, self.rng
        ia = rng.integers(0, self.n, size)
        wa = self._windows(size)
        if self.paired:  # the same pair, window and flip in both domains
            ib, wb = ia, wa
        else:  # A and B batches drawn independently, never as pairs (without a paired term)
            ib = rng.integers(0, self.n, size)
            wb = self._windows(size)
        pairs = [self.files[(int(i), *u, int(j), *v)] for i, u, j, v in zip(ia, wa, ib, wb)]
        a, b = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])  # (b, 3, crop, crop)
        return placed(a, b, self.device, self.memory_format)

    def close(self) -> None:
        """Nothing to stop (FileSampler's interface)."""

    def rng_state(self) -> dict:
        """The state of its one RNG (in the checkpoint)."""
        return self.rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


class StepJobs:
    """The jobs of micro-batch k come from an RNG seeded with (seed, k): the data order is a function of the
    step, so a resumed run continues it without any loader state, however far the workers prefetched."""

    def __init__(self, n: int, side: int, cfg: Config, seed, start: int):
        self.n, self.side, self.t, self.seed, self.start = n, side, cfg.train, seed, start
        self.crop = cfg.train.crop or side
        self.paired = draws_pairs(cfg)

    def jobs(self, k: int) -> list[tuple]:
        rng = np.random.default_rng([*np.atleast_1d(self.seed), k])
        out = []

        def draw() -> tuple[int, int, int, bool]:  # (image index, y, x, flip)
            i = int(rng.integers(self.n))
            y, x = (int(v) for v in rng.integers(0, self.side - self.crop + 1, 2))
            return i, y, x, bool(rng.random() < 0.5)

        for _ in range(self.t.batch_size):
            a = draw()
            # Unpaired: B is drawn independently of A; paired: the same pair, window and flip.
            out.append((*a, *(a if self.paired else draw())))
        return out

    def __iter__(self):
        k = self.start
        while True:
            yield self.jobs(k)
            k += 1


class FileSampler:
    """Batches decoded from the image files by `train.num_workers` processes while the step computes (train.num_workers > 0)."""

    def __init__(self, rows, cfg: Config, device, seed, start: int):
        t = cfg.train
        h, side = image_size(rows, t.crop)
        dataset = CropJobs(list(rows["schnell_path"]), list(rows["dev_path"]), (h, side), t.crop or side)
        self.jobs = StepJobs(len(rows), side, cfg, seed, start)
        # spawn, not fork: the stage runs inside Prefect/MLflow processes with threads of their own, and forked
        # workers inherited that state (they exited with code 1 at shutdown in the full test suite).
        self.loader = torch.utils.data.DataLoader(dataset, batch_sampler=self.jobs, num_workers=t.num_workers,
                                                  multiprocessing_context="spawn", persistent_workers=True,
                                                  pin_memory=torch.cuda.is_available())
        self.device, self.it = device, None
        self.memory_format = torch.channels_last if t.channels_last else torch.contiguous_format

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.it is None:
            self.it = iter(self.loader)  # starts the workers on first use
        a, b = next(self.it)
        return placed(a, b, self.device, self.memory_format, non_blocking=True)

    def close(self) -> None:
        """Stop the workers now: the job stream never ends, so the loader would otherwise wait for the GC."""
        if self.it is not None:
            self.it._shutdown_workers()
            self.it = None

    def rng_state(self) -> None:
        """None: the data order is a function of the step (StepJobs), so nothing is saved."""

    def set_rng_state(self, state) -> None:
        """Nothing to restore: the step counter given at construction sets the data order."""
