"""Preset flux2-klein-4b: FLUX.2 [klein] 4B (4 steps, distilled) -> FLUX.2 [klein] 4B Base (50 steps), Apache-2.0."""

# FLUX.2 pipelines take no img2img strength: the slow pass is Flux2KleinInpaintPipeline with an all-white mask
# (params.yaml: slow_full_mask). The pair shares the Qwen3-4B text encoder and the FLUX.2 VAE.

from __future__ import annotations

from pathlib import Path

import torch

from facerealism.presets.preset import Family, Preset
from facerealism.presets.tiny import eval_mode, qwen3_config, qwen_tokenizer, save

# FLUX.2 klein reads the Qwen3 hidden states of layers (9, 18, 27) by default: the tiny encoder has 28 layers so
# the published call arguments run unchanged (each layer is 16 wide: the whole encoder is ~80k parameters).
_QWEN_LAYERS_FLUX2 = 28


def _denoiser_call(module, size: int, batch: int):
    e = lambda *s: torch.empty(*s, device="meta")  # noqa: E731
    tokens = (size // 16) ** 2  # 8x VAE, then 2x2 patches folded into 128 channels
    return lambda: module(hidden_states=e(batch, tokens, 128), encoder_hidden_states=e(batch, 512, 7680),
                          timestep=e(batch), img_ids=e(batch, tokens, 4), txt_ids=e(batch, 512, 4))


def _pipeline_parts() -> dict:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return {"tokenizer": qwen_tokenizer(), "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0,
                                                                                         use_dynamic_shifting=True)}


# FLUX.2 klein runs the Qwen3 causal LM (its logits are computed too); CFG is a second call (not batched).
FLUX2_KLEIN = Family(name="flux2_klein", denoiser="flux2_klein_4b_transformer", encoders={"qwen3_4b": 512},
                     vae="flux2_vae", denoiser_key="transformer", cfg_batched=False, negative_encoded=True,
                     cfg_threshold=1.0, int_strength=False, denoiser_call=_denoiser_call,
                     pipeline_parts=_pipeline_parts, causal_encoder=True,
                     vae_latent_channels=32,  # the FLUX.2 VAE decodes 32 channels at 1/8 (patchified to 128 outside)
                     distilled_flag="is_distilled")


def flux2_klein_components(seed: int, shared_seed: int, distilled: bool) -> dict:
    """Flux2KleinPipeline components: FLUX.2 transformer, Qwen3 causal LM encoder, the FLUX.2 VAE (32 latent channels)."""
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Transformer2DModel
    from transformers import Qwen3ForCausalLM

    tokenizer = qwen_tokenizer()
    torch.manual_seed(seed)
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=4 * 4, out_channels=None,  # 4 latent channels, packed 2x2 like FLUX.2's 32 -> 128
        num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=3 * 16,  # three stacked Qwen3 layers of width 16
        timestep_guidance_channels=256, axes_dims_rope=(4, 4, 4, 4), guidance_embeds=False,
    )
    torch.manual_seed(shared_seed + 1)
    vae = AutoencoderKLFlux2(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                             up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                             latent_channels=4, norm_num_groups=4, sample_size=32, use_quant_conv=False,
                             use_post_quant_conv=False)
    torch.manual_seed(shared_seed + 2)
    text_encoder = Qwen3ForCausalLM(qwen3_config(tokenizer, _QWEN_LAYERS_FLUX2))
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096, shift=3.0)
    return eval_mode({"transformer": transformer, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
                  "scheduler": scheduler, "is_distilled": distilled})


def tiny_components(seed: int, shared_seed: int, fast: bool) -> dict:
    """The fast model is the step-distilled klein, the slow one its Base."""
    return flux2_klein_components(seed, shared_seed, distilled=fast)


def build_tiny(out: Path, seed: int) -> dict:
    """Tiny klein and klein Base pipelines under out: generate.diffusers overrides."""
    from diffusers import Flux2KleinPipeline

    return {"fast_model": save(Flux2KleinPipeline, tiny_components(seed + 10, seed, True), out / "klein"),
            "slow_model": save(Flux2KleinPipeline, tiny_components(seed + 20, seed, False), out / "klein_base")}


PRESET = Preset(name="flux2-klein-4b", family=FLUX2_KLEIN, models=("FLUX.2-klein-4B", "FLUX.2-klein-base-4B"),
                summary="FLUX.2 [klein] 4B -> klein 4B Base (inpaint, full mask)", licence="Apache-2.0 / Apache-2.0",
                tiny_components=tiny_components, build_tiny=build_tiny, distilled=("fast",))
