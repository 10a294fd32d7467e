"""Stage `train`: the head, schnell-like (A) -> dev-like (B): unpaired (ESA-)CycleGAN or the paired U-Net+CBAM.

Paper symbols -> code names (as in the reference CycleGAN):
    G: A -> B   = G_A        F: B -> A   = G_B
    D_Y judges B = D_A       D_X judges A = D_B
"""

from __future__ import annotations

import contextlib
import os
import random
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facerealism import checkpoint, tracking
from facerealism.config import Config
from facerealism.data import load_images, split, to_tensor, validated_manifest
from facerealism.files import load_rgb, read_json, write_json
from facerealism.grids import image_grid, save_grid
from facerealism.head import enhance_array, save_head
from facerealism.models import build_discriminator, build_generator, init_weights
from facerealism.progress import progress

CYCLE_MODELS = ("esa_resnet", "resnet")


class ImagePool:
    """A buffer of past fakes; the discriminator sees half old, half new (Shrivastava et al.)."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.rng, self.images = size, rng, []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img)
                out.append(img)
            elif self.rng.random() < 0.5:
                i = self.rng.randrange(self.size)
                out.append(self.images[i].clone())
                self.images[i] = img
            else:
                out.append(img)
        return torch.cat(out)


def generator_kwargs(cfg: Config) -> dict:
    t = cfg.train
    if t.model == "unet_cbam":
        return {"base": t.ngf, "depth": t.unet_depth, "residual_output": t.residual_output}
    kwargs = {"ngf": t.ngf, "n_blocks": t.n_blocks, "residual_output": t.residual_output}
    if t.detail:
        kwargs["detail"] = True  # absent when off, so heads saved before the option load unchanged
    return kwargs


def output_mode(cfg: Config) -> str:
    t = cfg.train
    if t.detail and t.model in CYCLE_MODELS:
        return "detail: x + sum_k [band_k(Y) (a_k x + b_k) + c_k band_k(x)]"
    return "residual: clamp(x + body(x))" if t.residual_output else "tanh: tanh(body(x))"


def draws_pairs(cfg: Config) -> bool:
    """Whether batches hold aligned (schnell, dev) pairs: the paired baseline, or a CycleGAN with a paired term."""
    return cfg.train.model not in CYCLE_MODELS or cfg.train.lambda_paired > 0


def shift_tolerant_l1(out: torch.Tensor, target: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Mean over images of the smallest L1 between `out` and `target` shifted by up to max_shift px.

    A pair is aligned only up to a small offset (img2img re-renders move details; the synthetic pairs
    are shifted by design), so a plain L1 would teach a blur. The border of max_shift px is left out.

    Args:
        out, target: (b, c, h, w).
        max_shift: largest offset tried on each axis (0: plain L1).
    """
    h, w = out.shape[-2:]
    m = max_shift
    o = out[..., m : h - m, m : w - m].float()
    per_shift = [(o - target[..., m + dy : h - m + dy, m + dx : w - m + dx].float()).abs().mean(dim=(1, 2, 3))
                 for dy in range(-m, m + 1) for dx in range(-m, m + 1)]  # each (b,)
    return torch.stack(per_shift).min(dim=0).values.mean()


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
            raise ValueError(f"{path} is {img.shape[-1]}x{img.shape[-2]} px, smaller than train.crop={self.crop}")
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
            raise ValueError(f"images are {side} px, smaller than train.crop={t.crop}")
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


def lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    return F.mse_loss(pred.float(), torch.full_like(pred.float(), 1.0 if real else 0.0))


def linear_decay(t) -> callable:
    decay_from = int(t.steps * t.decay_start)
    # Constant, then linear decay to zero: the reference CycleGAN schedule, counted in steps.
    return lambda step: 1.0 - max(0, step - decay_from) / max(1, t.steps - decay_from)


