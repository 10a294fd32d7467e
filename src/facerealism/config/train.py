"""The `train` section: the head, its losses, its schedule and how it runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from facerealism.config.architectures import ArchName
from facerealism.config.base import Section


class TrainConfig(Section):
    model: ArchName = "esa_resnet"
    """esa_resnet: ResNet generator with ESA blocks (with tanh output, no detail head and no paired term: the paper's
    ESA-CycleGAN); resnet: the same without ESA (plain CycleGAN); unet_cbam: the paired U-Net+CBAM baseline. What a
    head is called follows from all of train.* (facerealism.config.architectures.recipe), not from this key alone."""
    ngf: int = Field(32, ge=4)
    """Generator width; slim so 2 CPU cores train it in minutes."""
    n_blocks: int = Field(4, ge=1)
    ndf: int = Field(32, ge=4)
    discriminator: Literal["patchgan", "patchgan_highpass"] = "patchgan_highpass"
    """Critic of both domains: the PatchGAN, or the PatchGAN that also sees each image's high-pass (texture on the
    scale of content). Recipe trials (validation, with lambda_idt 2.5): patchgan -> C2ST vs dev 0.937, highpass ->
    0.856."""
    d_layers: int = Field(3, ge=1, le=5)
    """Stride-2 layers of the critic: 3 judges 70-px patches (the whole 64-px image), 2 judges 34-px patches."""
    residual_output: bool = True
    """out = x + body(x), starting at the identity; a tanh head drowned in checkerboard noise on CPU."""
    detail: bool = True
    """(esa_resnet, resnet) the body predicts per-pixel gains of the input's own detail bands instead of an RGB
    residual, so the head amplifies grain that follows the content and cannot paint colour speckle (the RGB
    residual did, under the GAN loss)."""
    detail_colour: bool = True
    """(with detail) also amplify the input's own colour detail per channel; false adds luminance detail only (tinted
    by each pixel's colour), which cannot lift a photograph's chroma noise."""
    detail_noise: bool = False
    """(with detail) also add band-passed white noise, scaled per pixel and band by the network (noise injection):
    texture that is a new instance rather than schnell's own, amplified. Recipe trials: reports/trials.md."""
    lambda_paired: float = Field(100.0, ge=0)
    """(esa_resnet, resnet) weight of a shift-tolerant L1 from G(schnell) to its own dev twin; the pairs are aligned,
    and the unpaired losses alone left the head at C2ST 0.98-1.0 vs dev. Measured at 1000 steps (lr 5e-4, no identity
    loss): 10 -> C2ST vs dev 0.908, 100 -> 0.878 (the adversarial term then only regularises). 0: the paper's
    unpaired CycleGAN."""
    paired_max_shift: int = Field(1, ge=0, le=4)
    """Largest misalignment (px) the paired term forgives, like generate.synthetic.max_shift."""
    paired_lowpass_sigma: float = Field(1.0, ge=0)
    """Gaussian sigma (px) both sides of the paired term are blurred with first; 0: plain L1. Dev's pores and
    strands are a new instance, uncorrelated with anything in schnell, so an L1 on them pulls the head towards no
    texture at all; on the low-pass the pair still teaches tone, colour and shapes and leaves texture to the
    adversarial term. Recipe trials (validation, 1100 steps): 0 -> C2ST vs dev 0.874 with photo colour noise 1.10 and
    halos; 1.0 -> 0.914 / 0.896 / 0.901 over seeds 0-2, every photo rule met."""
    crop: int | None = Field(None, ge=16)
    """Random crop side; null trains on whole images. Measured: 32-px crops of 64-px images made the head paint a fixed blob
    into each crop's corner and stripes at full size (FD_diff spectral 8.3, C2ST vs dev 0.99);
    whole 64-px images train what inference sees (FD_diff 34.9, C2ST 0.67) at the same cost."""
    batch_size: int = Field(2, ge=1)
    """2 full images carry the pixels of 8 32-px crops, so a step costs the same."""
    steps: int = Field(400, ge=1)
    """Optimiser steps; 400 keep `make run` under 15 minutes on the slower machine of either CPU kind. Where bf16 is
    emulated, mixed_precision auto trains in fp32: the default recipe runs 1.4-1.6x slower per step there than bf16
    on a native machine (`python -m facerealism.bench.recipes`, one side-by-side run capped to AVX2, 2026-12-06), and
    `make run` trained at 0.59 steps/s in fp32 on an AMD EPYC Zen 3 (700 steps: 19.5 min). Training longer helps on
    the validation split (reports/trials.md, t21: 700 steps, C2ST vs dev 0.905; t19: 1100 steps, 0.856): raise it
    where time allows, e.g. `--set train.steps=700` on a machine with native bf16."""
    lr: float = Field(5e-4, gt=0)
    """Adam learning rate; the detail head's gains train faster than an RGB residual (measured 5e-4 vs 2e-4: C2ST vs dev
    0.918 vs 0.929 at 1000 steps, lambda_paired 30 vs 10)."""
    beta1: float = Field(0.5, ge=0, lt=1)
    lambda_cyc: float = Field(2.0, ge=0)
    """The paper's best cycle weight."""
    lambda_idt: float = Field(2.5, ge=0)
    """Identity loss weight as a fraction of lambda_cyc (reference CycleGAN convention). G(dev) = dev is what teaches
    the head to leave an already sharp image alone: on the photograph's edges at 512 px the head without it overshot
    by 2.7-4.6 grey levels (4 runs; the gate's ceiling is 4), with 2.5 by 1.5 (plain critic) / 2.4 (high-pass critic).
    It costs realism as it grows (validation C2ST vs dev, plain critic: 0 -> 0.90-0.91, 2.5 -> 0.937, 5 -> 0.955; at
    15 and above the head collapsed to the identity). With the RGB residual (train.detail false) 0.5 left colour
    speckle; use 1.0 there."""
    cycle_ssim_images: int = Field(16, ge=1)
    """Held-out schnell images scored for train.json's SSIM(x, F(G(x))) (the sweep's test of a failed trial)."""
    pool_size: int = Field(50, ge=0)
    decay_start: float = Field(0.5, ge=0, le=1)
    """Fraction of steps after which the learning rate decays linearly to 0."""
    mixed_precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto: bf16 autocast where the device computes bf16 in hardware (CUDA with bf16; CPUs with AVX-512 BF16 or
    AMX: 1.3-1.75x faster per step than fp32 on a 2-core AMX CPU at 128 px), fp32 elsewhere (a CPU that emulates
    bf16, e.g. AMD EPYC Zen 2 or 3, runs it 29-73x slower than fp32). The choice and its reason go to the log,
    MLflow and the model card (facerealism.precision). bf16 on such a CPU is allowed; preflight warns."""
    num_workers: int = Field(0, ge=0)
    """0: this process decodes the images each batch draws from their files; > 0: DataLoader worker processes do,
    while the step computes. Either way memory does not grow with the dataset (the paper's 140k pairs at 512 px)."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches accumulated per optimiser step (accelerate's gradient accumulation); the effective batch
    is batch_size x grad_accum x processes. train.steps counts optimiser steps."""
    channels_last: bool = False
    """Nets and batches in channels-last memory format (faster convolutions on GPUs with tensor cores; measured
    slower on this CPU: `python -m facerealism.bench.train`)."""
    compile: bool = False
    """torch.compile the nets through accelerate's dynamo plugin; costs a compile up front (minutes on 2 CPU cores)."""
    compile_backend: str = "inductor"
    """torch.compile backend when train.compile is on (inductor; eager/aot_eager only check the graph capture)."""
    baselines: list[ArchName] = Field(default_factory=list)
    """Architectures trained after train.model with the same settings, into models/baselines/NAME, as nested
    MLflow runs; evaluate adds them to Table 4 and records which head is best. train.model itself is skipped.
    Empty by default so `make run` fits 15 minutes; [resnet] adds the paper's plain CycleGAN (~6 min more)."""
    grid_every: int = Field(0, ge=0)
    """Steps between sample grids logged to MLflow (key train_samples, with its step); 0: once per epoch."""
    log_every: int = Field(50, ge=1)
    checkpoint_every: int = Field(250, ge=1)
    """Steps between full-state checkpoints in models/checkpoints (what train.resume continues from)."""
    resume: bool = False
    """Continue from the newest checkpoint in models/checkpoints (a fresh start when there is none)."""
    threads: int = Field(0, ge=0)
    """torch CPU threads; 0: OMP_NUM_THREADS where set, else every CPU this process may use (always set
    explicitly: the pipeline trains in a worker thread)."""
    unet_depth: int = Field(4, ge=1)
    """unet_cbam levels; train.crop must be divisible by 2**(unet_depth-1)."""
    lambda_grad: float = Field(1.0, ge=0)
    """unet_cbam: weight of L1 between the image gradients of output and input (keeps the content)."""
    lambda_lpips: float = Field(1.0, ge=0)
    """unet_cbam: weight of LPIPS(output, dev target)."""
    lambda_l1: float = Field(1.0, ge=0)
    """unet_cbam fallback when LPIPS is unavailable: weight of L1(output, dev target)."""
    lpips_net: Literal["alex", "vgg"] = "alex"
    """LPIPS backbone; train.lpips_weights must hold the matching torchvision state dict."""
    lpips_weights: str | None = None
    """Local torchvision AlexNet/VGG16 state dict (.pth or .safetensors); absent -> L1 fallback, recorded."""

    @model_validator(mode="after")
    def _unet_crop_divides(self) -> "TrainConfig":
        multiple = 2 ** (self.unet_depth - 1)
        if "unet_cbam" in (self.model, *self.baselines) and self.crop is not None and self.crop % multiple:
            raise ValueError(f"crop ({self.crop}) must be divisible by {multiple} for unet_depth={self.unet_depth}")
        return self

    @property
    def baseline_models(self) -> list[str]:
        """train.baselines without train.model itself (switching the model need not edit the list), once each."""
        return [m for m in dict.fromkeys(self.baselines) if m != self.model]
