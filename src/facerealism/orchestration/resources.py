"""What a profile needs, from pairs x image size x steps (disk, RAM, GPU-hours), and what this machine has.

Preflight prints the estimate and fails a config that cannot fit the machine, naming the key to change. The sizes are
arithmetic on the config; the constants below are measurements (or, for the GPU's speed, a stated assumption).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from facerealism.config import Config
from facerealism.errors import UserError

GB = 1e9
# PNG bytes per pixel of a photograph at 512 px: skimage's astronaut 1.62, coffee 1.77, chelsea 1.42, rocket 1.14,
# immunohistochemistry 1.79, retina 1.10 (resized to 512², saved by PIL). The largest, so the disk estimate errs high.
PNG_BYTES_PER_PIXEL = 1.8
# Peak RSS of a spawned DataLoader worker of FileSampler (python + torch + facerealism.trainers.samplers), measured
# with /usr/bin/time on this machine: 0.82 GB.
WORKER_RSS = 0.82 * GB
# Assumed, not measured (no GPU was lent to this work): an H100 sustaining 40 % of its 989 TFLOP/s dense bf16 peak.
# GPU-hours below are FLOPs at this speed; a measured img/s (`facerealism gpu-bench`) replaces the assumption.
H100_BF16_PEAK_TFLOPS = 989.0
ASSUMED_UTILISATION = 0.4
ASSUMED_TFLOPS = H100_BF16_PEAK_TFLOPS * ASSUMED_UTILISATION
# FLUX.1 VAE FLOPs per 512² image, counted on the meta device (facerealism.speed.flops); convolutions scale with pixels.
VAE_DECODE_512, VAE_ENCODE_512 = 2.515e12, 1.117e12


@dataclass(frozen=True)
class Machine:
    """What the machine running the pipeline offers."""

    ram_bytes: float
    disk_free_bytes: float
    disk_where: str  # the folder whose filesystem was measured

    @classmethod
    def this(cls, cfg: Config) -> "Machine":
        """This machine: physical memory (or the cgroup's limit, if lower) and the free disk under paths.data."""
        import psutil

        ram = float(psutil.virtual_memory().total)
        limit = Path("/sys/fs/cgroup/memory.max")
        if limit.is_file() and limit.read_text().strip().isdigit():
            ram = min(ram, float(limit.read_text()))
        where = Path(cfg.paths.data).resolve()
        while not where.exists():  # the data folder may not exist yet: its nearest existing parent's filesystem
            where = where.parent
        return cls(ram, float(shutil.disk_usage(where).free), str(where))


@dataclass(frozen=True)
class Needs:
    """A profile's needs; bytes and hours are estimates, pair counts are the split fractions' expectations."""

    pairs: int
    train_pairs: float
    test_pairs: float
    side: int  # the side the head trains on (train.crop or generate.size)
    images_to_render: int  # both images of each pair not on disk yet, and the reference images
    disk_bytes: float  # images still to render (PNG) + two kept checkpoints
    train_ram_bytes: float  # training batches in flight (decoded per batch from disk), plus the decode workers
    generate_tflop_per_pair: float | None  # None: not estimated for this backend
    train_tflop_per_step: float | None  # None: the head does not build

    @property
    def generate_gpu_hours(self) -> float | None:
        return None if self.generate_tflop_per_pair is None else self.generate_tflop_per_pair * self.pairs / ASSUMED_TFLOPS / 3600

    def train_gpu_hours(self, steps: int) -> float | None:
        return None if self.train_tflop_per_step is None else self.train_tflop_per_step * steps / ASSUMED_TFLOPS / 3600


def flux_step_flop(c: dict, size: int, text_tokens: int) -> float:
    """FLOPs of one FLUX transformer call on one image (MMDiT, config keys of configs/flux1/transformer_*.json).

    Every block, double or single, spends 24 d² FLOPs per token in its linears (double: qkv 6, out 2, MLP 16 per
    stream; single: qkv 6, proj_mlp 8, proj_out 10) and 4 t² d in attention over all t tokens; the embedders add
    the text projection and the 64-channel patch in and out. Matches FlopCounterMode on the meta device to 0.1 %.
    """
    d = c["num_attention_heads"] * c["attention_head_dim"]
    img = (size // 16) ** 2  # 8x VAE downsampling, then 2x2 patches
    t = img + text_tokens
    blocks = c["num_layers"] + c["num_single_layers"]
    return (blocks * (24 * d * d * t + 4 * t * t * d) + 2 * c["joint_attention_dim"] * d * text_tokens
            + 2 * 2 * c["in_channels"] * d * img)


def t5_flop(c: dict, tokens: int) -> float:
    """FLOPs of the T5 encoder on one prompt: per layer q, k, v, o and a gated FF (3 matrices), plus attention."""
    inner = c["num_heads"] * c["d_kv"]
    per_token = c["num_layers"] * (8 * c["d_model"] * inner + 6 * c["d_model"] * c["d_ff"])
    return tokens * per_token + c["num_layers"] * 4 * tokens * tokens * inner


def generate_flop_per_pair(cfg: Config) -> float | None:
    """FLOPs of one (schnell, dev) pair of backend flux; None for backends not estimated (diffusers, synthetic).

    The synthetic backend paints on the CPU; diffusers pipelines vary by model (`facerealism preset-flops`)."""
    g = cfg.generate
    if g.backend != "flux":
        return None
    from facerealism.speed.flops import FLUX_TRANSFORMER, T5_XXL
    from facerealism.speed.preset_flops import img2img_steps

    c, n = g.flux, g.size
    vae = (n / 512) ** 2
    text = t5_flop(T5_XXL, c.max_sequence_length)
    schnell = text + c.fast_steps * flux_step_flop(FLUX_TRANSFORMER, n, c.max_sequence_length) + VAE_DECODE_512 * vae
    dev = (text + img2img_steps(c.slow_steps, c.strength, False) * flux_step_flop(FLUX_TRANSFORMER, n, c.max_sequence_length)
           + (VAE_ENCODE_512 + VAE_DECODE_512) * vae)
    return schnell + dev


def train_flop_per_step(cfg: Config, side: int) -> tuple[float, int]:
    """(FLOPs of one optimiser step, parameters of all nets), counted on the meta device at the training side.

    CycleGAN, per image: G runs 4 times (G(A), F(G(A)), F(B), G(F(B))) plus 2 with the identity term; the critics 6
    times (2 in G's loss, real and pooled fake for each in D's). A backward costs ~2 forwards: x3. The paired baseline:
    one G forward and backward.
    """
    import torch

    from facerealism.config.architectures import ARCHITECTURES, generator_kwargs
    from facerealism.models import build_discriminator, build_generator
    from facerealism.speed.flops import count_flops

    t = cfg.train
    with torch.device("meta"):
        G = build_generator(t.model, **generator_kwargs(t))
        g = count_flops(lambda: G(torch.empty(1, 3, side, side)))
        params = 2 * sum(p.numel() for p in G.parameters())
        if ARCHITECTURES[t.model].trainer != "cyclegan":
            return 3.0 * g * t.batch_size * t.grad_accum, params // 2
        D = build_discriminator(t.discriminator, ndf=t.ndf, n_layers=t.d_layers)
        d = count_flops(lambda: D(torch.empty(1, 3, side, side)))
        params += 2 * sum(p.numel() for p in D.parameters())
    g_calls = 4 + (2 if t.lambda_idt > 0 else 0)
    return 3.0 * (g_calls * g + 6 * d) * t.batch_size * t.grad_accum, params


def rendered_pairs(cfg: Config) -> int:
    """Pairs already on disk (their dev image exists): generate skips them, so they need no new space."""
    from facerealism.data import catalog

    dev = catalog.PAIRS.path(cfg) / "dev"
    return sum(1 for e in os.scandir(dev) if e.name.endswith(".png")) if dev.is_dir() else 0


def estimate(cfg: Config) -> Needs:
    """The profile's needs (see Needs); counts only, nothing is built but meta-device nets."""
    t, s = cfg.train, cfg.split
    pairs = cfg.prompts.n_enriched + cfg.prompts.n_baseline
    train_pairs = pairs * (1 - s.holdout_fraction - s.validation_fraction)
    side = t.crop or cfg.generate.size
    image = 3 * cfg.generate.size ** 2  # values per image
    to_render = max(pairs - rendered_pairs(cfg), 0) * 2 + cfg.generate.reference_count
    try:
        step_flop, params = train_flop_per_step(cfg, side)
    except (UserError, RuntimeError):  # a head that does not build: preflight's train check names why
        step_flop, params = None, 0
    # A checkpoint: weights + Adam's two moments (fp32) and both image pools (fp32 at the training side); two are kept.
    checkpoint = 4 * 3 * params + 2 * t.pool_size * 3 * side ** 2 * 4
    batch = t.batch_size * 2 * 3 * side ** 2 * 4  # one batch of (A, B) float32 crops
    if t.num_workers == 0:  # this process decodes each batch's images, one at a time (trainers.samplers.Sampler)
        ram = batch + image
    else:  # each worker prefetches 2 batches (DataLoader's prefetch_factor)
        ram = t.num_workers * (WORKER_RSS + 2 * batch)
    flop = generate_flop_per_pair(cfg)
    return Needs(pairs=pairs, train_pairs=train_pairs, test_pairs=pairs * s.holdout_fraction, side=side,
                 images_to_render=to_render,
                 disk_bytes=to_render * cfg.generate.size ** 2 * PNG_BYTES_PER_PIXEL + 2 * checkpoint,
                 train_ram_bytes=ram, generate_tflop_per_pair=None if flop is None else flop / 1e12,
                 train_tflop_per_step=None if step_flop is None else step_flop / 1e12)
