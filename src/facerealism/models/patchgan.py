"""PatchGAN discriminators (pix2pix / CycleGAN 70x70 patch critic), plain and with a high-pass view."""

import math

import torch
import torch.nn as nn

from facerealism.errors import UserError


class PatchDiscriminator(nn.Module):
    """The PatchGAN of Isola et al. (2017): one real/fake logit per overlapping patch.

    Logits are raw (no sigmoid), so any GAN
    loss (LSGAN, BCE-with-logits, hinge) can sit on top.

    Args:
        in_ch: image channels.
        ndf: width of the first layer (x2 per layer, capped at 8*ndf).
        n_layers: number of stride-2 convs; 3 gives the 70x70 receptive field.
    """

    def __init__(self, in_ch: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        # No norm on the first layer (reference); InstanceNorm without affine, so convs keep biases.
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        c_prev = ndf
        for n in range(1, n_layers):
            c = ndf * min(2**n, 8)
            layers += [nn.Conv2d(c_prev, c, 4, stride=2, padding=1), _norm(c), nn.LeakyReLU(0.2, True)]
            c_prev = c
        c = ndf * min(2**n_layers, 8)
        layers += [nn.Conv2d(c_prev, c, 4, stride=1, padding=1), _norm(c), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(c, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)
        self.n_layers = n_layers
        self.min_size = _min_input_size(n_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]  # x: (b, in_ch, h, w)
        if min(h, w) < self.min_size:
            # InstanceNorm cannot normalise a 1x1 map; fail here with the size that works.
            raise UserError(
                f"PatchDiscriminator(n_layers={self.n_layers}) needs inputs of at least "
                f"{self.min_size}x{self.min_size}, got {h}x{w}"
            )
        return self.net(x)  # (b, 1, h', w'): 30x30 for 256, 2x2 for 32


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


def _min_input_size(n_layers: int) -> int:
    """Smallest side for which every normalised map has more than one pixel."""

    def conv(n: int, stride: int) -> int:  # k=4, p=1
        return (n + 2 - 4) // stride + 1

    size = 1
    while True:
        n = conv(size, 2)
        sides = []
        for _ in range(1, n_layers):
            n = conv(n, 2)
            sides.append(n)
        n = conv(n, 1)
        sides.append(n)
        if min(sides) >= 2 and conv(n, 1) >= 1:
            return size
        size += 1


class HighpassPatchDiscriminator(PatchDiscriminator):
    """A PatchGAN that sees each image beside its own high-pass (x - Gaussian blur of x, amplified).

    Texture is a small share of a portrait's energy; next to colour and shape, a plain critic learns it last. The
    high-pass channels put pores, strands and halos on the same scale as the content they must follow, which
    stays visible in the RGB channels.

    Args:
        sigma: Gaussian sigma (px) of the blur the high-pass is taken against.
        gain: factor on the high-pass channels.
        in_ch, ndf, n_layers: as PatchDiscriminator (in_ch counts the image's channels only).
    """

    def __init__(self, in_ch: int = 3, ndf: int = 64, n_layers: int = 3, sigma: float = 1.0, gain: float = 4.0):
        super().__init__(in_ch=2 * in_ch, ndf=ndf, n_layers=n_layers)
        self.sigma, self.gain = sigma, gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat([x, self.gain * (x - lowpass(x, self.sigma))], dim=1))


def lowpass(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (b, c, h, w) images (reflected borders); sigma 0 returns them unchanged. The high-pass critic's
    view and the trainer's low-pass paired term share it.

    torchvision's gaussian_blur op for op (tests/test_models.py checks that the output is bit-identical), written out
    because importing torchvision costs ~1.5 s in every process that builds this critic: the preflight of each
    `facerealism run` and `check`, each training rank, each worker.
    """
    if sigma <= 0:
        return images
    k = 2 * math.ceil(3 * sigma) + 1
    x = torch.linspace(-(k - 1) * 0.5, (k - 1) * 0.5, steps=k, dtype=images.dtype, device=images.device)
    pdf = torch.exp(-0.5 * (x / sigma).pow(2))
    kernel1d = pdf / pdf.sum()
    kernel = torch.mm(kernel1d[:, None], kernel1d[None, :]).expand(images.shape[-3], 1, k, k)  # (c, 1, k, k)
    padded = nn.functional.pad(images, [k // 2] * 4, mode="reflect")
    return nn.functional.conv2d(padded, kernel, groups=images.shape[-3])