class Trainer:
    """What every head trainer shares: named nets/optimisers/schedulers/pools and their full state."""

    nets: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict
    pools: dict[str, ImagePool]
    pool_rng: random.Random | None = None
    loss_names: list[str]
    head_name: str

    def plain(self, net: torch.nn.Module) -> torch.nn.Module:
        """The module itself: without accelerate's DDP and torch.compile wrappers (state-dict keys as built)."""
        return self.acc.unwrap_model(net, keep_torch_compile=False)

    def head(self) -> torch.nn.Module:
        """The shipped generator (schnell -> dev), unwrapped, fp32, on the CPU."""
        return self.plain(self.nets[self.head_name]).float().cpu().to(memory_format=torch.contiguous_format)

    def preview(self, images: np.ndarray) -> np.ndarray:
        """The head's current output on uint8 images, leaving the training state as it was."""
        G = self.plain(self.nets[self.head_name])
        out = enhance_array(G, images, device=self.acc.device)
        G.train()
        return out

    def step_schedulers(self) -> None:
        """Once per optimiser step: the schedule counts steps, not accumulated micro-batches."""
        if self.acc.sync_gradients:
            for sched in self.schedulers.values():
                sched.step()

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors, meta = {}, {"optimizers": {}, "schedulers": {}, "pools": {}}
        for name, net in self.nets.items():
            for k, v in self.plain(net).state_dict().items():
                tensors[f"net.{name}.{k}"] = v
        for name, opt in self.optimizers.items():
            opt_t, meta["optimizers"][name] = checkpoint.flatten_optimizer(f"opt.{name}", opt.state_dict())
            tensors.update(opt_t)
        for name, sched in self.schedulers.items():
            meta["schedulers"][name] = sched.state_dict()
        for name, pool in self.pools.items():
            meta["pools"][name] = len(pool.images)
            if pool.images:
                tensors[f"pool.{name}"] = torch.cat(pool.images)  # (n, 3, crop, crop)
        if self.pool_rng is not None:
            meta["pool_rng"] = checkpoint.py_rng_state(self.pool_rng)
        return tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        for name, net in self.nets.items():
            prefix = f"net.{name}."
            own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            self.plain(net).load_state_dict(own, strict=True)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(checkpoint.unflatten_optimizer(f"opt.{name}", tensors, meta["optimizers"][name]))
        for name, sched in self.schedulers.items():
            sched.load_state_dict(meta["schedulers"][name])
        for name, pool in self.pools.items():
            n = meta["pools"][name]
            pool.images = list(tensors[f"pool.{name}"].to(self.acc.device).split(1)) if n else []
        if self.pool_rng is not None:
            checkpoint.set_py_rng_state(self.pool_rng, meta["pool_rng"])


