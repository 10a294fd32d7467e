"""FLOPs per image of each preset's fast and slow model at full size, counted on the meta device from shipped configs."""

# Method (as flops.py for FLUX.1): every network a pipeline runs is built on the meta device from the published
# architecture configs of the preset folders (presets/<name>/*.json, no weights, no memory) and called once with the
# shapes the pipeline gives it; FlopCounterMode counts 2 FLOPs per multiply-add. An image costs
#     text encoding (x2 when classifier-free guidance encodes a negative prompt)
#   + denoiser calls x FLOPs per call (batch 2 per call when CFG is batched; 2 calls when it is not)
#   + VAE decode (+ VAE encode for image-to-image).
# Steps, guidance and strength are read from the preset's params.yaml itself, so the figures follow the presets.
# The fast/slow ratio compares the fast model's text-to-image with the slow model's text-to-image at its own
# steps (the cost the fast model replaces, as Fig. 8 compares schnell with dev), beside the slow img2img pass.

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from facerealism import presets
from facerealism.config import load_config
from facerealism.errors import UserError
from facerealism.speed.flops import count_flops


@dataclass(frozen=True)
class Family:
    """One architecture: its config files, how its pipelines run guidance, and its img2img step rule."""

    denoiser: str
    encoders: tuple[str, ...]
    vae: str
    cfg_batched: bool  # CFG as one call on a batch of 2 (SD3, SDXL, Z-Image) or a second call (FLUX.2 klein)
    negative_encoded: bool  # the empty negative prompt goes through the text encoders (SDXL zeroes it instead)
    cfg_threshold: float  # CFG runs when guidance_scale > this (Z-Image: > 0; the others > 1)
    int_strength: bool  # SDXL's img2img runs int(steps * strength) steps; the others steps - int(steps * (1 - s))


FAMILIES = {
    "sd35": Family("sd35_large_transformer", ("clip_l_projection", "clip_g", "t5_xxl"), "sd35_vae", True, True, 1.0,
                   False),
    "sdxl": Family("sdxl_unet", ("clip_l", "clip_g"), "sdxl_vae", True, False, 1.0, True),
    "flux2_klein": Family("flux2_klein_4b_transformer", ("qwen3_4b",), "flux2_vae", False, True, 1.0, False),
    "z_image": Family("z_image_transformer", ("qwen3_4b",), "z_image_vae", True, True, 0.0, False),
}
TEXT_TOKENS = {"clip_l": 77, "clip_l_projection": 77, "clip_g": 77, "t5_xxl": 256, "qwen3_4b": 512}
Z_IMAGE_CAPTION_TOKENS = 64  # Z-Image keeps only the prompt's real tokens (chat template included), padded to 32s


def read(name: str) -> dict:
    """One shipped config, without its `_` keys."""
    return {k: v for k, v in json.loads(presets.config_file(name).read_text()).items() if not k.startswith("_")}


