"""The paired U-Net+CBAM trainer: gradient loss to the input plus LPIPS (or L1) to the dev target."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from facerealism.config import Config
from facerealism.config.architectures import generator_kwargs
from facerealism.data.split import load_images
from facerealism.metrics.paired import load_lpips
from facerealism.models import build_generator, init_weights
from facerealism.trainers.base import Trainer, linear_decay


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along width and height of (b, c, h, w)."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def gradient_loss(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """L1 between image gradients: the output keeps the input's edges (its content), not its colours."""
    (ox, oy), (rx, ry) = image_gradients(out.float()), image_gradients(ref.float())
    return F.l1_loss(ox, rx) + F.l1_loss(oy, ry)


def build_lpips(net: str, weights: str | None, device) -> tuple[torch.nn.Module | None, str]:
    """LPIPS with its backbone from a local torchvision state dict (train.lpips_weights); (None, reason) without one.

    Training never downloads: without the file it falls back to L1 to the target, and says so.

    Returns:
        (module or None, a status string recorded in MLflow and head.json).
    """
    if not weights:
        return None, "unavailable (train.lpips_weights is not set); using L1 to the target instead"
    if not os.path.isfile(weights):
        return None, f"unavailable (train.lpips_weights={weights!r} does not exist); using L1 to the target instead"
    return load_lpips(net, weights, "train.lpips_weights").to(device), f"{net}: {weights}"


class Paired(Trainer):
    """The U-Net+CBAM baseline on aligned (schnell, dev) crops: gradient loss to the input + LPIPS to the target."""

    head_name = "G"

    def __init__(self, cfg: Config, accelerator):
        t = cfg.train
        torch.manual_seed(cfg.seed)
        self.t = t
        G = init_weights(build_generator(t.model, **generator_kwargs(t)))
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

    def params(self) -> dict:
        return {"lpips": self.lpips_status}

    def preview_targets(self, held) -> list[tuple[np.ndarray, str]]:
        return [(load_images(held["dev_path"][:8]), "dev (target)")]
