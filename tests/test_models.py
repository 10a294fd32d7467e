"""Fast tests of the head architectures and their factory (tiny widths, 32-64 px)."""

import math
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from facerealism.models import (
    DISCRIMINATORS,
    ESA,
    GENERATORS,
    PatchDiscriminator,
    ResnetGenerator,
    UNetCBAM,
    build_discriminator,
    build_generator,
    init_weights,
)

# Tiny constructor arguments per generator name: enough structure to exercise every path.
TINY = {
    "esa_resnet": dict(ngf=8, n_blocks=2),
    "resnet": dict(ngf=8, n_blocks=2),
    "unet_cbam": dict(base=8, depth=3),
}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def first_conv(m: nn.Module) -> nn.Conv2d:
    return next(c for c in m.modules() if isinstance(c, nn.Conv2d))


def images(b: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g) * 2 - 1  # in [-1, 1]


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_output_shape(name, size):
    torch.manual_seed(0)
    g = build_generator(name, **TINY[name])
    assert g(images(size=size)).shape == (2, 3, size, size)


def test_unet_depth6_reaches_1x1_bottleneck_at_32px():
    torch.manual_seed(0)
    g = UNetCBAM(base=8, depth=6)
    assert g(images(size=32)).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_residual_output_is_exact_identity_at_init(name):
    torch.manual_seed(0)
    g = build_generator(name, residual_output=True, **TINY[name])
    x = images()
    with torch.no_grad():
        assert torch.equal(g(x), x)
        init_weights(g)  # must keep the zero-initialised output conv at zero
        assert torch.equal(g(x), x)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_tanh_output_lies_in_range(name):
    torch.manual_seed(0)
    g = build_generator(name, residual_output=False, **TINY[name])
    with torch.no_grad():
        y = g(images() * 50)  # out-of-range input pushes pre-activations to saturate
    assert y.abs().max() <= 1.0
    assert not torch.equal(y, images() * 50)


def test_esa_adds_parameters_and_changes_output():
    torch.manual_seed(0)
    plain = ResnetGenerator(ngf=8, n_blocks=2, esa=False)
    torch.manual_seed(0)
    with_esa = ResnetGenerator(ngf=8, n_blocks=2, esa=True)
    assert n_params(with_esa) - n_params(plain) == 2 * n_params(ESA(32))
    x = images()
    with torch.no_grad():
        assert not torch.allclose(plain(x), with_esa(x))


@pytest.mark.parametrize("side", [1, 2, 4, 8])
def test_esa_works_on_tiny_maps(side):
    # 4x4 / 8x8 are the bottlenecks of 16 / 32 px crops; max_pool(7, 3) alone fails there.
    torch.manual_seed(0)
    esa = ESA(16)
    x = torch.randn(2, 16, side, side, requires_grad=True)
    y = esa(x)
    y.sum().backward()
    assert y.shape == x.shape
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


def _assert_grad_reaches_first_conv(model: nn.Module, out: torch.Tensor) -> None:
    model.zero_grad()
    out.square().mean().backward()
    grad = first_conv(model).weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize("residual", [False, True])
def test_gradients_reach_first_conv_of_generators(name, residual):
    torch.manual_seed(0)
    g = build_generator(name, residual_output=residual, **TINY[name])
    x = images(size=32) * 0.5  # away from the clamp at +-1
    if residual:
        # At init only the zero output conv gets a gradient (it blocks the rest);
        # after its first update gradients flow through the whole body.
        g(x).square().mean().backward()
        assert g.out_conv.weight.grad.abs().sum() > 0
        with torch.no_grad():
            g.out_conv.weight.normal_(0, 0.02)
    _assert_grad_reaches_first_conv(g, g(x) - x)


def test_gradients_reach_first_conv_of_discriminator():
    torch.manual_seed(0)
    d = build_discriminator("patchgan", ndf=8)
    _assert_grad_reaches_first_conv(d, d(images(size=32)))


@pytest.mark.parametrize("size, side", [(32, 2), (64, 6)])
def test_patchgan_returns_a_patch_map(size, side):
    torch.manual_seed(0)
    d = PatchDiscriminator(ndf=8)
    assert d(images(size=size)).shape == (2, 1, side, side)


def test_patchgan_rejects_too_small_input_with_min_size():
    d = PatchDiscriminator(ndf=8)
    assert d(images(size=24)).shape == (2, 1, 1, 1)
    with pytest.raises(ValueError, match="at least 24x24"):
        d(images(size=16))


def test_factory_raises_on_unknown_name_listing_known_names():
    with pytest.raises(ValueError, match="known: esa_resnet, resnet, unet_cbam"):
        build_generator("cyclegan")
    with pytest.raises(ValueError, match="known: patchgan, patchgan_highpass"):
        build_discriminator("nlayer")


def test_factory_maps_names_to_architectures():
    assert any(isinstance(m, ESA) for m in build_generator("esa_resnet", **TINY["resnet"]).modules())
    assert not any(isinstance(m, ESA) for m in build_generator("resnet", **TINY["resnet"]).modules())
    assert isinstance(build_generator("unet_cbam", **TINY["unet_cbam"]), UNetCBAM)
    assert set(DISCRIMINATORS) == {"patchgan", "patchgan_highpass"}
    with pytest.raises(TypeError):  # the name fixes `esa`; a contradicting kwarg must not win
        build_generator("resnet", esa=True)


def test_unet_rejects_non_divisible_size_naming_the_multiple():
    g = UNetCBAM(base=8, depth=3)
    with pytest.raises(ValueError, match="divisible by 4"):
        g(images(size=34))


def test_resnet_rejects_size_not_divisible_by_4():
    g = ResnetGenerator(ngf=8, n_blocks=1)
    with pytest.raises(ValueError, match="divisible by 4"):
        g(images(size=34))


