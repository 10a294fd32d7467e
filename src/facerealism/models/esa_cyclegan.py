"""CycleGAN ResNet generator with Enhanced Spatial Attention (ESA-CycleGAN) and the ESA block."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from facerealism.errors import UserError


class ESA(nn.Module):
    """Enhanced Spatial Attention, the block of RFANet / RFDN (Liu et al., 2020).

    A cheap, large-receptive-field spatial mask: squeeze channels to C/4, shrink the map
    (stride-2 conv, then max-pool 7/3), process it, upsample back and gate the input.
    Layout and layer names follow RFDN's reference `ESA` so its counts match (~185 k
    parameters at C=256).
    """

    def __init__(self, channels: int):
        super().__init__()
        f = max(channels // 4, 1)
        self.conv1 = nn.Conv2d(channels, f, 1)  # reduce C -> f
        self.conv_f = nn.Conv2d(f, f, 1)  # skip from the reduced features
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv_max = nn.Conv2d(f, f, 3, padding=1)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv3_ = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, channels, 1)  # expand f -> C

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        c1_ = self.conv1(x)  # (b, f, h, w)
        # The stride-2 conv has no padding (as in RFDN); replicate-pad maps smaller than its
        # 3x3 window so tiny bottlenecks (e.g. 2x2 from a 8x8 crop) still work.
        c1 = self.conv2(_pad_to(c1_, 3, mode="replicate"))  # (b, f, ~h/2, ~w/2)
        # max_pool(7, 3) errors on maps smaller than 7 (ceil_mode does not help there).
        # Padding with -inf is invisible to a max, so small maps pool to their global max.
        c1 = _pad_to(c1, 7, mode="constant", value=float("-inf"))
        v_max = F.max_pool2d(c1, kernel_size=7, stride=3)  # (b, f, h', w')
        v_range = F.relu(self.conv_max(v_max))
        c3 = F.relu(self.conv3(v_range))
        c3 = self.conv3_(c3)  # (b, f, h', w')
        c3 = F.interpolate(c3, size=(h, w), mode="bilinear", align_corners=False)  # (b, f, h, w)
        cf = self.conv_f(c1_)  # (b, f, h, w)
        m = torch.sigmoid(self.conv4(c3 + cf))  # (b, C, h, w) mask in (0, 1)
        return x * m


def _pad_to(x: torch.Tensor, size: int, mode: str, value: float = 0.0) -> torch.Tensor:
    """Pad the bottom/right of x so both spatial sides are at least `size`."""
    ph, pw = max(size - x.shape[-2], 0), max(size - x.shape[-1], 0)
    if ph == 0 and pw == 0:
        return x
    if mode == "constant":
        return F.pad(x, (0, pw, 0, ph), mode="constant", value=value)
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _norm(channels: int) -> nn.Module:
    # CycleGAN's default: InstanceNorm without affine or running stats (so convs keep biases).
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """CycleGAN residual block: x + (pad, conv3, IN, ReLU, pad, conv3, IN)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN ResNet generator (Zhu et al., 2017), optionally with ESA after each block.

    ESA-CycleGAN does not publish its exact layout; here an RFDN-style ESA block follows
    every residual block (`esa=True`), which adds ~1.66 M parameters at ngf=64, 9 blocks.

    Upsampling uses nearest x2 + 3x3 conv instead of the reference ConvTranspose2d: same
    parameter count, but no checkerboard artifacts (Odena et al., 2016), which a prototype
    here produced with transposed convs.

    Args:
        in_ch, out_ch: image channels; images are in [-1, 1], h and w divisible by 4.
        ngf: width of the first layer (x2 per downsampling, 4*ngf at the bottleneck).
        n_blocks: residual blocks at the bottleneck (9 for 256 px in the paper).
        esa: put an ESA block after each residual block.
        residual_output: return clamp(x + body(x), -1, 1) with a zero-initialised last
            conv, so the network starts as the exact identity; else tanh(body(x)).
        detail: (with residual_output) the body predicts two maps (a, b) instead of an RGB residual and
            the output is x + sum_k [band_k(Y) * (a_k * x + b_k) + c_k * band_k(x)]: detail of the input's own luminance, amplified where the
            body says and tinted by the pixel's colour, so the head can add grain and strands but cannot
            paint colour speckle (measured: the free RGB residual did, on faces and on photographs).
    """

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        esa: bool = True,
        residual_output: bool = False,
        detail: bool = False,
        detail_colour: bool = True,
        detail_noise: bool = False,
    ):
        super().__init__()
        if residual_output and in_ch != out_ch:
            raise UserError(f"residual_output needs in_ch == out_ch, got {in_ch} and {out_ch}")
        if detail and not (residual_output and in_ch == 3):
            raise UserError("detail needs residual_output=True and RGB images (in_ch == out_ch == 3)")
        self.residual_output, self.detail = residual_output, detail

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_ch, ngf, 7),
            _norm(ngf),
            nn.ReLU(inplace=True),
        ]
        for mult in (1, 2):  # two stride-2 downsamplings: ngf -> 2ngf -> 4ngf
            c = ngf * mult
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), _norm(2 * c), nn.ReLU(inplace=True)]
        for _ in range(n_blocks):
            layers.append(ResnetBlock(4 * ngf))
            if esa:
                layers.append(ESA(4 * ngf))
        for mult in (4, 2):  # two x2 upsamplings: 4ngf -> 2ngf -> ngf
            c = ngf * mult
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c, c // 2, 3, padding=1),
                _norm(c // 2),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ReflectionPad2d(3)]
        self.body = nn.Sequential(*layers)
        self.luma_detail = LumaDetail(colour=detail_colour, noise=detail_noise) if detail else None
        self.out_conv = nn.Conv2d(ngf, self.luma_detail.n_maps if detail else out_ch, 7)
        if residual_output:
            zero_init_(self.out_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape  # (b, in_ch, h, w) in [-1, 1]
        if h % 4 or w % 4:
            raise UserError(f"ResnetGenerator needs h and w divisible by 4, got {h}x{w}")
        feats = self.body(x)  # (b, ngf, h + 6, w + 6): reflection-padded for the 7x7 output conv
        y = self.out_conv(feats)  # (b, out_ch, h, w); detail: (b, 9 or 6, h, w) maps a_k, b_k(, c_k)
        if self.luma_detail is not None:
            return self.luma_detail(x, y)
        if self.residual_output:
            return torch.clamp(x + y, -1.0, 1.0)
        return torch.tanh(y)


class LumaDetail(nn.Module):
    """x + sum_k [band_k(Y) * (a_k * x + b_k) + c_k * band_k(x)] on [0, 1] values: a detail head's output.

    band_k are the levels of a difference-of-Gaussians pyramid (sigma 0.7, 1.4, 2.8 px) of the luminance Y
    or of each RGB channel: fine grain, strands and catchlights, then coarser pores and edges. `a_k * x`
    tints added luminance detail with the pixel's own colour (grain on skin stays skin-coloured), `b_k`
    adds it as grey, and `c_k` amplifies the image's own colour detail (sharper colour edges). Every term
    scales detail the input already has, so the head can neither paint speckle nor invent structure.
    The maps come from the network, per pixel; zero maps give the identity. `colour=False` drops the c_k term:
    only luminance detail is added (tinted by the pixel's colour), so the head cannot sharpen colour edges or lift
    chroma noise that a photograph's compression left in it.

    `noise=True` injects texture that is not in the input: each band of a fresh white-noise luminance field z is
    added as band_k(z) * (d_k * x + e_k), with d_k, e_k two more maps per band. FLUX.1-dev re-renders pores and
    strands from noise, a new instance that follows the content; amplifying schnell's own faint instance is not the
    only way to get them, and on a photograph that already has full detail, noise does not sharpen edges or lift
    chroma. z is resampled every call in training; in eval mode it comes from a generator seeded with `noise_seed`,
    so one image gets the same output every time.
    """

    SIGMAS = (0.7, 1.4, 2.8)

    def __init__(self, colour: bool = True, noise: bool = False, noise_seed: int = 0):
        super().__init__()
        self.colour, self.noise, self.noise_seed = colour, noise, noise_seed
        for i, sigma in enumerate(self.SIGMAS):
            r = int(3 * sigma + 0.5)
            t = torch.arange(-r, r + 1, dtype=torch.float32)
            k = torch.exp(-0.5 * (t / sigma) ** 2)
            self.register_buffer(f"kernel{i}", (k / k.sum()).view(1, 1, 1, -1), persistent=False)
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)

    @property
    def maps_per_band(self) -> int:
        return (3 if self.colour else 2) + (2 if self.noise else 0)

    @property
    def n_maps(self) -> int:
        return self.maps_per_band * len(self.SIGMAS)

    def noise_bands(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Difference-of-Gaussians bands of a white-noise field (b, 1, h, w), each scaled to unit std."""
        b, _, h, w = x.shape
        generator = None if self.training else torch.Generator(device=x.device).manual_seed(self.noise_seed)
        z = torch.randn((b, 1, h, w), generator=generator, device=x.device, dtype=torch.float32).to(x.dtype)
        return [band / (band.std(dim=(2, 3), keepdim=True) + 1e-6) for band in self.bands(z)]

    def blur(self, y: torch.Tensor, i: int) -> torch.Tensor:
        """Separable Gaussian blur number i of each channel of y (b, c, h, w), edges replicated."""
        b, c, h, w = y.shape
        k = getattr(self, f"kernel{i}").to(y.dtype)
        r = k.shape[-1] // 2
        y = y.reshape(b * c, 1, h, w)
        y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k)
        return F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.transpose(-1, -2)).reshape(b, c, h, w)

    def bands(self, y: torch.Tensor) -> list[torch.Tensor]:
        """Difference-of-Gaussians levels of y (b, c, h, w), finest first; each channel on its own."""
        levels = [y] + [self.blur(y, i) for i in range(len(self.SIGMAS))]
        return [levels[i] - levels[i + 1] for i in range(len(self.SIGMAS))]

    def forward(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        x01 = (x + 1.0) / 2.0  # (b, 3, h, w) in [0, 1]
        y = (x01 * self.luma.to(x.dtype)).sum(1, keepdim=True)  # (b, 1, h, w)
        out = x01
        m = self.maps_per_band
        bands_rgb = self.bands(x01) if self.colour else [None] * len(self.SIGMAS)
        bands_z = self.noise_bands(y) if self.noise else [None] * len(self.SIGMAS)
        for k, (band_y, band_rgb, band_z) in enumerate(zip(self.bands(y), bands_rgb, bands_z)):
            own = maps[:, m * k : m * (k + 1)]  # this band's maps: a, b(, c)(, d, e)
            out = out + band_y * (own[:, 0:1] * x01 + own[:, 1:2])  # (b, 3, h, w)
            if self.colour:
                out = out + own[:, 2:3] * band_rgb
            if self.noise:
                out = out + band_z * (own[:, -2:-1] * x01 + own[:, -1:])
        return torch.clamp(2.0 * out - 1.0, -1.0, 1.0)


def zero_init_(conv: nn.Conv2d) -> None:
    """Zero a conv and mark it so `init_weights` leaves it at zero (identity at init)."""
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    conv.zero_init = True
