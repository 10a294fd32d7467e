"""FLOPs per image of each preset's fast and slow model at full size, counted on the meta device from shipped configs."""

# Method (as flops.py for FLUX.1): every network a pipeline runs is built on the meta device from the published
# architecture configs of the preset folders (presets/<name>/*.json, no weights, no memory) and called once with the
# shapes the pipeline gives it; FlopCounterMode counts 2 FLOPs per multiply-add. An image costs
#     text encoding (x2 when classifier-free guidance encodes a negative prompt)
#   + denoiser calls x FLOPs per call (batch 2 per call when CFG is batched; 2 calls when it is not)
#   + VAE decode (+ VAE encode for image-to-image).
# Steps, guidance and strength are read from the preset's params.yaml itself, so the figures follow the presets;
# which configs an architecture builds, its prompt lengths, its guidance rules and the shapes of one denoiser call are
# its family's (presets.Family, declared in the preset folder that introduces it).
# The fast/slow ratio compares the fast model's text-to-image with the slow model's text-to-image at its own
# steps (the cost the fast model replaces, as Fig. 8 compares schnell with dev), beside the slow img2img pass.

from __future__ import annotations

import json

import torch

from facerealism import presets
from facerealism.config import load_config
from facerealism.speed.flops import count_flops


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


def _encoder_flops(name: str, tokens: int, module, fam: presets.Family) -> int:
    module = fam.encoder_module(module)
    ids = torch.zeros(1, tokens, dtype=torch.long, device="meta")
    if fam.causal_encoder:
        # A ready 4D (additive) mask: building one from a 2D mask reads tensor values, which meta tensors lack.
        mask = torch.zeros(1, 1, ids.shape[1], ids.shape[1], device="meta")
        return count_flops(lambda: module(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                                          use_cache=False))
    return count_flops(lambda: module(input_ids=ids, output_hidden_states=True))


def _vae_flops(fam: presets.Family, vae, size: int) -> dict[str, int]:
    m, lat = "meta", size // 8
    channels = fam.vae_latent_channels or vae.config.latent_channels
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
    fam = preset.family
    f32 = torch.float32  # FLOPs do not depend on the dtype; the probe tensors below are float32
    denoiser, vae = build(fam.denoiser, dtype=f32), build(fam.vae, dtype=f32)
    encoders = {n: build(n, dtype=f32) for n in fam.encoders}
    per = {f"encoder_{n}": _encoder_flops(n, fam.encoders[n], mod, fam) for n, mod in encoders.items()}
    text = sum(per.values())
    per.update({f"vae_{k}": v for k, v in _vae_flops(fam, vae, size).items()})
    calls_cache: dict[int, int] = {}

    def call(batch: int) -> int:
        if batch not in calls_cache:
            calls_cache[batch] = count_flops(fam.denoiser_call(denoiser, size, batch))
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
    out = {"preset": name, "family": fam.name, "size": size,
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
