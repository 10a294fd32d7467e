"""SDXL base 1.0, which the dmd2-sdxl and sdxl-lightning-lora presets both build on: its architecture family and its
tiny random pipeline."""

from __future__ import annotations

from pathlib import Path

import torch

from facerealism.backends.tiny_flux import _clip_tokenizer
from facerealism.presets.preset import Family
from facerealism.presets.tiny import clip, eval_mode


def _denoiser_call(module, size: int, batch: int):
    lat, e = size // 8, lambda *s: torch.empty(*s, device="meta")  # noqa: E731
    return lambda: module(e(batch, 4, lat, lat), e(batch), encoder_hidden_states=e(batch, 77, 2048),
                          added_cond_kwargs={"text_embeds": e(batch, 1280), "time_ids": e(batch, 6)})


def _scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  steps_offset=1, timestep_spacing="leading")  # SDXL base's scheduler


SDXL = Family(name="sdxl", denoiser="sdxl_unet", encoders={"clip_l": 77, "clip_g": 77}, vae="sdxl_vae",
              denoiser_key="unet", cfg_batched=True, negative_encoded=False, cfg_threshold=1.0, int_strength=True,
              denoiser_call=_denoiser_call,
              pipeline_parts=lambda: {"tokenizer": _clip_tokenizer(), "tokenizer_2": _clip_tokenizer(),
                                      "scheduler": _scheduler(), "image_encoder": None, "feature_extractor": None})


def sdxl_unet(seed: int):
    """A tiny SDXL UNet (text-time additional conditioning, two cross-attention levels)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 size/crop numbers x 8 + CLIP-G's pooled 32
        cross_attention_dim=64, norm_num_groups=4).eval()  # CLIP-L 32 + CLIP-G 32 hidden states, concatenated


def sdxl_components(seed: int, shared_seed: int) -> dict:
    """StableDiffusionXLPipeline components: UNet, CLIP-L and CLIP-G (with projection), the SDXL VAE, Euler."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = _clip_tokenizer()
    torch.manual_seed(shared_seed + 1)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=0.13025)
    scheduler = _scheduler()
    return eval_mode({"unet": sdxl_unet(seed), "vae": vae, "scheduler": scheduler,
                  "text_encoder": clip(CLIPTextModel, tokenizer, shared_seed + 2), "tokenizer": tokenizer,
                  "text_encoder_2": clip(CLIPTextModelWithProjection, tokenizer, shared_seed + 3),
                  "tokenizer_2": _clip_tokenizer(), "image_encoder": None, "feature_extractor": None})


def save_sdxl_lora(unet, path: Path, seed: int, rank: int = 4) -> Path:
    """A random LoRA over the UNet's attention projections, saved in diffusers' LoRA format (one .safetensors)."""
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():  # peft starts B at zero (a LoRA that changes nothing): give it random weights too
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    layers = get_peft_model_state_dict(unet)
    unet.delete_adapters(unet.active_adapters())
    path.mkdir(parents=True, exist_ok=True)
    StableDiffusionXLPipeline.save_lora_weights(path, unet_lora_layers=layers, weight_name="lora.safetensors")
    return path / "lora.safetensors"