class CycleGAN(Trainer):
    """Two generators, two discriminators, their optimisers; the step reads top to bottom."""

    head_name = "G_A"

    def __init__(self, cfg: Config, accelerator):
        t = cfg.train
        torch.manual_seed(cfg.seed)
        self.t = t
        self.loss_names = ["D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B"]
        if t.lambda_paired > 0:
            self.loss_names.append("paired_A")
        nets = {
            "G_A": build_generator(t.model, **generator_kwargs(cfg)),
            "G_B": build_generator(t.model, **generator_kwargs(cfg)),
            "D_A": build_discriminator("patchgan", ndf=t.ndf, n_layers=3),
            "D_B": build_discriminator("patchgan", ndf=t.ndf, n_layers=3),
        }
        for net in nets.values():
            init_weights(net)
            if t.channels_last:
                net.to(memory_format=torch.channels_last)
        opt_g = torch.optim.Adam(list(nets["G_A"].parameters()) + list(nets["G_B"].parameters()), lr=t.lr, betas=(t.beta1, 0.999))
        opt_d = torch.optim.Adam(list(nets["D_A"].parameters()) + list(nets["D_B"].parameters()), lr=t.lr, betas=(t.beta1, 0.999))
        sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, linear_decay(t))
        sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, linear_decay(t))
        prepared = accelerator.prepare(nets["G_A"], nets["G_B"], nets["D_A"], nets["D_B"], opt_g, opt_d, sched_g, sched_d)
        self.G_A, self.G_B, self.D_A, self.D_B, self.opt_g, self.opt_d, self.sched_g, self.sched_d = prepared
        self.acc = accelerator
        self.pool_rng = random.Random(cfg.seed)
        self.pool_A, self.pool_B = ImagePool(t.pool_size, self.pool_rng), ImagePool(t.pool_size, self.pool_rng)
        self.nets = {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B}
        self.optimizers = {"G": self.opt_g, "D": self.opt_d}
        self.schedulers = {"G": self.sched_g, "D": self.sched_d}
        self.pools = {"A": self.pool_A, "B": self.pool_B}

    def forward(self, real_A, real_B):
        self.real_A, self.real_B = real_A, real_B
        self.fake_B = self.G_A(real_A)  # G(A)
        self.rec_A = self.G_B(self.fake_B)  # F(G(A))
        self.fake_A = self.G_B(real_B)  # F(B)
        self.rec_B = self.G_A(self.fake_A)  # G(F(B))

    def backward_G(self) -> dict:
        t = self.t
        lam_idt = t.lambda_idt * t.lambda_cyc
        for d in (self.D_A, self.D_B):
            d.requires_grad_(False)
        cyc_A = F.l1_loss(self.rec_A.float(), self.real_A)
        cyc_B = F.l1_loss(self.rec_B.float(), self.real_B)
        # Unweighted, so trials with different lambda_cyc compare on one scale (the sweep's criterion).
        self.cycle_l1 = float(0.5 * (cyc_A + cyc_B).detach())
        losses = {
            "G_A": lsgan(self.D_A(self.fake_B), True),
            "G_B": lsgan(self.D_B(self.fake_A), True),
            "cycle_A": cyc_A * t.lambda_cyc,
            "cycle_B": cyc_B * t.lambda_cyc,
        }
        if lam_idt > 0:
            losses["idt_A"] = F.l1_loss(self.G_A(self.real_B).float(), self.real_B) * lam_idt
            losses["idt_B"] = F.l1_loss(self.G_B(self.real_A).float(), self.real_A) * lam_idt
        if t.lambda_paired > 0:  # the batches are aligned pairs: G(A) should match its own dev twin
            losses["paired_A"] = shift_tolerant_l1(self.fake_B, self.real_B, t.paired_max_shift) * t.lambda_paired
        self.acc.backward(sum(losses.values()))
        for d in (self.D_A, self.D_B):
            d.requires_grad_(True)
        return losses

    def backward_D_basic(self, D, real, fake) -> torch.Tensor:
        loss = 0.5 * (lsgan(D(real), True) + lsgan(D(fake.detach()), False))
        self.acc.backward(loss)
        return loss

    def optimize_parameters(self, real_A, real_B) -> dict[str, float]:
        """One micro-batch. Under accelerate's accumulate(), step() and zero_grad() act only on the last
        micro-batch of an optimiser step, so gradients are zeroed after each step, never before a backward."""
        with self.acc.autocast():
            self.forward(real_A, real_B)
            losses = self.backward_G()
            self.opt_g.step()
            self.opt_g.zero_grad(set_to_none=True)
            losses["D_A"] = self.backward_D_basic(self.D_A, self.real_B, self.pool_B.query(self.fake_B))
            losses["D_B"] = self.backward_D_basic(self.D_B, self.real_A, self.pool_A.query(self.fake_A))
            self.opt_d.step()
            self.opt_d.zero_grad(set_to_none=True)
        self.step_schedulers()
        out = {k: float(v.detach()) for k, v in losses.items()}
        out["cycle_l1"] = self.cycle_l1
        return out

    def cycle(self, images: np.ndarray) -> np.ndarray:
        """F(G(x)) for uint8 (n, h, w, 3) schnell images."""
        G, Fb = self.plain(self.G_A), self.plain(self.G_B)
        return enhance_array(Fb, enhance_array(G, images, device=self.acc.device), device=self.acc.device)


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along width and height of (b, c, h, w)."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def gradient_loss(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """L1 between image gradients: the output keeps the input's edges (its content), not its colours."""
    (ox, oy), (rx, ry) = image_gradients(out.float()), image_gradients(ref.float())
    return F.l1_loss(ox, rx) + F.l1_loss(oy, ry)


