"""Training batches: in-memory random/paired crops (Sampler) or crops decoded by DataLoader workers (FileSampler)."""

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


def random_crops(images: torch.Tensor, idx: np.ndarray, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """A batch of random crops with random horizontal flips; images (n, 3, h, w)."""
    _, _, h, w = images.shape
    out = []
    for i in idx:
        y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
        patch = images[i, :, y : y + crop, x : x + crop]
        out.append(patch.flip(-1) if rng.random() < 0.5 else patch)
    return torch.stack(out)  # (b, 3, crop, crop)


def paired_crops(A: torch.Tensor, B: torch.Tensor, idx: np.ndarray, crop: int, rng: np.random.Generator):
    """The same crop window and flip in both images of each pair; returns two (b, 3, crop, crop)."""
    _, _, h, w = A.shape
    out_a, out_b = [], []
    for i in idx:
        y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
        flip = rng.random() < 0.5
        for src, out in ((A, out_a), (B, out_b)):
            patch = src[i, :, y : y + crop, x : x + crop]
            out.append(patch.flip(-1) if flip else patch)
    return torch.stack(out_a), torch.stack(out_b)


class Sampler:
    """Draws training batches from in-memory images; its one RNG is part of the checkpoint."""

    def __init__(self, A: torch.Tensor, B: torch.Tensor, cfg: Config, device, seed):
        self.A, self.B, self.t, self.device = A, B, cfg.train, device
        self.memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self.crop = cfg.train.crop or A.shape[-1]  # null: whole images
        self.paired = draws_pairs(cfg)
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        t, rng = self.t, self.rng
        if self.paired:
            a, b = paired_crops(self.A, self.B, rng.integers(0, len(self.A), t.batch_size), self.crop, rng)
        else:
            # Unpaired: A and B batches are drawn independently, never as pairs (without a paired term).
            a = random_crops(self.A, rng.integers(0, len(self.A), t.batch_size), self.crop, rng)
            b = random_crops(self.B, rng.integers(0, len(self.B), t.batch_size), self.crop, rng)
        return (a.to(self.device).contiguous(memory_format=self.memory_format),
                b.to(self.device).contiguous(memory_format=self.memory_format))

    def close(self) -> None:
        """Nothing to stop (FileSampler's interface)."""

    def rng_state(self) -> dict:
        """The state of its one RNG (in the checkpoint)."""
        return self.rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


class CropJobs(torch.utils.data.Dataset):
    """Decodes one (A, B) sample per job in DataLoader worker processes; the job says which images, where to
    crop and whether to flip, so every random choice stays in the main process."""

    def __init__(self, a_paths: list[str], b_paths: list[str], crop: int):
        self.a, self.b, self.crop = a_paths, b_paths, crop

    def __len__(self) -> int:
        return len(self.a)

    def _patch(self, path: str, y: int, x: int, flip: bool) -> torch.Tensor:
        img = to_tensor(load_rgb(path)[None])[0]  # (3, h, w)
        if img.shape[-1] < x + self.crop or img.shape[-2] < y + self.crop:
            raise UserError(f"{path} is {img.shape[-1]}x{img.shape[-2]} px, smaller than train.crop={self.crop}")
        patch = img[:, y : y + self.crop, x : x + self.crop]
        return patch.flip(-1) if flip else patch

    def __getitem__(self, job: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        ia, ya, xa, fa, ib, yb, xb, fb = job
        return self._patch(self.a[ia], ya, xa, fa), self._patch(self.b[ib], yb, xb, fb)


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
    """Batches decoded from the image files by `train.num_workers` processes (for datasets larger than memory)."""

    def __init__(self, rows, cfg: Config, device, seed, start: int):
        t = cfg.train
        side = load_rgb(rows["schnell_path"].iloc[0]).shape[1]
        if t.crop is not None and side < t.crop:
            raise UserError(f"images are {side} px, smaller than train.crop={t.crop}")
        dataset = CropJobs(list(rows["schnell_path"]), list(rows["dev_path"]), t.crop or side)
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
        return (a.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format),
                b.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format))

    def close(self) -> None:
        """Stop the workers now: the job stream never ends, so the loader would otherwise wait for the GC."""
        if self.it is not None:
            self.it._shutdown_workers()
            self.it = None


    def rng_state(self) -> None:
        """None: the data order is a function of the step (StepJobs), so nothing is saved."""

    def set_rng_state(self, state) -> None:
        """Nothing to restore: the step counter given at construction sets the data order."""
