"""Tiny random-initialised pipelines of each preset's architecture (FLUX.2 klein, Z-Image, SD3, SDXL), built locally."""

# Why this exists: the presets (presets/*.yaml) name hub models that cannot be downloaded here, yet each
# must be proven through its real diffusers pipeline classes. Each builder below has its architecture's
# real wiring at a few hundred thousand parameters, after diffusers' own fast tests (`get_dummy_components`
# in tests/pipelines/<name>/), with tokenizers built from an in-memory vocabulary (tiny_flux's CLIP and
# T5 ones, and a byte-level Qwen2 tokenizer with a chat template for the Qwen3 text encoders). The images
# are noise. Every pair's fast and slow model share one text encoder and VAE built from `shared_seed`,
# so their files are byte-identical as in the published pairs, and the backend loads them once.
#
# `build_tiny_preset(name, out_dir)` writes the folders a preset needs and returns the generate.diffusers
# overrides that point the preset at them.

from __future__ import annotations

from pathlib import Path

import torch

from facerealism.backends.tiny_flux import _clip_tokenizer, _t5_tokenizer
from facerealism.errors import UserError

# FLUX.2 klein reads the Qwen3 hidden states of layers (9, 18, 27) by default: the tiny encoder has 28 layers so
# the published call arguments run unchanged (each layer is 16 wide: the whole encoder is ~80k parameters).
_QWEN_LAYERS_FLUX2 = 28


def _qwen_tokenizer():
    """A byte-level BPE Qwen2 tokenizer, one token per byte and no merges, with a ChatML template (any text works)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2TokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Qwen2TokenizerFast(vocab=vocab, merges=[], unk_token=None, bos_token=None, eos_token="<|endoftext|>",
                             pad_token="<|endoftext|>")
    tok.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return tok


def _qwen3_config(tokenizer, layers: int):
    from transformers import Qwen3Config

    return Qwen3Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=16, num_hidden_layers=layers,
                       num_attention_heads=2, num_key_value_heads=2, head_dim=8, max_position_embeddings=1024,
                       pad_token_id=tokenizer.pad_token_id)


def _clip(cls, tokenizer, seed: int, hidden: int = 32, projection: int = 32):
    from transformers import CLIPTextConfig

    torch.manual_seed(seed)
    return cls(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=37, num_hidden_layers=2,
                              num_attention_heads=4, max_position_embeddings=77, projection_dim=projection,
                              hidden_act="gelu", bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))


def _eval(components: dict) -> dict:
    """Fresh modules are in train mode: dropout would make the same prompt embed differently on each call."""
    for m in components.values():
        if isinstance(m, torch.nn.Module):
            m.eval()
    return components


def flux2_klein_components(seed: int, shared_seed: int, distilled: bool) -> dict:
    """Flux2KleinPipeline components: FLUX.2 transformer, Qwen3 causal LM encoder, the FLUX.2 VAE (32 latent channels)."""
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Transformer2DModel
    from transformers import Qwen3ForCausalLM

    tokenizer = _qwen_tokenizer()
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
    text_encoder = Qwen3ForCausalLM(_qwen3_config(tokenizer, _QWEN_LAYERS_FLUX2))
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096, shift=3.0)
    return _eval({"transformer": transformer, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
                  "scheduler": scheduler, "is_distilled": distilled})


def z_image_components(seed: int, shared_seed: int) -> dict:
    """ZImagePipeline components: the single-stream Z-Image DiT, a Qwen3 encoder, a FLUX.1-style VAE."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel
    from transformers import Qwen3Model

    tokenizer = _qwen_tokenizer()
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
    text_encoder = Qwen3Model(_qwen3_config(tokenizer, 2))
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    return _eval({"transformer": transformer, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
                  "scheduler": scheduler})


