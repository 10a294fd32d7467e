"""FLOPs per image of full-size FLUX.1 dev, schnell and the head, counted on the meta device (no weights, no memory)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from facerealism.backends.full_flux import FULL, read_config
from facerealism.config.architectures import CYCLE_MODELS
from facerealism.models import build_generator

# Public FLUX.1 configurations (transformer, T5-XXL encoder, VAE) — architecture only, no weights: the JSON files in
# configs/flux1, which the GPU kit (gpu_bench) builds full-size models from too.
_public = lambda cfg: {k: v for k, v in cfg.items() if not k.startswith("_")}  # noqa: E731
FLUX_TRANSFORMER = {k: v for k, v in _public(read_config(FULL, "transformer_dev")).items() if k != "guidance_embeds"}
T5_XXL = _public(read_config(FULL, "text_encoder_2"))
FLUX_VAE = _public(read_config(FULL, "vae"))
PAPER_HEAD = read_config(FULL, "head")["kwargs"]


def count_flops(fn) -> int:
    """FLOPs torch counts while `fn()` runs (meta tensors count without computing)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def flux_cost_models(sizes: list[int], head_arch: str, head_kwargs: dict | None = None) -> dict[int, dict]:
    """FLOPs per image on the meta device at each size: dev-50 and schnell-4 text-to-image, and the head.

    Args:
        sizes: square image sides, multiples of 16.
        head_arch: generator name; ResNet heads are counted at the paper's size (PAPER_HEAD).
        head_kwargs: constructor arguments for other architectures (their trained configuration).

    Returns:
        size -> {"dev50_tflop", "schnell4_tflop", "schnell4_plus_head_tflop", "cost_reduction_pct", ...}.
    """
    paper = head_arch in CYCLE_MODELS
    kwargs = PAPER_HEAD if paper else dict(head_kwargs or {})
    with torch.device("meta"):
        head = build_generator(head_arch, **kwargs)
    flux = _flux_counts(sizes)
    out = {}
    for size in sizes:
        flops = {**flux[size], "head": count_flops(lambda: head(torch.empty(1, 3, size, size, device="meta")))}
        dev = flops["t5_512"] + 50 * flops["dev_step"] + flops["vae_decode"]
        schnell = flops["t5_256"] + 4 * flops["schnell_step"] + flops["vae_decode"]
        out[size] = {
            "size": size, "per_call_tflop": {k: round(v / 1e12, 3) for k, v in flops.items()},
            "dev50_tflop": round(dev / 1e12, 2), "schnell4_tflop": round(schnell / 1e12, 2),
            "schnell4_plus_head_tflop": round((schnell + flops["head"]) / 1e12, 2),
            "schnell_plus_head_pct_of_dev": round(100 * (schnell + flops["head"]) / dev, 2),
            "cost_reduction_pct": round(100 * (1 - (schnell + flops["head"]) / dev), 2),
            "head_arch": (f"{head_arch} ngf={PAPER_HEAD['ngf']} n_blocks={PAPER_HEAD['n_blocks']} (the paper's "
                          f"full-size head)") if paper else f"{head_arch} {kwargs} (as trained)",
        }
    return out


def _flux_counts(sizes: list[int]) -> dict[int, dict[str, int]]:
    """FLOPs of one schnell and one dev transformer step, the T5 encoder at 256 and 512 tokens and the VAE decode, at
    each size. Instantiating the 12B transformer and T5-XXL on the meta device and counting takes seconds in every
    benchmark run, and the counts depend only on the configurations, this file and the library versions: they are kept
    in a cache file keyed by all of those (FACEREALISM_CACHE, default ~/.cache/facerealism)."""
    import diffusers
    import transformers

    key = {"transformer": FLUX_TRANSFORMER, "t5": T5_XXL, "vae": FLUX_VAE, "sizes": sorted(sizes),
           "versions": [torch.__version__, diffusers.__version__, transformers.__version__],
           "code": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()}
    path = cache_dir() / "flops" / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24] + ".json")
    try:
        return {int(size): counts for size, counts in json.loads(path.read_text()).items()}
    except (OSError, ValueError):  # not counted yet, or a torn file: count again
        pass
    counts = _count_flux(sizes)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(counts))
    tmp.replace(path)  # atomic: a concurrent benchmark reads the old state or the whole file
    return counts


def _count_flux(sizes: list[int]) -> dict[int, dict[str, int]]:
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    with torch.device("meta"):
        flux = {g: FluxTransformer2DModel(guidance_embeds=g, **FLUX_TRANSFORMER) for g in (False, True)}
        t5 = T5EncoderModel(T5Config(**T5_XXL))
        vae = AutoencoderKL(**FLUX_VAE)

    def step(model, tokens, txt_len, guidance):
        def f():
            model(hidden_states=torch.empty(1, tokens, 64, device="meta"),
                  encoder_hidden_states=torch.empty(1, txt_len, 4096, device="meta"),
                  pooled_projections=torch.empty(1, 768, device="meta"),
                  timestep=torch.empty(1, device="meta"),
                  img_ids=torch.empty(tokens, 3, device="meta"), txt_ids=torch.empty(txt_len, 3, device="meta"),
                  guidance=torch.empty(1, device="meta") if guidance else None)
        return count_flops(f)

    # The text encoder does not depend on the image size: count it once.
    t5_flops = {n: count_flops(lambda n=n: t5(input_ids=torch.zeros(1, n, dtype=torch.long, device="meta")))
                for n in (256, 512)}
    counts = {}
    for size in sizes:
        tokens = (size // 16) ** 2  # 8x VAE downsampling, then 2x2 patches
        lat = size // 8
        counts[size] = {
            "schnell_step": step(flux[False], tokens, 256, False),
            "dev_step": step(flux[True], tokens, 512, True),
            "t5_256": t5_flops[256],
            "t5_512": t5_flops[512],
            "vae_decode": count_flops(lambda: vae.decode(torch.empty(1, 16, lat, lat, device="meta"))),
        }
    return counts


def cache_dir() -> Path:
    """facerealism's cache of derived numbers: $FACEREALISM_CACHE, else $XDG_CACHE_HOME/facerealism (~/.cache)."""
    if os.environ.get("FACEREALISM_CACHE"):
        return Path(os.environ["FACEREALISM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facerealism"
