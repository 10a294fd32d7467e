"""U-Net with a residual block and CBAM attention at every level: the paired baseline."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from facerealism.errors import UserError
from facerealism.models.esa_cyclegan import zero_init_


def _norm(channels: int) -> nn.Module:
    # GroupNorm, not InstanceNorm: the bottleneck of a small crop is 1x1 (32 px at depth 6),
    # where InstanceNorm raises; GroupNorm is also independent of the batch size.
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResBlock(nn.Module):
    """x + (conv3, GN, ReLU, conv3, GN); zero padding so 1x1 bottleneck maps work."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): channel, then spatial gating."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        hidden = max(channels // reduction, 4)  # keep the MLP useful for narrow test widths
        self.mlp = nn.Sequential(  # shared by the avg- and max-pooled descriptors
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = F.adaptive_avg_pool2d(x, 1)  # (b, C, 1, 1)
        mx = F.adaptive_max_pool2d(x, 1)  # (b, C, 1, 1)
        x = x * torch.sigmoid(self.mlp(avg) + self.mlp(mx))  # channel attention
        s = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # (b, 2, h, w)
        return x * torch.sigmoid(self.spatial(s))  # spatial attention


class UNetCBAM(nn.Module):
    """Paired image-to-image baseline: U-Net, each level = ResBlock + CBAM, skip by concat.

    Widths double per level from `base` and are capped at 8*base (as pix2pix caps at
    8*ngf), which keeps depth 6 at ~10.2 M parameters instead of ~45 M.

    Args:
        in_ch, out_ch: image channels; images are in [-1, 1].
        base: width of the top level.
        depth: number of levels; h and w must be divisible by 2**(depth-1).
        residual_output: return clamp(x + body(x), -1, 1) with a zero-initialised last
            conv (exact identity at init); else tanh(body(x)).
    """

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 3,
        base: int = 32,
        depth: int = 6,
        residual_output: bool = True,
    ):
        super().__init__()
        if depth < 1:
            raise UserError(f"depth must be >= 1, got {depth}")
        if residual_output and in_ch != out_ch:
            raise UserError(f"residual_output needs in_ch == out_ch, got {in_ch} and {out_ch}")
        self.depth = depth
        self.multiple = 2 ** (depth - 1)
        self.residual_output = residual_output
        widths = [base * min(2**i, 8) for i in range(depth)]

        self.stem = nn.Conv2d(in_ch, widths[0], 3, padding=1)
        self.down = nn.ModuleList()  # down[i] maps level i -> i+1 (stride-2 conv)
        self.enc = nn.ModuleList()
        for i, c in enumerate(widths):
            if i > 0:
                self.down.append(nn.Conv2d(widths[i - 1], c, 3, stride=2, padding=1))
            self.enc.append(nn.Sequential(ResBlock(c), CBAM(c)))
        self.up = nn.ModuleList()  # up[i] maps level i+1 -> i (nearest x2 + conv, no checkerboard)
        self.fuse = nn.ModuleList()  # 1x1 conv over [upsampled, skip]
        self.dec = nn.ModuleList()
        for i in range(depth - 1):
            c = widths[i]
            self.up.append(
                nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(widths[i + 1], c, 3, padding=1))
            )
            self.fuse.append(nn.Conv2d(2 * c, c, 1))
            self.dec.append(nn.Sequential(ResBlock(c), CBAM(c)))
        self.out_conv = nn.Conv2d(widths[0], out_ch, 3, padding=1)
        if residual_output:
            zero_init_(self.out_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]  # x: (b, in_ch, h, w) in [-1, 1]
        if h % self.multiple or w % self.multiple:
            raise UserError(
                f"UNetCBAM(depth={self.depth}) needs height and width divisible by "
                f"{self.multiple}, got {h}x{w}; crop or pad the input to a multiple of {self.multiple}"
            )
        z = self.enc[0](self.stem(x))  # (b, base, h, w)
        skips = [z]
        for i in range(1, self.depth):
            z = self.enc[i](self.down[i - 1](z))  # (b, widths[i], h / 2**i, w / 2**i)
            skips.append(z)
        for i in reversed(range(self.depth - 1)):
            z = self.up[i](z)  # (b, widths[i], h / 2**i, w / 2**i)
            z = self.dec[i](self.fuse[i](torch.cat([z, skips[i]], dim=1)))
        y = self.out_conv(z)  # (b, out_ch, h, w)
        if self.residual_output:
            return torch.clamp(x + y, -1.0, 1.0)
        return torch.tanh(y)