def build_lpips(net: str, weights: str | None, device) -> tuple[torch.nn.Module | None, str]:
    """LPIPS with its backbone from a local torchvision state dict; (None, reason) when there is none.

    lpips' own linear layers ship in its wheel; the AlexNet/VGG backbone would be downloaded,
    which is impossible offline, and a random backbone would make LPIPS meaningless.

    Returns:
        (module or None, a status string recorded in MLflow and head.json).
    """
    if not weights:
        return None, "unavailable (train.lpips_weights is not set); using L1 to the target instead"
    if not os.path.isfile(weights):
        return None, f"unavailable (train.lpips_weights={weights!r} does not exist); using L1 to the target instead"
    import lpips

    if weights.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(weights)
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    with warnings.catch_warnings():  # lpips asks torchvision with the deprecated `pretrained=` argument
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    # lpips splits torchvision's `features` into slices but keeps the layer indices: slice2.3.weight = features.3.weight.
    wanted = {k: "features." + k.split(".", 1)[1] for k in model.net.state_dict()}
    missing = [v for v in wanted.values() if v not in state]
    if missing:
        raise ValueError(f"train.lpips_weights={weights!r} is not a torchvision {net} state dict (no {missing[0]})")
    try:
        model.net.load_state_dict({k: state[v] for k, v in wanted.items()})
    except RuntimeError as e:
        raise ValueError(f"train.lpips_weights={weights!r} does not fit lpips net={net!r}: {str(e).splitlines()[-1].strip()}") from None
    return model.to(device).eval().requires_grad_(False), f"{net}: {weights}"


class Paired(Trainer):
    """The U-Net+CBAM baseline on aligned (schnell, dev) crops: gradient loss to the input + LPIPS to the target."""

    head_name = "G"

    def __init__(self, cfg: Config, accelerator):
        t = cfg.train
        torch.manual_seed(cfg.seed)
        self.t = t
        G = init_weights(build_generator(t.model, **generator_kwargs(cfg)))
        if t.channels_last:
            G.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(G.parameters(), lr=t.lr, betas=(t.beta1, 0.999))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_decay(t))
        self.G, self.opt, self.sched = accelerator.prepare(G, opt, sched)
        self.acc = accelerator
        self.lpips, self.lpips_status = build_lpips(t.lpips_net, t.lpips_weights, accelerator.device)
        self.loss_names = ["grad", "lpips" if self.lpips is not None else "l1"]
        self.nets, self.optimizers, self.schedulers, self.pools = {"G": self.G}, {"G": self.opt}, {"G": self.sched}, {}

    def optimize_parameters(self, schnell, dev) -> dict[str, float]:
        t = self.t
        with self.acc.autocast():
            out = self.G(schnell)
            losses = {"grad": gradient_loss(out, schnell) * t.lambda_grad}
            if self.lpips is not None:
                losses["lpips"] = self.lpips(out.float(), dev).mean() * t.lambda_lpips
            else:
                losses["l1"] = F.l1_loss(out.float(), dev) * t.lambda_l1
            self.acc.backward(sum(losses.values()))
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        self.step_schedulers()
        return {k: float(v.detach()) for k, v in losses.items()}


def build_trainer(cfg: Config, accelerator) -> Trainer:
    return CycleGAN(cfg, accelerator) if cfg.train.model in CYCLE_MODELS else Paired(cfg, accelerator)


def head_dir(cfg: Config) -> Path:
    return Path(cfg.paths.models) / "head"


def checkpoint_dir(cfg: Config) -> Path:
    return Path(cfg.paths.models) / "checkpoints"


def architecture(cfg: Config) -> dict:
    """What a checkpoint must share with the run resuming it (tensor shapes and meaning)."""
    t = cfg.train
    return {"model": t.model, "kwargs": generator_kwargs(cfg), "ndf": t.ndf if t.model in CYCLE_MODELS else None}


