"""Stage `benchmark`: head latency/throughput here, and a weights-free FLOPs cost model of full-size FLUX."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from facerealism.config import Config
from facerealism.files import write_json
from facerealism.head import load_head
from facerealism.models import build_generator
from facerealism.progress import progress

# Public FLUX.1 configurations (transformer, T5-XXL encoder, VAE) — architecture only, no weights.
FLUX_TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                        axes_dims_rope=(16, 56, 56))
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              feed_forward_proj="gated-gelu", is_encoder_decoder=False)
FLUX_VAE = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, use_quant_conv=False, use_post_quant_conv=False)
PAPER_HEAD = dict(ngf=64, n_blocks=9, residual_output=False)


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def flux_cost_model(size: int, head_arch: str) -> dict:
    """FLOPs per image on the meta device: dev-50 and schnell-4 text-to-image, and the head."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    tokens = (size // 16) ** 2  # 8x VAE downsampling, then 2x2 patches
    with torch.device("meta"):
        flux = {g: FluxTransformer2DModel(guidance_embeds=g, **FLUX_TRANSFORMER) for g in (False, True)}
        t5 = T5EncoderModel(T5Config(**T5_XXL))
        vae = AutoencoderKL(**FLUX_VAE)
        head = build_generator(head_arch, **PAPER_HEAD)

    def step(model, txt_len, guidance):
        def f():
            model(hidden_states=torch.empty(1, tokens, 64, device="meta"),
                  encoder_hidden_states=torch.empty(1, txt_len, 4096, device="meta"),
                  pooled_projections=torch.empty(1, 768, device="meta"),
                  timestep=torch.empty(1, device="meta"),
                  img_ids=torch.empty(tokens, 3, device="meta"), txt_ids=torch.empty(txt_len, 3, device="meta"),
                  guidance=torch.empty(1, device="meta") if guidance else None)
        return count_flops(f)

    lat = size // 8
    flops = {
        "schnell_step": step(flux[False], 256, False),
        "dev_step": step(flux[True], 512, True),
        "t5_256": count_flops(lambda: t5(input_ids=torch.zeros(1, 256, dtype=torch.long, device="meta"))),
        "t5_512": count_flops(lambda: t5(input_ids=torch.zeros(1, 512, dtype=torch.long, device="meta"))),
        "vae_decode": count_flops(lambda: vae.decode(torch.empty(1, 16, lat, lat, device="meta"))),
        "head": count_flops(lambda: head(torch.empty(1, 3, size, size, device="meta"))),
    }
    dev = flops["t5_512"] + 50 * flops["dev_step"] + flops["vae_decode"]
    schnell = flops["t5_256"] + 4 * flops["schnell_step"] + flops["vae_decode"]
    tera = {k: round(v / 1e12, 3) for k, v in flops.items()}
    return {
        "size": size, "per_call_tflop": tera,
        "dev50_tflop": round(dev / 1e12, 2), "schnell4_tflop": round(schnell / 1e12, 2),
        "schnell4_plus_head_tflop": round((schnell + flops["head"]) / 1e12, 2),
        "schnell_plus_head_pct_of_dev": round(100 * (schnell + flops["head"]) / dev, 2),
        "cost_reduction_pct": round(100 * (1 - (schnell + flops["head"]) / dev), 2),
        "head_arch": f"{head_arch} ngf={PAPER_HEAD['ngf']} n_blocks={PAPER_HEAD['n_blocks']} (the paper's full-size head)",
    }


@torch.inference_mode()
def time_head(G: torch.nn.Module, size: int, batch: int, repeats: int, bf16: bool) -> dict:
    x = torch.rand(batch, 3, size, size) * 2 - 1
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
    with ctx:
        G(x)  # warm-up: first call allocates and picks kernels
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            G(x)
            times.append(time.perf_counter() - t0)
    best = min(times)
    return {"ms_per_image": round(1000 * best / batch, 2), "images_per_s": round(batch / best, 2)}


def run(cfg: Config) -> dict:
    b = cfg.benchmark
    G, meta = load_head(Path(cfg.paths.models) / "head")
    speed = {}
    with progress() as bar:
        task = bar.add_task("benchmark head", total=2 * len(b.sizes))
        for size in b.sizes:
            fp32 = time_head(G, size, b.batch_size, b.repeats, bf16=False)
            bf16 = time_head(G, size, b.batch_size, b.repeats, bf16=True)
            speed[str(size)] = {"fp32": fp32, "bf16": bf16,
                                "bf16_speedup": round(bf16["images_per_s"] / fp32["images_per_s"], 2)}
            bar.advance(task, 2)
    flops = flux_cost_model(b.flops_size, meta["arch"])
    report = {"device": "cpu", "threads": torch.get_num_threads(), "head_arch": meta["arch"],
              "head_kwargs": meta["kwargs"], "head_speed": speed, "flops": flops}
    write_json(Path(cfg.paths.reports) / "benchmark.json", report)
    size0 = str(b.sizes[0])
    return {f"images_per_s@{size0}": speed[size0]["fp32"]["images_per_s"],
            "flops.cost_reduction_pct": flops["cost_reduction_pct"]}
