"""Preset sd35-large: SD3.5 Large Turbo (4 steps, no CFG) -> SD3.5 Large (28 steps, CFG 3.5), Stability Community."""

# The pair shares CLIP-L, CLIP-G, T5-XXL and the VAE.

from __future__ import annotations

from pathlib import Path

import torch

from facerealism.backends.tiny_flux import _clip_tokenizer, _t5_tokenizer
from facerealism.presets.preset import Family, Preset
from facerealism.presets.tiny import clip, eval_mode, save


def _denoiser_call(module, size: int, batch: int):
    lat, e = size // 8, lambda *s: torch.empty(*s, device="meta")  # noqa: E731
    return lambda: module(hidden_states=e(batch, 16, lat, lat), encoder_hidden_states=e(batch, 77 + 256, 4096),
                          pooled_projections=e(batch, 2048), timestep=e(batch))


def _pipeline_parts() -> dict:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return {"tokenizer": _clip_tokenizer(), "tokenizer_2": _clip_tokenizer(), "tokenizer_3": _t5_tokenizer(),
            "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0)}


SD35 = Family(name="sd35", denoiser="sd35_large_transformer",
              encoders={"clip_l_projection": 77, "clip_g": 77, "t5_xxl": 256}, vae="sd35_vae",
              denoiser_key="transformer", cfg_batched=True, negative_encoded=True, cfg_threshold=1.0,
              int_strength=False, denoiser_call=_denoiser_call, pipeline_parts=_pipeline_parts)


def sd3_components(seed: int, shared_seed: int) -> dict:
    """StableDiffusion3Pipeline components: MMDiT, CLIP-L and CLIP-G (with projection), T5, a 16-channel-style VAE."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import CLIPTextModelWithProjection, T5Config, T5EncoderModel

    tokenizer, tokenizer_3 = _clip_tokenizer(), _t5_tokenizer()
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=32, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8,
                                        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
                                        pooled_projection_dim=64, out_channels=4, qk_norm="rms_norm")
    text_encoder = clip(CLIPTextModelWithProjection, tokenizer, shared_seed + 2)
    text_encoder_2 = clip(CLIPTextModelWithProjection, tokenizer, shared_seed + 3)
    torch.manual_seed(shared_seed + 4)
    text_encoder_3 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_3), d_model=32, d_kv=8, d_ff=37, num_layers=2,
                                             num_heads=4, relative_attention_num_buckets=8,
                                             pad_token_id=tokenizer_3.pad_token_id,
                                             eos_token_id=tokenizer_3.eos_token_id,
                                             decoder_start_token_id=tokenizer_3.pad_token_id))
    torch.manual_seed(shared_seed + 1)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=32, use_quant_conv=False,
                        use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5305)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    return eval_mode({"transformer": transformer, "vae": vae, "scheduler": scheduler,
                  "text_encoder": text_encoder, "tokenizer": tokenizer,
                  "text_encoder_2": text_encoder_2, "tokenizer_2": _clip_tokenizer(),
                  "text_encoder_3": text_encoder_3, "tokenizer_3": tokenizer_3})


def tiny_components(seed: int, shared_seed: int, fast: bool) -> dict:
    """Turbo and Large share the architecture: only the seed tells them apart."""
    return sd3_components(seed, shared_seed)


def build_tiny(out: Path, seed: int) -> dict:
    """Tiny SD3.5 Large Turbo and Large pipelines under out: generate.diffusers overrides."""
    from diffusers import StableDiffusion3Pipeline

    return {"fast_model": save(StableDiffusion3Pipeline, tiny_components(seed + 10, seed, True), out / "turbo"),
            "slow_model": save(StableDiffusion3Pipeline, tiny_components(seed + 20, seed, False), out / "large")}


PRESET = Preset(name="sd35-large", family=SD35, models=("SD3.5-Large-Turbo", "SD3.5-Large"),
                summary="SD3.5 Large Turbo -> SD3.5 Large", licence="Stability Community", tiny_components=tiny_components, build_tiny=build_tiny)
