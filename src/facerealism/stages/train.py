"""Stage `train`: unpaired ESA-CycleGAN (or plain CycleGAN) head, schnell-like (A) -> dev-like (B).

Paper symbols -> code names (as in the reference CycleGAN):
    G: A -> B   = G_A        F: B -> A   = G_B
    D_Y judges B = D_A       D_X judges A = D_B
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facerealism import tracking
from facerealism.config import Config
from facerealism.data import load_images, split, to_tensor, validated_manifest
from facerealism.files import write_json
from facerealism.grids import save_grid
from facerealism.head import enhance_array, save_head
from facerealism.models import build_discriminator, build_generator, init_weights
from facerealism.progress import progress

LOSS_NAMES = ["D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B"]


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
    return {"ngf": t.ngf, "n_blocks": t.n_blocks, "residual_output": t.residual_output}


def random_crops(images: torch.Tensor, idx: np.ndarray, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """A batch of random crops with random horizontal flips; images (n, 3, h, w)."""
    _, _, h, w = images.shape
    out = []
    for i in idx:
        y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
        patch = images[i, :, y : y + crop, x : x + crop]
        out.append(patch.flip(-1) if rng.random() < 0.5 else patch)
    return torch.stack(out)  # (b, 3, crop, crop)


def lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    return F.mse_loss(pred.float(), torch.full_like(pred.float(), 1.0 if real else 0.0))


class CycleGAN:
    """Two generators, two discriminators, their optimisers; the step reads top to bottom."""

    def __init__(self, cfg: Config, accelerator):
        t = cfg.train
        torch.manual_seed(cfg.seed)
        self.t = t
        nets = {
            "G_A": build_generator(t.model, **generator_kwargs(cfg)),
            "G_B": build_generator(t.model, **generator_kwargs(cfg)),
            "D_A": build_discriminator("patchgan", ndf=t.ndf, n_layers=3),
            "D_B": build_discriminator("patchgan", ndf=t.ndf, n_layers=3),
        }
        for net in nets.values():
            init_weights(net)
        opt_g = torch.optim.Adam(list(nets["G_A"].parameters()) + list(nets["G_B"].parameters()), lr=t.lr, betas=(t.beta1, 0.999))
        opt_d = torch.optim.Adam(list(nets["D_A"].parameters()) + list(nets["D_B"].parameters()), lr=t.lr, betas=(t.beta1, 0.999))
        decay_from = int(t.steps * t.decay_start)
        # Constant, then linear decay to zero: the reference CycleGAN schedule, counted in steps.
        rule = lambda step: 1.0 - max(0, step - decay_from) / max(1, t.steps - decay_from)  # noqa: E731
        sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, rule)
        sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, rule)
        prepared = accelerator.prepare(nets["G_A"], nets["G_B"], nets["D_A"], nets["D_B"], opt_g, opt_d, sched_g, sched_d)
        self.G_A, self.G_B, self.D_A, self.D_B, self.opt_g, self.opt_d, self.sched_g, self.sched_d = prepared
        self.acc = accelerator
        rng = random.Random(cfg.seed)
        self.pool_A, self.pool_B = ImagePool(t.pool_size, rng), ImagePool(t.pool_size, rng)

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
        losses = {
            "G_A": lsgan(self.D_A(self.fake_B), True),
            "G_B": lsgan(self.D_B(self.fake_A), True),
            "cycle_A": F.l1_loss(self.rec_A.float(), self.real_A) * t.lambda_cyc,
            "cycle_B": F.l1_loss(self.rec_B.float(), self.real_B) * t.lambda_cyc,
        }
        if lam_idt > 0:
            losses["idt_A"] = F.l1_loss(self.G_A(self.real_B).float(), self.real_B) * lam_idt
            losses["idt_B"] = F.l1_loss(self.G_B(self.real_A).float(), self.real_A) * lam_idt
        self.acc.backward(sum(losses.values()))
        for d in (self.D_A, self.D_B):
            d.requires_grad_(True)
        return losses

    def backward_D_basic(self, D, real, fake) -> torch.Tensor:
        loss = 0.5 * (lsgan(D(real), True) + lsgan(D(fake.detach()), False))
        self.acc.backward(loss)
        return loss

    def optimize_parameters(self, real_A, real_B) -> dict[str, float]:
        with self.acc.autocast():
            self.forward(real_A, real_B)
            self.opt_g.zero_grad(set_to_none=True)
            losses = self.backward_G()
            self.opt_g.step()
            self.opt_d.zero_grad(set_to_none=True)
            losses["D_A"] = self.backward_D_basic(self.D_A, self.real_B, self.pool_B.query(self.fake_B))
            losses["D_B"] = self.backward_D_basic(self.D_B, self.real_A, self.pool_A.query(self.fake_A))
            self.opt_d.step()
        self.sched_g.step()
        self.sched_d.step()
        return {k: float(v.detach()) for k, v in losses.items()}


def head_dir(cfg: Config) -> Path:
    return Path(cfg.paths.models) / "head"


def run(cfg: Config) -> dict:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed

    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    manifest = validated_manifest(cfg.paths.data)
    train_rows, holdout_rows = split(manifest, t.holdout_fraction)
    if len(train_rows) < 2:
        raise ValueError(f"only {len(train_rows)} training pairs after the held-out split; generate more")
    A = to_tensor(load_images(train_rows["schnell_path"]))  # (n, 3, h, w), domain A: schnell-like
    B = to_tensor(load_images(train_rows["dev_path"]))  # domain B: dev-like
    if A.shape[-1] < t.crop:
        raise ValueError(f"images are {A.shape[-1]} px, smaller than train.crop={t.crop}")
    set_seed(cfg.seed)
    # accelerate keeps a process-wide state; a second training in one process (tests, sweeps)
    # with another precision must start from a clean one.
    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(mixed_precision="no" if t.mixed_precision == "fp32" else t.mixed_precision, cpu=not torch.cuda.is_available())
    model = CycleGAN(cfg, accelerator)
    rng = np.random.default_rng(cfg.seed)
    history: list[dict] = []
    with tracking.run(cfg, "train") as mlrun:
        tracking.log_config(cfg)
        tracking.log_params({"train_pairs": len(train_rows), "holdout_pairs": len(holdout_rows)})
        start = time.perf_counter()
        with progress() as bar:
            task = bar.add_task(f"train [{t.model}]", total=t.steps)
            for step in range(1, t.steps + 1):
                # Unpaired: A and B batches are drawn independently, never as pairs.
                real_A = random_crops(A, rng.integers(0, len(A), t.batch_size), t.crop, rng).to(accelerator.device)
                real_B = random_crops(B, rng.integers(0, len(B), t.batch_size), t.crop, rng).to(accelerator.device)
                losses = model.optimize_parameters(real_A, real_B)
                if step % t.log_every == 0 or step == t.steps:
                    losses["lr"] = model.sched_g.get_last_lr()[0]
                    losses["steps_per_s"] = step / (time.perf_counter() - start)
                    history.append({"step": step, **losses})
                    tracking.log_metrics({f"train.{k}": v for k, v in losses.items()}, step=step)
                bar.advance(task)
        G = accelerator.unwrap_model(model.G_A).float().cpu()
        sample = load_images(holdout_rows["schnell_path"][:8]) if len(holdout_rows) else load_images(train_rows["schnell_path"][:8])
        grid = save_grid(Path(cfg.paths.reports) / "train_samples.png", [sample, enhance_array(G, sample)],
                         ["schnell", "G(schnell)"])
        tracking.log_artifact(grid)
        elapsed = time.perf_counter() - start
        save_head(G, head_dir(cfg), t.model, generator_kwargs(cfg),
                  {"config": cfg.dump(), "mlflow_run_id": mlrun.info.run_id, "train_pairs": len(train_rows),
                   "holdout_pairs": len(holdout_rows)})
    final = history[-1] if history else {}
    summary = {"steps": t.steps, "seconds": round(elapsed, 1), "steps_per_s": round(t.steps / elapsed, 2),
               "train_pairs": len(train_rows), "holdout_pairs": len(holdout_rows),
               "final_losses": {k: round(v, 4) for k, v in final.items() if k in LOSS_NAMES}}
    write_json(Path(cfg.paths.reports) / "train.json", {**summary, "history": history})
    return summary