def test_init_weights_matches_cyclegan_normal_init():
    torch.manual_seed(0)
    g = init_weights(UNetCBAM(base=8, depth=2, residual_output=False))
    w = first_conv(g).weight
    assert abs(w.std().item() - 0.02) < 0.005
    norm = next(m for m in g.modules() if isinstance(m, nn.GroupNorm))
    assert torch.allclose(norm.weight, torch.ones_like(norm.weight), atol=0.1)
    assert not torch.equal(norm.weight, torch.ones_like(norm.weight))


def test_full_size_parameter_counts():
    # Built on the meta device: no memory, no init cost. 11,378,179 is the reference
    # CycleGAN resnet_9blocks; ESA after each block adds 9 x 184,960.
    with torch.device("meta"):
        assert n_params(ResnetGenerator(ngf=64, n_blocks=9, esa=False)) == 11_378_179
        assert n_params(ResnetGenerator(ngf=64, n_blocks=9, esa=True)) == 13_042_819
        assert n_params(PatchDiscriminator()) == 2_764_737


def test_luminance_only_detail_leaves_pure_colour_detail_alone():
    """detail_colour=False: a texture of chroma only (constant luminance) has no luminance bands to amplify, so even
    large maps leave it exactly as it was; with the colour term the same maps change it."""
    from facerealism.models.esa_cyclegan import LumaDetail, ResnetGenerator

    g = torch.Generator().manual_seed(0)
    chroma = torch.randn(1, 1, 16, 16, generator=g) * 0.1
    x = torch.cat([0.5 + chroma, 0.5 - chroma * 0.299 / 0.587, torch.full_like(chroma, 0.5)], 1)  # Y = 0.5 everywhere
    x = x * 2 - 1  # [-1, 1]
    luma_only, with_colour = LumaDetail(colour=False), LumaDetail(colour=True)
    assert luma_only.n_maps == 6 and with_colour.n_maps == 9
    assert torch.allclose(luma_only(x, torch.full((1, 6, 16, 16), 3.0)), x, atol=1e-5)
    assert (with_colour(x, torch.full((1, 9, 16, 16), 3.0)) - x).abs().max() > 0.05
    head = ResnetGenerator(ngf=8, n_blocks=1, residual_output=True, detail=True, detail_colour=False)
    assert head.out_conv.out_channels == 6 and torch.equal(head(x), x)  # zero-initialised: the identity


def test_noise_injection_adds_texture_a_flat_image_does_not_have():
    """detail_noise: a flat grey image has no detail for the gain maps to amplify, so the plain detail head leaves it
    flat whatever its maps; noise maps paint new grey grain there. Eval mode draws the same noise every call (one
    image, one output), training resamples it; zero maps are the identity."""
    from facerealism.models.esa_cyclegan import LumaDetail

    flat = torch.zeros(2, 3, 16, 16)  # mid grey in [-1, 1]
    plain, noisy = LumaDetail(), LumaDetail(noise=True).eval()
    assert noisy.n_maps == 15
    assert torch.allclose(plain(flat, torch.full((2, 9, 16, 16), 3.0)), flat, atol=1e-6)
    grey_grain = torch.zeros(2, 15, 16, 16)
    grey_grain[:, 4] = 0.05  # e_0: finest noise band, added as grey
    out = noisy(flat, grey_grain)
    assert out.std() > 0.02  # texture where the input had none
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])  # luminance only
    assert not torch.equal(out[0], out[1])  # each image of a batch its own instance
    assert torch.equal(noisy(flat, grey_grain), out)  # eval: deterministic
    noisy.train()
    assert not torch.equal(noisy(flat, grey_grain), out)  # training: a new instance every step
    assert torch.equal(noisy(flat, torch.zeros(2, 15, 16, 16)), flat)


def test_highpass_critic_sees_texture_on_the_scale_of_content():
    """patchgan_highpass: one logit map like the PatchGAN's; its extra channels are the high-pass, zero on a flat
    image and carrying faint grain at `gain` times its size."""
    from facerealism.models import build_discriminator

    d = build_discriminator("patchgan_highpass", ndf=8, n_layers=2, gain=4.0)
    plain = build_discriminator("patchgan", ndf=8, n_layers=2)
    x = torch.zeros(2, 3, 32, 32)
    assert d(x).shape == plain(x).shape
    assert d.net[0].in_channels == 6
    seen = []
    d.net[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    d(x)
    assert seen[-1][:, 3:].abs().max() == 0
    grain = 0.01 * torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    d(x + grain)
    assert seen[-1][:, 3:].std() > 2 * grain.std()


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lowpass_is_torchvisions_gaussian_blur_bit_for_bit(sigma, dtype):
    """lowpass writes torchvision's blur out (to spare each process its import); the critic must see the same view."""
    from torchvision.transforms.functional import gaussian_blur

    from facerealism.models.patchgan import lowpass

    x = torch.rand(2, 3, 24, 20, generator=torch.Generator().manual_seed(0)).to(dtype) * 2 - 1
    k = 2 * math.ceil(3 * sigma) + 1
    assert torch.equal(lowpass(x, sigma), gaussian_blur(x, kernel_size=k, sigma=sigma))
    assert torch.equal(lowpass(x, 0), x) and not torch.equal(lowpass(x, sigma), x)


def test_building_and_running_the_high_pass_critic_does_not_import_torchvision():
    code = ("import sys, torch; from facerealism.models import build_discriminator; "
            "build_discriminator('patchgan_highpass', ndf=8, n_layers=2)(torch.zeros(1, 3, 32, 32)); "
            "assert 'torchvision' not in sys.modules, 'torchvision imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