def sd3_components(seed: int, shared_seed: int) -> dict:
    """StableDiffusion3Pipeline components: MMDiT, CLIP-L and CLIP-G (with projection), T5, a 16-channel-style VAE."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import CLIPTextModelWithProjection, T5Config, T5EncoderModel

    tokenizer, tokenizer_3 = _clip_tokenizer(), _t5_tokenizer()
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=32, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8,
                                        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
                                        pooled_projection_dim=64, out_channels=4, qk_norm="rms_norm")
    text_encoder = _clip(CLIPTextModelWithProjection, tokenizer, shared_seed + 2)
    text_encoder_2 = _clip(CLIPTextModelWithProjection, tokenizer, shared_seed + 3)
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
    return _eval({"transformer": transformer, "vae": vae, "scheduler": scheduler,
                  "text_encoder": text_encoder, "tokenizer": tokenizer,
                  "text_encoder_2": text_encoder_2, "tokenizer_2": _clip_tokenizer(),
                  "text_encoder_3": text_encoder_3, "tokenizer_3": tokenizer_3})


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
    from diffusers import AutoencoderKL, EulerDiscreteScheduler
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = _clip_tokenizer()
    torch.manual_seed(shared_seed + 1)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=0.13025)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")  # SDXL base's scheduler
    return _eval({"unet": sdxl_unet(seed), "vae": vae, "scheduler": scheduler,
                  "text_encoder": _clip(CLIPTextModel, tokenizer, shared_seed + 2), "tokenizer": tokenizer,
                  "text_encoder_2": _clip(CLIPTextModelWithProjection, tokenizer, shared_seed + 3),
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


def _save(pipeline_cls, components: dict, path: Path) -> str:
    pipeline_cls(**components).save_pretrained(path)
    return str(path)


def build_tiny_preset(name: str, out_dir: str | Path, seed: int = 0) -> dict:
    """Write the tiny models a preset needs under out_dir.

    Args:
        name: a preset name (presets/<name>.yaml).
        out_dir: folder to write; created if missing.
        seed: weight seed; the fast and slow denoisers get different seeds, the shared modules `seed`.
    Returns:
        generate.diffusers overrides ({"fast_model", "slow_model", and "fast_unet" / "fast_lora" where the
        preset uses them}) pointing the preset at the tiny folders.
    """
    from diffusers import Flux2KleinPipeline, StableDiffusion3Pipeline, StableDiffusionXLPipeline, ZImagePipeline

    out = Path(out_dir)
    fast, slow = seed + 10, seed + 20
    if name == "flux2-klein-4b":
        return {"fast_model": _save(Flux2KleinPipeline, flux2_klein_components(fast, seed, True), out / "klein"),
                "slow_model": _save(Flux2KleinPipeline, flux2_klein_components(slow, seed, False), out / "klein_base")}
    if name == "z-image":
        return {"fast_model": _save(ZImagePipeline, z_image_components(fast, seed), out / "turbo"),
                "slow_model": _save(ZImagePipeline, z_image_components(slow, seed), out / "base")}
    if name == "sd35-large":
        return {"fast_model": _save(StableDiffusion3Pipeline, sd3_components(fast, seed), out / "turbo"),
                "slow_model": _save(StableDiffusion3Pipeline, sd3_components(slow, seed), out / "large")}
    if name == "dmd2-sdxl":
        base = _save(StableDiffusionXLPipeline, sdxl_components(slow, seed), out / "sdxl")
        unet = out / "dmd2_unet.safetensors"  # a bare state dict, as DMD2 publishes its UNet
        from safetensors.torch import save_file

        save_file(sdxl_unet(fast).state_dict(), unet)
        return {"fast_model": base, "slow_model": base, "fast_unet": str(unet)}
    if name == "sdxl-lightning-lora":
        components = sdxl_components(slow, seed)
        lora = save_sdxl_lora(sdxl_unet(slow), out / "lora", seed=fast)
        base = _save(StableDiffusionXLPipeline, components, out / "sdxl")
        return {"fast_model": base, "slow_model": base, "fast_lora": str(lora)}
    raise UserError(f"no tiny build for preset {name!r}; known: {sorted(TINY_PRESETS)}")


TINY_PRESETS = ("flux2-klein-4b", "z-image", "sd35-large", "dmd2-sdxl", "sdxl-lightning-lora")
