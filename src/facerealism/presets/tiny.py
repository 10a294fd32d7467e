"""What the presets' tiny builders share: in-memory tokenizers, tiny CLIP and Qwen3 encoders, the tiny SDXL pipeline."""

# Why tiny builders exist: the presets name hub models that cannot be downloaded here, yet each must be proven
# through its real diffusers pipeline classes. Each preset's builder (presets/<name>/__init__.py) has its
# architecture's real wiring at a few hundred thousand parameters, after diffusers' own fast tests
# (`get_dummy_components` in tests/pipelines/<name>/), with tokenizers built from an in-memory vocabulary (tiny_flux's
# CLIP and T5 ones, and a byte-level Qwen2 tokenizer with a chat template for the Qwen3 text encoders). The images
# are noise. Every pair's fast and slow model share one text encoder and VAE built from `shared_seed`, so their
# files are byte-identical as in the published pairs, and the backend loads them once.

from __future__ import annotations

from pathlib import Path

import torch

from facerealism.backends.tiny_flux import _clip_tokenizer


def qwen_tokenizer():
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


def qwen3_config(tokenizer, layers: int):
    from transformers import Qwen3Config

    return Qwen3Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=16, num_hidden_layers=layers,
                       num_attention_heads=2, num_key_value_heads=2, head_dim=8, max_position_embeddings=1024,
                       pad_token_id=tokenizer.pad_token_id)


def clip(cls, tokenizer, seed: int, hidden: int = 32, projection: int = 32):
    from transformers import CLIPTextConfig

    torch.manual_seed(seed)
    return cls(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=37, num_hidden_layers=2,
                              num_attention_heads=4, max_position_embeddings=77, projection_dim=projection,
                              hidden_act="gelu", bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))


def eval_mode(components: dict) -> dict:
    """Fresh modules are in train mode: dropout would make the same prompt embed differently on each call."""
    for m in components.values():
        if isinstance(m, torch.nn.Module):
            m.eval()
    return components


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


def save(pipeline_cls, components: dict, path: Path) -> str:
    pipeline_cls(**components).save_pretrained(path)
    return str(path)