def build(name: str, device: str = "meta", dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
    """A random-weight module from the presets' <name>.json, built on `device`."""
    import diffusers
    import transformers

    doc = json.loads(presets.config_file(name).read_text())
    cls_name, cfg = doc["_class_name"], read(name)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            if hasattr(diffusers, cls_name) and cls_name != "CLIPTextModel":
                module = getattr(diffusers, cls_name).from_config(cfg)
            else:
                cls = getattr(transformers, cls_name)
                module = cls(cls.config_class(**cfg))
    finally:
        torch.set_default_dtype(old)
    return module.eval().requires_grad_(False)


def _encoder_flops(name: str, module, family: str) -> int:
    module = module.model if family == "z_image" else module
    ids = torch.zeros(1, TEXT_TOKENS[name], dtype=torch.long, device="meta")
    if name == "qwen3_4b":  # FLUX.2 klein runs the causal LM (its logits are computed too); Z-Image the bare model
        # A ready 4D (additive) mask: building one from a 2D mask reads tensor values, which meta tensors lack.
        mask = torch.zeros(1, 1, ids.shape[1], ids.shape[1], device="meta")
        return count_flops(lambda: module(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                                          use_cache=False))
    return count_flops(lambda: module(input_ids=ids, output_hidden_states=True))


def _denoiser_flops(family: str, module, size: int, batch: int) -> int:
    """FLOPs of one denoiser call on `batch` latents of a size x size image."""
    m, lat = "meta", size // 8
    e = lambda *s: torch.empty(*s, device=m)  # noqa: E731
    if family == "sd35":
        return count_flops(lambda: module(hidden_states=e(batch, 16, lat, lat),
                                          encoder_hidden_states=e(batch, 77 + 256, 4096),
                                          pooled_projections=e(batch, 2048), timestep=e(batch)))
    if family == "sdxl":
        return count_flops(lambda: module(e(batch, 4, lat, lat), e(batch), encoder_hidden_states=e(batch, 77, 2048),
                                          added_cond_kwargs={"text_embeds": e(batch, 1280), "time_ids": e(batch, 6)}))
    if family == "flux2_klein":
        tokens = (size // 16) ** 2  # 8x VAE, then 2x2 patches folded into 128 channels
        return count_flops(lambda: module(hidden_states=e(batch, tokens, 128), encoder_hidden_states=e(batch, 512, 7680),
                                          timestep=e(batch), img_ids=e(batch, tokens, 4), txt_ids=e(batch, 512, 4)))
    if family == "z_image":
        return count_flops(lambda: module([e(16, 1, lat, lat)] * batch, e(batch),
                                          [e(Z_IMAGE_CAPTION_TOKENS, 2560)] * batch))
    raise UserError(f"unknown family {family!r}")


def _vae_flops(family: str, vae, size: int) -> dict[str, int]:
    m, lat = "meta", size // 8
    channels = vae.config.latent_channels
    if family == "flux2_klein":  # the FLUX.2 VAE decodes 32 channels at 1/8 (patchified to 128 at 1/16 outside)
        channels = 32
    return {"decode": count_flops(lambda: vae.decode(torch.empty(1, channels, lat, lat, device=m))),
            "encode": count_flops(lambda: vae.encode(torch.empty(1, 3, size, size, device=m)))}


def img2img_steps(steps: int, strength: float, int_strength: bool) -> int:
    """Denoising steps an img2img call runs (each pipeline's get_timesteps)."""
    if int_strength:
        return min(int(steps * strength), steps)
    return steps - int(max(steps - min(steps * strength, steps), 0))


def preset_cost(name: str, size: int | None = None) -> dict:
    """FLOPs per image of one preset's fast text-to-image, slow text-to-image and slow image-to-image.

    Args:
        name: preset name (facerealism.presets).
        size: square side in pixels; default the preset's generate.size.
    Returns:
        {"preset", "size", "per_call_tflop", "fast"/"slow_t2i"/"slow_i2i": {"denoiser_calls", "batch", "tflop"},
         "fast_pct_of_slow_t2i", "fast_plus_slow_i2i_pct_of_slow_t2i", ...}.
    """
    preset = presets.get(name)
    cfg = load_config(preset.params).generate
    size = size or cfg.size
    fam_name = preset.family
    fam = FAMILIES[fam_name]
    f32 = torch.float32  # FLOPs do not depend on the dtype; the probe tensors below are float32
    denoiser, vae = build(fam.denoiser, dtype=f32), build(fam.vae, dtype=f32)
    encoders = {n: build(n, dtype=f32) for n in fam.encoders}
    per = {f"encoder_{n}": _encoder_flops(n, mod, fam_name) for n, mod in encoders.items()}
    text = sum(per.values())
    per.update({f"vae_{k}": v for k, v in _vae_flops(fam_name, vae, size).items()})
    calls_cache: dict[int, int] = {}

    def call(batch: int) -> int:
        if batch not in calls_cache:
            calls_cache[batch] = _denoiser_flops(fam_name, denoiser, size, batch)
            per[f"denoiser_batch{batch}"] = calls_cache[batch]
        return calls_cache[batch]

    d = cfg.diffusers

    def run(which: str, kwargs: dict, steps: int, i2i: bool) -> dict:
        guidance = float(kwargs.get("guidance_scale", 0.0))
        cfg_on = guidance > fam.cfg_threshold and which not in preset.distilled
        batch = 2 if cfg_on and fam.cfg_batched else 1
        calls = steps * (2 if cfg_on and not fam.cfg_batched else 1)
        flops = (text * (2 if cfg_on and fam.negative_encoded else 1) + calls * call(batch) + per["vae_decode"]
                 + (per["vae_encode"] if i2i else 0))
        return {"steps": steps, "guidance": guidance, "cfg": cfg_on, "denoiser_calls": calls, "batch": batch,
                "flop": flops, "tflop": round(flops / 1e12, 2)}

    fast_steps = len(d.fast_kwargs["timesteps"]) if "timesteps" in d.fast_kwargs else d.fast_kwargs["num_inference_steps"]
    slow_steps = d.slow_kwargs["num_inference_steps"]
    out = {"preset": name, "family": fam_name, "size": size,
           "fast": run("fast", d.fast_kwargs, fast_steps, False),
           "slow_t2i": run("slow", d.slow_kwargs, slow_steps, False),
           "slow_i2i": run("slow", d.slow_kwargs, img2img_steps(slow_steps, d.strength, fam.int_strength), True)}
    out["per_call_tflop"] = {k: round(v / 1e12, 3) for k, v in per.items()}
    slow = out["slow_t2i"]["flop"]
    out["fast_pct_of_slow_t2i"] = round(100 * out["fast"]["flop"] / slow, 2)
    out["fast_plus_slow_i2i_pct_of_slow_t2i"] = round(100 * (out["fast"]["flop"] + out["slow_i2i"]["flop"]) / slow, 2)
    return out


def parameter_counts() -> dict[str, int]:
    """Parameters of every shipped preset config (built on the meta device)."""
    return {p.stem: sum(x.numel() for x in build(p.stem).parameters()) for p in presets.config_files()}
