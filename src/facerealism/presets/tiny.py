"""What the presets' tiny builders share: in-memory tokenizers, tiny CLIP and Qwen3 encoders, saving a pipeline."""

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


def save(pipeline_cls, components: dict, path: Path) -> str:
    pipeline_cls(**components).save_pretrained(path)
    return str(path)
