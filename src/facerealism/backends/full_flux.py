"""FLUX.1-dev / -schnell pipelines built from architecture configs (shipped full-size ones, or tiny) with random weights."""

# Why: the GPU kit must time the real 12B transformer, T5-XXL, CLIP-L and VAE where no weights can be
# downloaded. Compute per call depends on the architecture and the sequence lengths only, not on the
# weights' values, so random weights give the real cost. The configs in `configs/flux1/` are the
# published ones (transformer/, text_encoder/, text_encoder_2/, vae/, scheduler/ config.json of the two
# hub repos); `write_tiny_configs` writes tiny_flux's architecture in the same layout, so CPU tests run the
# very code a GPU box runs.
#
# Tokenizers: the real CLIP BPE and T5 SentencePiece files cannot be had offline either; tiny_flux's
# in-memory tokenizers stand in. FluxPipeline pads CLIP to 77 tokens and T5 to max_sequence_length, so
# the encoders see the same sequence lengths (and cost) as with the real tokenizers.

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from facerealism.errors import UserError

FULL = Path(__file__).resolve().parents[1] / "configs" / "flux1"
FILES = ("transformer_dev", "transformer_schnell", "text_encoder", "text_encoder_2", "vae", "scheduler_dev",
         "scheduler_schnell", "head")


def read_config(configs: str | Path, name: str) -> dict:
    """One component's config dict from `configs/NAME.json`; a clear error when it is missing or not JSON."""
    path = Path(configs) / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"missing FLUX config {path} (a config folder holds {', '.join(FILES)} .json)") from None
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None


def _public(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


@contextlib.contextmanager
def _building(device: str, dtype: torch.dtype):
    """Parameters are created on `device` in `dtype`: no fp32 copy of 12B weights, no host round trip."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


def build_modules(configs: str | Path, device: str, dtype: torch.dtype, seed: int = 0) -> dict:
    """Random-weight FLUX.1 modules from a config folder, in eval mode.

    Args:
        configs: folder of FILES (.json); FULL is the published full-size architecture.
        device: where the parameters are created ("cuda", "cpu").
        dtype: parameter dtype (torch.bfloat16 for FLUX.1's published precision).
        seed: torch seed of the random weights.
    Returns:
        {"transformer_dev", "transformer_schnell", "text_encoder", "text_encoder_2", "vae", "scheduler_dev",
         "scheduler_schnell", "tokenizer", "tokenizer_2"}; the text encoders and VAE serve both variants, as in
        FLUX.1 (one clip_l, t5xxl and ae for both).
    """
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from facerealism.backends.tiny_flux import _clip_tokenizer, _t5_tokenizer

    cfg = {name: read_config(configs, name) for name in FILES}
    torch.manual_seed(seed)
    with _building(device, dtype):
        out = {
            "transformer_dev": FluxTransformer2DModel.from_config(_public(cfg["transformer_dev"])),
            "transformer_schnell": FluxTransformer2DModel.from_config(_public(cfg["transformer_schnell"])),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**_public(cfg["text_encoder"]))),
            "text_encoder_2": T5EncoderModel(T5Config(**_public(cfg["text_encoder_2"]))),
            "vae": AutoencoderKL.from_config(_public(cfg["vae"])),
        }
    for module in out.values():
        module.eval().requires_grad_(False)  # dropout in train mode would make every call differ
    out["scheduler_dev"] = FlowMatchEulerDiscreteScheduler.from_config(_public(cfg["scheduler_dev"]))
    out["scheduler_schnell"] = FlowMatchEulerDiscreteScheduler.from_config(_public(cfg["scheduler_schnell"]))
    out["tokenizer"], out["tokenizer_2"] = _clip_tokenizer(), _t5_tokenizer()
    return out


def pipelines(modules: dict) -> dict:
    """{"schnell": FluxPipeline, "dev": FluxPipeline, "dev_i2i": FluxImg2ImgPipeline} over shared modules."""
    from diffusers import FluxImg2ImgPipeline, FluxPipeline

    shared = {k: modules[k] for k in ("text_encoder", "text_encoder_2", "vae", "tokenizer", "tokenizer_2")}
    dev = {**shared, "transformer": modules["transformer_dev"], "scheduler": modules["scheduler_dev"]}
    out = {"schnell": FluxPipeline(**shared, transformer=modules["transformer_schnell"],
                                   scheduler=modules["scheduler_schnell"]),
           "dev": FluxPipeline(**dev), "dev_i2i": FluxImg2ImgPipeline(**dev)}
    for p in out.values():
        p.set_progress_bar_config(disable=True)
    return out


def write_tiny_configs(out_dir: str | Path, head: dict | None = None) -> Path:
    """tiny_flux's architecture as a config folder (same files as FULL), for CPU runs of the full-size code path.

    Args:
        out_dir: folder to write; created if missing.
        head: {"arch", "kwargs"} of the head; default a tiny ESA-ResNet.
    Returns:
        out_dir.
    """
    from facerealism.backends.tiny_flux import tiny_flux_components

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    docs = {}
    for variant in ("dev", "schnell"):
        c = tiny_flux_components(0, variant)
        docs[f"transformer_{variant}"] = {"_class_name": "FluxTransformer2DModel",
                                          **{k: v for k, v in c["transformer"].config.items()
                                             if not k.startswith("_")}}
        docs[f"scheduler_{variant}"] = {"_class_name": "FlowMatchEulerDiscreteScheduler",
                                        **{k: v for k, v in c["scheduler"].config.items() if not k.startswith("_")}}
    docs["vae"] = {"_class_name": "AutoencoderKL", **{k: v for k, v in c["vae"].config.items()
                                                      if not k.startswith("_")}}
    docs["text_encoder"] = {"_class_name": "CLIPTextModel", **c["text_encoder"].config.to_diff_dict()}
    docs["text_encoder_2"] = {"_class_name": "T5EncoderModel", **c["text_encoder_2"].config.to_diff_dict()}
    docs["head"] = head or {"arch": "esa_resnet", "kwargs": {"ngf": 8, "n_blocks": 1, "residual_output": False}}
    for name, doc in docs.items():
        (out_dir / f"{name}.json").write_text(json.dumps(doc, indent=1, default=list) + "\n")
    return out_dir


def parameter_counts(modules: dict) -> dict[str, int]:
    """Parameters per torch module in `modules` (the size check that proves what was built)."""
    return {k: sum(p.numel() for p in m.parameters()) for k, m in modules.items() if isinstance(m, torch.nn.Module)}
