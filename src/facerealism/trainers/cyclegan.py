"""The (ESA-)CycleGAN trainer: image pool, LSGAN, the optional shift-tolerant paired term, the step top to bottom.

Paper symbols -> code names (as in the reference CycleGAN):
    G: A -> B   = G_A        F: B -> A   = G_B
    D_Y judges B = D_A       D_X judges A = D_B
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F

from facerealism.config import Config
from facerealism.config.architectures import generator_kwargs
from facerealism.data.split import load_images
from facerealism.head import enhance_array
from facerealism.metrics.paired import ssim_pairs
from facerealism.models import build_discriminator, build_generator, init_weights
from facerealism.models.patchgan import lowpass
from facerealism.trainers.base import Trainer, linear_decay


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

    def query_global(self, images: torch.Tensor, accelerator) -> torch.Tensor:
        """query() as one process training the global batch would answer it, for this rank's slice of that batch.

        Every rank gathers all ranks' images (rank order) and queries its copy of the pool with them, so the copies
        fill at the global rate and stay identical (same seed, same queries); each rank keeps its own slice. A pool
        per rank, fed its own slice only, showed each critic another, staler history than one process would.

        Args:
            images: (b, 3, h, w), this rank's micro-batch (the same b on every rank).
        Returns:
            (b, 3, h, w), detached.
        """
        if accelerator.num_processes == 1:
            return self.query(images)
        b, rank = images.shape[0], accelerator.process_index
        everyone = accelerator.gather(images.detach().contiguous())  # (num_processes * b, 3, h, w)
        return self.query(everyone)[rank * b : (rank + 1) * b]


def lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    return F.mse_loss(pred.float(), torch.full_like(pred.float(), 1.0 if real else 0.0))


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


class CycleGAN(Trainer):
    """Two generators, two discriminators, their optimisers; the step reads top to bottom."""

    head_name = "G_A"
    has_discriminators = True

    def __init__(self, cfg: Config, accelerator):
        t = cfg.train
        torch.manual_seed(cfg.seed)
        self.t = t
        # The terms this run optimises, no others: train.json, head.json and the model card list them.
        self.loss_names = ["D_A", "G_A", "cycle_A", "D_B", "G_B", "cycle_B"]
        if t.lambda_idt * t.lambda_cyc > 0:
            self.loss_names += ["idt_A", "idt_B"]
        if t.lambda_paired > 0:
            self.loss_names.append("paired_A")
        nets = {
            "G_A": build_generator(t.model, **generator_kwargs(t)),
            "G_B": build_generator(t.model, **generator_kwargs(t)),
            "D_A": build_discriminator(t.discriminator, ndf=t.ndf, n_layers=t.d_layers),
            "D_B": build_discriminator(t.discriminator, ndf=t.ndf, n_layers=t.d_layers),
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
        # The same seed on every rank: with the same queries (ImagePool.query_global) every rank holds the same pools.
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
            fake, dev = lowpass(self.fake_B, t.paired_lowpass_sigma), lowpass(self.real_B, t.paired_lowpass_sigma)
            losses["paired_A"] = shift_tolerant_l1(fake, dev, t.paired_max_shift) * t.lambda_paired
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
            losses["D_A"] = self.backward_D_basic(self.D_A, self.real_B, self.pool_B.query_global(self.fake_B, self.acc))
            losses["D_B"] = self.backward_D_basic(self.D_B, self.real_A, self.pool_A.query_global(self.fake_A, self.acc))
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

    def final_metrics(self, held, cycle_tail: list[float]) -> dict:
        """The unweighted cycle L1 of the last steps and the cycle SSIM on validation schnell images."""
        return {"final_cycle_l1": round(float(np.mean(cycle_tail)), 6) if cycle_tail else None,
                "validation_cycle_ssim": round(cycle_ssim(self, load_images(
                    held["schnell_path"][: self.t.cycle_ssim_images])), 4)}


def cycle_ssim(model: CycleGAN, images: np.ndarray) -> float:
    """Mean SSIM between held-out inputs x and their full cycle F(G(x)); low means content was lost."""
    return float(np.mean(ssim_pairs(images, model.cycle(images))))