def make_accelerator(mixed_precision: str, grad_accum: int = 1, compile_backend: str | None = None):
    """accelerate owns device placement, precision, gradient accumulation and torch.compile."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # accelerate keeps a process-wide state; a second training in one process (tests, benchmarks)
    # with another precision must start from a clean one.
    AcceleratorState._reset_state(reset_partial_state=True)
    # step_scheduler_with_optimizer=False: accelerate would otherwise step the schedule once per
    # process per step, decaying num_processes times too fast for our per-step schedule.
    return Accelerator(mixed_precision="no" if mixed_precision == "fp32" else mixed_precision,
                       gradient_accumulation_steps=grad_accum, dynamo_backend=compile_backend,
                       cpu=not torch.cuda.is_available(), step_scheduler_with_optimizer=False)


def load_data(cfg: Config):
    """(train rows, held-out rows, A, B); A and B are the decoded images, or None when worker processes
    decode them from the files (train.num_workers > 0)."""
    t = cfg.train
    manifest = validated_manifest(cfg.paths.data)
    train_rows, holdout_rows = split(manifest, t.holdout_fraction)
    if len(train_rows) < 2:
        raise ValueError(f"only {len(train_rows)} training pairs after the held-out split; generate more")
    if t.num_workers:
        return train_rows, holdout_rows, None, None
    A = to_tensor(load_images(train_rows["schnell_path"]))  # (n, 3, h, w), domain A: schnell-like
    B = to_tensor(load_images(train_rows["dev_path"]))  # domain B: dev-like
    if t.crop is not None and A.shape[-1] < t.crop:
        raise ValueError(f"images are {A.shape[-1]} px, smaller than train.crop={t.crop}")
    return train_rows, holdout_rows, A, B


def find_resume(cfg: Config) -> tuple[dict, dict, Path] | None:
    """The newest checkpoint, verified and checked against this run's architecture; None if there is none."""
    found = checkpoint.list_checkpoints(checkpoint_dir(cfg))
    if not found:
        return None
    tensors, meta = checkpoint.load(found[-1])
    mine, theirs = architecture(cfg), meta.get("architecture")
    if theirs != mine:
        raise ValueError(f"checkpoint {found[-1]} is for {theirs}, but this run builds {mine}; "
                         f"set train.resume=false to start over or restore the matching train.* params")
    return tensors, meta, found[-1]


@contextlib.contextmanager
def mlflow_run(cfg: Config, parent_run_id: str | None, resume_run_id: str | None, run_name: str = "train"):
    """The run this training logs into: the resumed one, a child of a sweep, or a new one."""
    if resume_run_id:
        mlflow = tracking.setup(cfg)
        if mlflow.tracking.MlflowClient().search_runs([mlflow.get_experiment_by_name(cfg.paths.experiment).experiment_id],
                                                     f"attributes.run_id = '{resume_run_id}'"):
            with tracking.run(cfg, "train", run_id=resume_run_id) as active:
                yield active
            return
    if parent_run_id:
        mlflow = tracking.setup(cfg)
        with mlflow.start_run(run_name=run_name, nested=True, parent_run_id=parent_run_id,
                              tags={"facerealism.stage": "train", "git_commit": tracking.git_commit()}) as active:
            yield active
        return
    with tracking.run(cfg, "train") as active:
        yield active


