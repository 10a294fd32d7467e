"""Tiny random-initialised FLUX pipelines built locally: an offline stand-in for FLUX.1-schnell / -dev weights."""

# Why this exists: no model hub is reachable, yet the flux backend must be exercised end to
# end (from_pretrained -> text-to-image -> image-to-image -> uint8 pairs) in fast tests. The
# components below have FLUX's real architecture and wiring at ~160k parameters in all (dev:
# transformer 82k, VAE 27k, CLIP 33k, T5 19k; ~0.7 MB saved): the images are noise, never
# faces. Same layout on disk as a hub snapshot, so `generate.flux.fast_model` / `slow_model`
# can point at the saved directories unchanged.
#
# Constraints the sizes below satisfy (diffusers 0.42 / transformers 5):
#   sum(axes_dims_rope) == attention_head_dim;
#   transformer in_channels == 4 * vae latent_channels (2x2 latent patches are packed);
#   joint_attention_dim == T5 d_model; pooled_projection_dim == CLIP hidden_size;
#   image side divisible by 2 * 2 ** (len(vae block_out_channels) - 1) = 16, as for real FLUX.

from __future__ import annotations

import argparse
import string
import sys
from pathlib import Path
from typing import Literal

import torch

from facerealism.errors import UserError

_CLIP_MAX_LENGTH = 77  # FluxPipeline reads tokenizer.model_max_length; real FLUX uses CLIP's 77
_VARIANTS = ("schnell", "dev")


def _clip_tokenizer():
    """A byte-level BPE tokenizer with one token per byte and no merges: any text tokenizes, character by character."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    chars = sorted(ByteLevel.alphabet())  # the 256 printable stand-ins for bytes
    vocab = {tok: i for i, tok in enumerate(specials + chars + [c + "</w>" for c in chars])}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=_CLIP_MAX_LENGTH)


def _t5_tokenizer():
    """A unigram tokenizer over printable ASCII characters (everything else maps to <unk>)."""
    from transformers import T5TokenizerFast

    chars = [c for c in string.printable if not c.isspace()]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(c, -3.0) for c in chars] + [("▁" + c, -3.5) for c in chars]
    return T5TokenizerFast(vocab=vocab, extra_ids=0)


def tiny_flux_components(seed: int = 0, variant: Literal["schnell", "dev"] = "schnell",
                         shared_seed: int | None = None) -> dict:
    """The FluxPipeline components, random-initialised from `seed`, in eval mode.

    Args:
        seed: torch seed for every component's initial weights.
        variant: "schnell" (no guidance embedding, like FLUX.1-schnell) or "dev" (guidance-distilled).
        shared_seed: seed of the VAE and both text encoders instead (the transformer keeps `seed`): two variants
            built with one shared_seed have byte-identical encoders and VAE, as FLUX.1-schnell and -dev do.
    Returns:
        Keyword arguments for `FluxPipeline(**components)`.
    """
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    if variant not in _VARIANTS:
        raise UserError(f"variant must be one of {_VARIANTS}, got {variant!r}")
    latent_channels = 16  # as FLUX.1's VAE
    text_dim = 32  # T5 d_model == transformer joint_attention_dim
    pooled_dim = 32  # CLIP hidden_size == transformer pooled_projection_dim
    tokenizer, tokenizer_2 = _clip_tokenizer(), _t5_tokenizer()

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * latent_channels,  # packed 2x2 latent patches
        num_layers=1,  # double-stream (text, image) blocks
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=text_dim,
        pooled_projection_dim=pooled_dim,
        guidance_embeds=variant == "dev",  # FLUX.1-dev embeds the guidance scale; schnell ignores it
        axes_dims_rope=(4, 4, 8),  # sums to attention_head_dim
    )
    seed = seed if shared_seed is None else shared_seed
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),  # four levels: 8x down-sampling, as FLUX.1's VAE
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=64,
        use_quant_conv=False,  # FLUX.1's VAE has no (post-)quant convs
        use_post_quant_conv=False,
        shift_factor=0.1159,  # FLUX.1's latent normalisation constants
        scaling_factor=0.3611,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=pooled_dim, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=_CLIP_MAX_LENGTH, projection_dim=pooled_dim,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    torch.manual_seed(seed + 3)
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=text_dim, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=tokenizer_2.pad_token_id,
        eos_token_id=tokenizer_2.eos_token_id, decoder_start_token_id=tokenizer_2.pad_token_id,
    ))
    scheduler = FlowMatchEulerDiscreteScheduler(  # FLUX.1-schnell's scheduler config; dev's adds dynamic shifting
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=variant == "dev",
        base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096,
    )
    # Fresh modules are in train mode: T5 dropout would make the same prompt embed differently each call.
    for module in (transformer, vae, text_encoder, text_encoder_2):
        module.eval()
    return {
        "transformer": transformer, "vae": vae, "scheduler": scheduler,
        "text_encoder": text_encoder, "tokenizer": tokenizer,
        "text_encoder_2": text_encoder_2, "tokenizer_2": tokenizer_2,
    }


def build_tiny_flux(out_dir: str | Path, seed: int = 0, variant: Literal["schnell", "dev"] = "schnell",
                    shared_seed: int | None = None) -> Path:
    """Build a tiny random FLUX pipeline and save it as a standard diffusers directory.

    Args:
        out_dir: where to write (model_index.json plus one folder per component); created if missing.
        seed: weight initialisation seed; the same seed gives byte-identical weights.
        variant: "schnell" or "dev" (see `tiny_flux_components`).
        shared_seed: see `tiny_flux_components`.
    Returns:
        out_dir, loadable offline by FluxPipeline.from_pretrained and FluxImg2ImgPipeline.from_pretrained.
    """
    from diffusers import FluxPipeline

    out_dir = Path(out_dir)
    FluxPipeline(**tiny_flux_components(seed, variant, shared_seed)).save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m facerealism.backends.tiny_flux",
        description="Write tiny random FLUX pipelines to OUT_DIR/schnell and OUT_DIR/dev.",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for i, variant in enumerate(_VARIANTS):
        # Different transformers per variant (the two "models" must not be the same random network), one set of
        # text encoders and VAE for both, as the real pair.
        path = build_tiny_flux(args.out_dir / variant, seed=args.seed + 10 * i, variant=variant, shared_seed=args.seed)
        print(f"{variant}: {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
