"""Preset z-image: Z-Image-Turbo (8 NFE, no CFG) -> Z-Image (50 steps, CFG 4), both Apache-2.0."""

# The pair shares the Qwen3-4B text encoder (shared/qwen3_4b.json, as FLUX.2 klein's) and the VAE.

from __future__ import annotations

from pathlib import Path

import torch

from facerealism.presets.preset import Family, Preset
from facerealism.presets.tiny import eval_mode, qwen3_config, qwen_tokenizer, save

CAPTION_TOKENS = 64  # Z-Image keeps only the prompt's real tokens (chat template included), padded to 32s


def _denoiser_call(module, size: int, batch: int):
    lat, e = size // 8, lambda *s: torch.empty(*s, device="meta")  # noqa: E731
    return lambda: module([e(16, 1, lat, lat)] * batch, e(batch), [e(CAPTION_TOKENS, 2560)] * batch)


def _pipeline_parts() -> dict:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return {"tokenizer": qwen_tokenizer(), "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0)}


# Z-Image runs the bare Qwen3 model (no LM head) and CFG from guidance > 0, batched.
Z_IMAGE = Family(name="z_image", denoiser="z_image_transformer", encoders={"qwen3_4b": 512}, vae="z_image_vae",
                 denoiser_key="transformer", cfg_batched=True, negative_encoded=True, cfg_threshold=0.0,
                 int_strength=False, denoiser_call=_denoiser_call, pipeline_parts=_pipeline_parts,
                 encoder_module=lambda module: module.model, causal_encoder=True)


def z_image_components(seed: int, shared_seed: int) -> dict:
    """ZImagePipeline components: the single-stream Z-Image DiT, a Qwen3 encoder, a FLUX.1-style VAE."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel
    from transformers import Qwen3Model

    tokenizer = qwen_tokenizer()
    torch.manual_seed(seed)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=32, n_layers=2, n_refiner_layers=1, n_heads=2,
        n_kv_heads=2, norm_eps=1e-5, qk_norm=True, cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0,
        axes_dims=[8, 4, 4], axes_lens=[256, 32, 32])
    with torch.no_grad():  # created with torch.empty: fixed here so the weights are a function of the seed
        transformer.x_pad_token.fill_(1.0)
        transformer.cap_pad_token.fill_(1.0)
    torch.manual_seed(shared_seed + 1)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=0.3611,
                        shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
    torch.manual_seed(shared_seed + 2)
    text_encoder = Qwen3Model(qwen3_config(tokenizer, 2))
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    return eval_mode({"transformer": transformer, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
                  "scheduler": scheduler})


def tiny_components(seed: int, shared_seed: int, fast: bool) -> dict:
    """Turbo and Base share the architecture: only the seed tells them apart."""
    return z_image_components(seed, shared_seed)


def build_tiny(out: Path, seed: int) -> dict:
    """Tiny Z-Image-Turbo and Z-Image pipelines under out: generate.diffusers overrides."""
    from diffusers import ZImagePipeline

    return {"fast_model": save(ZImagePipeline, tiny_components(seed + 10, seed, True), out / "turbo"),
            "slow_model": save(ZImagePipeline, tiny_components(seed + 20, seed, False), out / "base")}


PRESET = Preset(name="z-image", family=Z_IMAGE, models=("Z-Image-Turbo", "Z-Image"), summary="Z-Image-Turbo -> Z-Image",
                licence="Apache-2.0 / Apache-2.0", tiny_components=tiny_components, build_tiny=build_tiny)