def train(cfg: Config, parent_run_id: str | None = None, run_name: str = "train") -> dict:
    """Train the configured head, checkpointing full state; save it under models/head.

    Args:
        cfg: the resolved config (train.* picks the model, losses, schedule, resume).
        parent_run_id: log as a nested MLflow run under this one (the sweep).
        run_name: the MLflow run name of a nested run.
    Returns:
        A short summary; the full history goes to reports/train.json.
    """
    from accelerate.utils import set_seed

    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    train_rows, holdout_rows, A, B = load_data(cfg)
    resume = find_resume(cfg) if t.resume else None  # verified before anything is built or written
    set_seed(cfg.seed)
    accelerator = make_accelerator(t.mixed_precision, t.grad_accum, t.compile_backend if t.compile else None)
    model = build_trainer(cfg, accelerator)
    # Each process draws its own batches; rank 0 keeps the seed so one process matches a plain run.
    seed = cfg.seed if accelerator.process_index == 0 else [cfg.seed, accelerator.process_index]
    if t.num_workers:
        start = resume[1]["step"] * t.grad_accum if resume else 0  # micro-batches already consumed
        sampler = FileSampler(train_rows, cfg, accelerator.device, seed, start)
    else:
        sampler = Sampler(A, B, cfg, accelerator.device, seed)
    history: list[dict] = []
    start_step, run_token, resumed_from, prior_seconds = 0, uuid.uuid4().hex, None, 0.0
    window = max(1, t.steps // 10)
    cycle_tail: list[float] = []  # unweighted cycle L1 of the last `window` steps
    if resume:
        tensors, meta, resumed_from = resume
        # Each rank continues its own batch stream, pools and RNGs (rank 0's are the checkpoint's plain keys).
        tensors, meta = checkpoint.for_rank(tensors, meta, accelerator.process_index, accelerator.num_processes)
        model.load_state(tensors, meta["trainer"])
        if isinstance(sampler, Sampler):  # a FileSampler's data order is a function of the step: set above
            sampler.rng.bit_generator.state = meta["sampler_rng"]
        checkpoint.set_rng_state(tensors, meta["rng"])  # last: building the model above consumed RNG
        start_step, run_token, history = meta["step"], meta["run_token"], meta["history"]
        cycle_tail, prior_seconds = meta["cycle_tail"], meta["seconds"]

    def save_checkpoint(step: int, seconds: float) -> None:
        """On every rank (they send rank 0 their own RNGs and pools); rank 0 alone writes."""
        ranks = checkpoint.gather_ranks(accelerator, *checkpoint.rank_state(model, sampler))
        if not accelerator.is_main_process:
            return
        tensors, trainer_meta = model.state()
        rng_tensors, rng_meta = checkpoint.rng_state()
        rank_tensors, rank_meta = checkpoint.pack_ranks(ranks)
        checkpoint.save(checkpoint_dir(cfg), step, {**tensors, **rng_tensors, **rank_tensors}, {
            **rank_meta, "run_token": run_token, "architecture": architecture(cfg), "trainer": trainer_meta,
            "sampler_rng": sampler.rng.bit_generator.state if isinstance(sampler, Sampler) else None,
            "rng": rng_meta, "history": history,
            "cycle_tail": cycle_tail, "seconds": seconds, "mlflow_run_id": mlrun.info.run_id, "config": cfg.dump()})

    is_main = accelerator.is_main_process
    resume_run = resume[1].get("mlflow_run_id") if resume else None
    run_ctx = mlflow_run(cfg, parent_run_id, resume_run, run_name) if is_main else contextlib.nullcontext()
    with run_ctx as mlrun:
        continued = is_main and resume_run is not None and mlrun.info.run_id == resume_run
        if is_main and not continued:
            tracking.log_config(cfg)
            tracking.log_params({"train_pairs": len(train_rows), "holdout_pairs": len(holdout_rows),
                                 "output_mode": output_mode(cfg)})
            if isinstance(model, Paired):
                tracking.log_params({"lpips": model.lpips_status})
        if is_main and resumed_from:
            tracking.log_params({f"resumed_from_step_{start_step}": str(resumed_from)})
        held = holdout_rows if len(holdout_rows) else train_rows
        sample = load_images(held["schnell_path"][:8])
        grid_every = t.grid_every or -(-len(train_rows) // (t.batch_size * t.grad_accum))  # 0: once per epoch
        start = time.perf_counter()
        data_seconds = 0.0
        with progress() as bar:
            task = bar.add_task(f"train [{t.model}]", total=t.steps, completed=start_step)
            for step in range(start_step + 1, t.steps + 1):
                micro = []
                for _ in range(t.grad_accum):
                    t0 = time.perf_counter()
                    real_A, real_B = sampler.next()
                    data_seconds += time.perf_counter() - t0
                    with accelerator.accumulate(*model.nets.values()):
                        micro.append(model.optimize_parameters(real_A, real_B))
                losses = {k: float(np.mean([m[k] for m in micro])) for k in micro[0]}
                if is_main and step % grid_every == 0 and step < t.steps:
                    tracking.log_image(image_grid([sample, model.preview(sample)], ["schnell", "G(schnell)"]),
                                       "train_samples", step)
                if "cycle_l1" in losses and step > t.steps - window:
                    cycle_tail.append(losses["cycle_l1"])
                if step % t.log_every == 0 or step == t.steps:
                    losses["lr"] = model.schedulers["G"].get_last_lr()[0]
                    losses["steps_per_s"] = (step - start_step) / (time.perf_counter() - start)
                    history.append({"step": step, **losses})
                    if is_main:
                        tracking.log_metrics({f"train.{k}": v for k, v in losses.items()}, step=step)
                if step % t.checkpoint_every == 0 and step < t.steps:
                    save_checkpoint(step, prior_seconds + time.perf_counter() - start)
                    accelerator.wait_for_everyone()
                bar.advance(task)
        elapsed = time.perf_counter() - start
        sampler.close()
        trained = t.steps - start_step
        # Every rank must end with rank 0's weights: DDP averaged the same gradients into each.
        ranks = checkpoint.check_ranks_agree([r for _, r in checkpoint.gather_ranks(accelerator, {}, {
            "rank": accelerator.process_index, "steps": trained, "digest": checkpoint.state_digest(
                {k: model.plain(v) for k, v in model.nets.items()})})])
        summary = {"model": t.model, "output_mode": output_mode(cfg), "steps": t.steps, "rank": accelerator.process_index,
                   "ranks": ranks,
                   "mlflow_run_id": mlrun.info.run_id if is_main else None,
                   "resumed_from_step": start_step if resume else None,
                   "seconds": round(prior_seconds + elapsed, 1),
                   "steps_per_s": round(trained / elapsed, 2) if trained else None,
                   "data_wait_fraction": round(data_seconds / elapsed, 4) if trained else None,
                   "train_pairs": len(train_rows), "holdout_pairs": len(holdout_rows)}
        if not is_main:
            return summary
        G = model.head()
        rows, labels = [sample, enhance_array(G, sample)], ["schnell", "G(schnell)"]
        if isinstance(model, Paired):
            rows, labels = rows + [load_images(held["dev_path"][:8])], labels + ["dev (target)"]
            summary["lpips"] = model.lpips_status
        else:
            summary["final_cycle_l1"] = round(float(np.mean(cycle_tail)), 6) if cycle_tail else None
            summary["holdout_cycle_ssim"] = round(cycle_ssim(model, load_images(
                held["schnell_path"][: t.sweep.holdout_images])), 4)
            tracking.log_metrics({"train.final_cycle_l1": summary["final_cycle_l1"],
                                  "train.holdout_cycle_ssim": summary["holdout_cycle_ssim"]})
        grid = save_grid(Path(cfg.paths.reports) / "train_samples.png", rows, labels)
        tracking.log_artifact(grid)
        if summary["data_wait_fraction"] is not None:
            tracking.log_metrics({"train.data_wait_fraction": summary["data_wait_fraction"]})
        save_head(G, head_dir(cfg), t.model, generator_kwargs(cfg),
                  {"config": cfg.dump(), "mlflow_run_id": mlrun.info.run_id, "train_pairs": len(train_rows),
                   "holdout_pairs": len(holdout_rows), "residual_output": t.residual_output,
                   "output_mode": output_mode(cfg), "steps": t.steps, "resumed_from_step": summary["resumed_from_step"],
                   **({"lpips": model.lpips_status} if isinstance(model, Paired) else {})})
    final = history[-1] if history else {}
    summary["final_losses"] = {k: round(v, 4) for k, v in final.items() if k in model.loss_names}
    write_json(Path(cfg.paths.reports) / "train.json", {**summary, "history": history})
    return summary


def cycle_ssim(model: CycleGAN, images: np.ndarray) -> float:
    """Mean SSIM between held-out inputs x and their full cycle F(G(x)); low means content was lost."""
    from skimage.metrics import structural_similarity

    rec = model.cycle(images)
    return float(np.mean([structural_similarity(x, r, channel_axis=-1, data_range=255) for x, r in zip(images, rec)]))


def baseline_config(cfg: Config, model: str) -> Config:
    """The same training settings with another architecture, in models/baselines/MODEL and reports/baselines/MODEL."""
    out = cfg.model_copy(deep=True)
    out.train.model, out.train.baselines = model, []
    out.paths.models = str(baselines_dir(cfg) / model)
    out.paths.reports = str(Path(cfg.paths.reports) / "baselines" / model)
    return out


def baselines_dir(cfg: Config) -> Path:
    return Path(cfg.paths.models) / "baselines"


def run(cfg: Config) -> dict:
    """Train train.model, then each of train.baselines with the same settings as nested MLflow runs."""
    summary = train(cfg)
    trained = {}
    for model in cfg.train.baseline_models:  # on every rank: each training is one DDP job
        b = train(baseline_config(cfg, model), parent_run_id=summary["mlflow_run_id"], run_name=f"baseline {model}")
        trained[model] = {"head": str(baselines_dir(cfg) / model / "head"), "seconds": b["seconds"],
                          "final_losses": b.get("final_losses")}
    if summary["rank"] != 0:  # rank 0 writes the reports
        return summary
    # Written even when empty: the DVC output exists, and evaluate reads which baselines belong to this run.
    write_json(baselines_dir(cfg) / "baselines.json", {"model": cfg.train.model, "baselines": trained})
    report = Path(cfg.paths.reports) / "train.json"
    write_json(report, {**read_json(report), "baselines": trained})
    return {**summary, "baselines": list(trained)}
