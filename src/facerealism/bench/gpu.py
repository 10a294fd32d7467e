"""`facerealism gpu-bench`: full-size FLUX.1 dev vs schnell + head, head throughput and training speed in one report."""

# One command for a fresh GPU box (infra/gpu/run_kit.sh), inside a wall-time budget:
#   1. pipelines: FLUX.1-dev image-to-image at the paper's settings (strength 0.7, 50 steps -> 35 transformer
#      calls), dev text-to-image 50 steps (what the FLOPs model compares against), schnell 4 steps, and
#      schnell 4 steps + head; each call's FLOPs are counted on its warm-up run (FlopCounterMode) and its
#      transformer calls by a hook, so the measured cost ratio sits beside the counted one and the
#      full-size FLOPs model (flops.flux_cost_models: 7.0 % at 512^2);
#   2. head throughput: eager fp32 / bf16 / channels-last / torch.compile at batch 1, then batch 1...64
#      with peak memory;
#   3. ESA-CycleGAN training steps/s (bench/train.py: the train stage's own step) at each train size.
# Without weights the modules are random, built from configs/flux1 (backends.full_flux); with real
# weights (hub ids in the local cache, or local diffusers folders) those are used instead. The same
# code runs on CPU from tiny configs (`configs="tiny"`) in the test suite.

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from facerealism.backends import full_flux
from facerealism.errors import UserError
from facerealism.files import write_json
from facerealism.models import build_generator
from facerealism.precision import EMULATED_COST, bf16_support, pipeline_dtype
from facerealism.speed.flops import count_flops, flux_cost_models
from facerealism.speed.timing import head_variants, peak_memory, sync, time_head

PROMPT = "A professional portrait of Ada Lovelace, natural light, 85 mm"
DEV_STEPS, DEV_GUIDANCE, STRENGTH, DEV_TOKENS = 50, 3.5, 0.7, 512  # the paper's dev img2img settings
SCHNELL_STEPS, SCHNELL_TOKENS = 4, 256
DEFAULT_IDS = {"schnell": "black-forest-labs/FLUX.1-schnell", "dev": "black-forest-labs/FLUX.1-dev"}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class Clock:
    """The wall-time budget: what is left, and whether an estimated step still fits."""

    def __init__(self, budget_s: float):
        self.start, self.budget = time.perf_counter(), budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - self.elapsed()


def find_weights(schnell: str | None, dev: str | None) -> dict[str, str] | None:
    """{"schnell", "dev"} model ids/folders when both are on disk, else None (random weights from configs).

    Order: the arguments, FACEREALISM_FLUX_SCHNELL / _DEV, then the published hub ids in the local cache.
    An argument that names weights which are not there is an error, not a silent fallback.
    """
    from facerealism.backends.flux import model_dir

    given = {"schnell": schnell, "dev": dev}
    if any(given.values()):
        missing = [f"--{k} {v}" for k, v in given.items() if not v or model_dir(v) is None]
        if missing:
            raise UserError(f"real weights requested but not found: {', '.join(missing)} (give both --schnell and "
                             f"--dev as local diffusers folders or hub ids in the local cache)")
        return given
    found = {k: os.environ.get(f"FACEREALISM_FLUX_{k.upper()}") or DEFAULT_IDS[k] for k in given}
    return found if all(model_dir(v) is not None for v in found.values()) else None


def load_real(weights: dict[str, str], dtype: str) -> dict:
    """Real FLUX.1 pipelines, dev reusing schnell's identical text encoders and VAE (one copy in memory)."""
    from diffusers import FluxImg2ImgPipeline, FluxPipeline

    from facerealism.backends.flux import load_pipeline, shared_modules

    schnell = load_pipeline(FluxPipeline, weights["schnell"], "fast_model", dtype)
    dev = load_pipeline(FluxPipeline, weights["dev"], "slow_model", dtype,
                        components=shared_modules(schnell, weights["schnell"], weights["dev"], True))
    out = {"schnell": schnell, "dev": dev, "dev_i2i": FluxImg2ImgPipeline(**dev.components)}
    for p in out.values():
        p.set_progress_bar_config(disable=True)
    return out


def _modules(pipes: dict) -> dict:
    """Each distinct module once, named as in the report (shared encoders and VAE counted once)."""
    s, d = pipes["schnell"], pipes["dev"]
    return {"transformer_schnell": s.transformer, "transformer_dev": d.transformer, "text_encoder": s.text_encoder,
            "text_encoder_2": s.text_encoder_2, "vae": s.vae}


def _measure(fn, repeats: int, device: str, transformer: torch.nn.Module | None = None) -> dict:
    """Best-of-`repeats` wall time of fn() after a warm-up that also counts its FLOPs and transformer calls."""
    calls = [0]
    hook = transformer.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1)) if transformer else None
    try:
        t0 = time.perf_counter()
        flops = count_flops(fn)
        sync(device)
        warmup = time.perf_counter() - t0
        per_call = calls[0]
        times = []
        with peak_memory(device) as mem:
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                sync(device)
                times.append(time.perf_counter() - t0)
    finally:
        if hook:
            hook.remove()
    best = min(times)
    mem.pop("memory_method")
    return {"ms_per_image": round(1000 * best, 2), "median_ms_per_image": round(1000 * sorted(times)[len(times) // 2], 2),
            "images_per_s": round(1 / best, 4), "warmup_s": round(warmup, 2), "flop": flops,
            "tflop": float(f"{flops / 1e12:.4g}"),
            "transformer_calls": per_call if transformer else None, "repeats": repeats, **mem}


def pipeline_row(pipes: dict, head: torch.nn.Module, size: int, repeats: int, device: str) -> dict:
    """dev img2img, dev text-to-image, schnell and schnell + head at one size, batch 1, and their ratios."""
    gen = lambda: torch.Generator("cpu").manual_seed(0)  # noqa: E731 (CPU noise: the same on every device)
    init = torch.rand(1, 3, size, size, generator=torch.Generator("cpu").manual_seed(1))  # (1, 3, s, s) in [0, 1]

    def schnell():
        return pipes["schnell"](prompt=PROMPT, num_inference_steps=SCHNELL_STEPS, guidance_scale=0.0, height=size,
                                width=size, max_sequence_length=SCHNELL_TOKENS, output_type="pt",
                                generator=gen()).images

    @torch.inference_mode()
    def schnell_head():
        # Eager fp32 head, the conservative variant; random weights may give NaN images, which cost the same.
        x = torch.nan_to_num(schnell().to(device).float()) * 2 - 1  # [0, 1] -> the head's [-1, 1]
        return head(x)

    def dev_i2i():
        return pipes["dev_i2i"](prompt=PROMPT, image=init, strength=STRENGTH, num_inference_steps=DEV_STEPS,
                                guidance_scale=DEV_GUIDANCE, height=size, width=size,
                                max_sequence_length=DEV_TOKENS, output_type="pt", generator=gen()).images

    def dev_t2i():
        return pipes["dev"](prompt=PROMPT, num_inference_steps=DEV_STEPS, guidance_scale=DEV_GUIDANCE, height=size,
                            width=size, max_sequence_length=DEV_TOKENS, output_type="pt", generator=gen()).images

    row = {
        "dev_i2i": _measure(dev_i2i, repeats, device, pipes["dev"].transformer),
        "dev_t2i": _measure(dev_t2i, repeats, device, pipes["dev"].transformer),
        "schnell": _measure(schnell, repeats, device, pipes["schnell"].transformer),
        "schnell+head": _measure(schnell_head, repeats, device, pipes["schnell"].transformer),
    }
    sh = row["schnell+head"]
    row["ratio"] = {
        f"schnell+head/{ref}": {
            "measured_pct": round(100 * sh["ms_per_image"] / row[ref]["ms_per_image"], 2),
            "counted_flops_pct": round(100 * sh["flop"] / row[ref]["flop"], 2) if row[ref]["flop"] else None}
        for ref in ("dev_t2i", "dev_i2i")}
    return row


def head_throughput(head: torch.nn.Module, size: int, batches: list[int], repeats: int, compile: bool,
                    device: str, clock: Clock, bf16: bool = True) -> dict:
    """Every inference variant at batch 1 with peak memory, then batch 1...max of the fastest one.

    Returns:
        {"size", "variants": {name: timing}, "batch_variant", "batches": {b: timing or {"error"}}}.
    """
    variants = head_variants(head.to(device).eval(), compile, 1, bf16=bf16)
    out = {"size": size, "variants": {}, "batches": {}}
    for name, v in variants.items():
        with peak_memory(device) as mem:
            r = time_head(v["module"], size, 1, repeats, v["bf16"], v["channels_last"], device)
        mem.pop("memory_method")
        out["variants"][name] = {**r, **mem}
    base = out["variants"]["fp32"]["images_per_s"]
    for r in out["variants"].values():
        r["ratio_vs_eager_fp32"] = round(r["images_per_s"] / base, 2)
    best = max(out["variants"], key=lambda n: out["variants"][n]["images_per_s"])
    out["batch_variant"] = best
    v = variants[best]
    for b in batches:
        if clock.left() < 30:
            out["batches"][str(b)] = {"skipped": f"time budget ({clock.left():.0f} s left)"}
            continue
        try:
            with peak_memory(device) as mem:
                r = time_head(v["module"], size, b, repeats, v["bf16"], v["channels_last"], device)
        except torch.OutOfMemoryError as e:
            torch.cuda.empty_cache()
            out["batches"][str(b)] = {"error": f"out of memory ({str(e).splitlines()[0][:120]})"}
            break  # larger batches need more
        mem.pop("memory_method")
        out["batches"][str(b)] = {**r, **mem}
    return out


def training_speed(sizes: list[int], kwargs: dict, steps: int, batch_size: int, clock: Clock,
                   bf16: bool = True) -> dict:
    """ESA-CycleGAN training steps/s per size and precision (bench/train.py: the train stage's own step)."""
    from facerealism.bench import train

    out = {}
    for size in sizes:
        if clock.left() < 30:
            out[str(size)] = {"skipped": f"time budget ({clock.left():.0f} s left)"}
            continue
        r = train.bench(size, batch_size, steps, warmup=2, ngf=kwargs.get("ngf", 64),
                        n_blocks=kwargs.get("n_blocks", 9), images=8,
                        variants=None if bf16 else [n for n, (p, _) in train.VARIANTS.items() if p == "fp32"])
        out[str(size)] = {name: {"step_s": round(v["step_s"], 4), "steps_per_s": round(1 / v["step_s"], 3),
                                 "speedup_vs_fp32": round(v["speedup"], 2)} for name, v in r.items()}
    return out


def run_kit(out: str | Path, sizes: list[int], configs: str = "full", schnell: str | None = None,
            dev: str | None = None, head_dir: str | None = None, dtype: str = "auto", device: str = "auto",
            repeats: int = 2, budget_s: float = 480, head_size: int = 512,
            head_batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64), train_sizes: tuple[int, ...] = (256, 512),
            train_steps: int = 5, compile: bool = True, use_real: bool = True) -> dict:
    """Run the whole kit and write its JSON report.

    Args:
        out: report path (.json).
        sizes: pipeline image sides, multiples of 16, smallest first; a size is skipped (with the reason) when
            the estimate from the previous one does not fit the budget.
        configs: "full" (configs/flux1), "tiny" (tiny_flux's architecture) or a folder of full_flux.FILES.
        schnell, dev: real weights (hub ids or local folders); without them, found ones or random weights.
        head_dir: a trained head folder instead of the configs' head.json (random weights).
        dtype: pipeline precision; "auto": bfloat16 where the device computes it natively, else float32 (and the
            head's and training's bf16 variants are then skipped, with the reason in the report).
        device: "auto" (cuda if available), "cuda" or "cpu".
        repeats: timed calls per measurement (after one warm-up).
        budget_s: wall-time budget for everything, model construction included.
        head_size, head_batches: head throughput side and batch sweep.
        train_sizes, train_steps: CycleGAN training benchmark sides and timed steps per precision.
        compile: include torch.compile head variants.
        use_real: look for real weights at all (False: always random weights from configs).
    Returns:
        The report (also written to `out`).
    """
    clock = Clock(budget_s)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but torch sees no CUDA device")
    native_bf16, bf16_why = bf16_support(device)
    dtype = pipeline_dtype(dtype, device)
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {list(DTYPES)}, got {dtype!r}")
    bad = [s for s in sizes if s <= 0 or s % 16]
    if bad or not sizes:
        raise UserError(f"--sizes must be positive multiples of 16 (FLUX packs 2x2 latents of an 8x VAE), got {sizes}")
    sizes = sorted(sizes)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_dir = {"full": full_flux.FULL, "tiny": None}.get(configs, Path(configs))
        if cfg_dir is None:
            cfg_dir = full_flux.write_tiny_configs(Path(tmp) / "tiny")
        weights = find_weights(schnell, dev) if use_real else None
        t0 = time.perf_counter()
        if weights:
            pipes = load_real(weights, dtype)
            for p in pipes.values():
                p.to(device)
            source = f"real weights: schnell {weights['schnell']}, dev {weights['dev']}"
        else:
            pipes = full_flux.pipelines(full_flux.build_modules(cfg_dir, device, DTYPES[dtype]))
            source = f"random weights from {'configs/flux1 (published full-size architecture)' if cfg_dir == full_flux.FULL else cfg_dir}"
        build_s = time.perf_counter() - t0
        head_cfg = full_flux.read_config(cfg_dir, "head")
    if head_dir:
        from facerealism.head import load_head

        head, meta = load_head(head_dir)
        head_cfg = {"arch": meta["arch"], "kwargs": meta["kwargs"], "weights": str(head_dir)}
    else:
        head = build_generator(head_cfg["arch"], **head_cfg["kwargs"])
        head_cfg = {**head_cfg, "weights": "random"}
    head = head.float().to(device).eval()
    report = {
        "device": device, "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "dtype": dtype, "bf16": {"native": native_bf16, "detection": bf16_why,
                                 "skipped": None if native_bf16 else f"bf16 is emulated here: {EMULATED_COST}"},
        "weights": source, "configs": str(configs), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "build_s": round(build_s, 2),
        "params": full_flux.parameter_counts(_modules(pipes)), "head": {**head_cfg,
                                                                         "params": sum(p.numel() for p in head.parameters())},
        "settings": {"dev": {"steps": DEV_STEPS, "strength": STRENGTH, "guidance": DEV_GUIDANCE,
                             "max_sequence_length": DEV_TOKENS, "expected_i2i_calls": int(DEV_STEPS * STRENGTH)},
                     "schnell": {"steps": SCHNELL_STEPS, "guidance": 0.0, "max_sequence_length": SCHNELL_TOKENS},
                     "batch": 1, "repeats": repeats, "budget_s": budget_s},
        "sizes_requested": sizes, "pipelines": {}, "skipped": {},
    }

    # 1. Pipelines, smallest size first; a larger one only if its estimate (time x FLOPs growth) fits.
    # 512^2 always: the paper's reference point (7.0 % for the paper's head).
    flops_model = flux_cost_models(sorted({512, *sizes}), head_cfg["arch"], head_cfg["kwargs"])
    report["flops_model"] = {str(s): m for s, m in flops_model.items()}
    reserve = 120 if device == "cuda" else 0  # head and training still to come
    last = None
    for size in sizes:
        if last is not None:
            spent = sum(r["warmup_s"] + r["repeats"] * r["ms_per_image"] / 1000 for k, r in
                        report["pipelines"][str(last)].items() if k != "ratio")
            estimate = spent * flops_model[size]["dev50_tflop"] / flops_model[last]["dev50_tflop"]
            if estimate > clock.left() - reserve:
                report["skipped"][str(size)] = (f"estimated {estimate:.0f} s (from {last}^2 scaled by FLOPs) > "
                                                f"{clock.left() - reserve:.0f} s left in the budget")
                continue
        report["pipelines"][str(size)] = pipeline_row(pipes, head, size, repeats, device)
        last = size
    report["sizes_measured"] = [int(s) for s in report["pipelines"]]
    del pipes
    if device == "cuda":
        torch.cuda.empty_cache()  # the head and training benchmarks get the memory back

    # 2. Head throughput; 3. training speed.
    report["head_throughput"] = head_throughput(head, head_size, list(head_batches), repeats, compile, device, clock,
                                                bf16=native_bf16)
    report["train"] = training_speed(list(train_sizes), head_cfg["kwargs"], train_steps, 1, clock, bf16=native_bf16)
    report["wall_s"] = round(clock.elapsed(), 1)
    report["within_budget"] = report["wall_s"] <= budget_s
    write_json(Path(out), report)
    return report


def tables(report: dict) -> list:
    """The report as rich Tables: pipelines with measured vs FLOPs ratios, head throughput, training."""
    from rich.table import Table

    out = []
    t = Table(title=f"FLUX.1 on {report['device_name']} ({report['device']}), {report['dtype']}, batch 1 - "
                    f"{report['weights']}",
              caption="ratio: schnell+head as % of dev; counted = FLOPs of the timed call, model = full-size FLOPs "
                      f"model (stages.benchmark) at that side; at 512^2 (the paper's point) the model gives "
                      f"{report['flops_model']['512']['schnell_plus_head_pct_of_dev']} %")
    for col in ("side", "pipeline", "transformer calls", "ms/img", "peak MB", "TFLOP counted", "% of dev_t2i",
                "% of dev_i2i"):
        t.add_column(col, justify="right")
    for size, row in report["pipelines"].items():
        for name in ("dev_i2i", "dev_t2i", "schnell", "schnell+head"):
            r = row[name]
            pct = lambda ref: (f"{row['ratio'][f'schnell+head/{ref}']['measured_pct']:.2f} measured\n"  # noqa: E731
                               f"{row['ratio'][f'schnell+head/{ref}']['counted_flops_pct']} counted")
            model = report["flops_model"][size]["schnell_plus_head_pct_of_dev"]  # full-size FLUX at this side
            t.add_row(size, name, str(r["transformer_calls"]), f"{r['ms_per_image']:.1f}", f"{r['peak_memory_mb']:.0f}",
                      f"{r['tflop']:.4g}", pct("dev_t2i") + f"\n{model} model" if name == "schnell+head" else "",
                      pct("dev_i2i") if name == "schnell+head" else "")
    for size, why in report["skipped"].items():
        t.add_row(size, "skipped", why, "", "", "", "", "")
    out.append(t)
    h = report["head_throughput"]
    ht = Table(title=f"head {report['head']['arch']} {report['head']['kwargs']} at {h['size']}^2 "
                     f"(batch sweep: {h['batch_variant']})")
    for col in ("variant", "batch", "ms/img", "img/s", "x eager fp32", "peak MB"):
        ht.add_column(col, justify="right")
    for name, r in h["variants"].items():
        ht.add_row(name, "1", f"{r['ms_per_image']:.2f}", f"{r['images_per_s']:.1f}", f"{r['ratio_vs_eager_fp32']:.2f}",
                   f"{r['peak_memory_mb']:.0f}")
    for b, r in h["batches"].items():
        if "images_per_s" in r:
            ht.add_row(h["batch_variant"], b, f"{r['ms_per_image']:.2f}", f"{r['images_per_s']:.1f}", "",
                       f"{r['peak_memory_mb']:.0f}")
        else:
            ht.add_row(h["batch_variant"], b, r.get("error") or r.get("skipped"), "", "", "")
    out.append(ht)
    tr = Table(title="ESA-CycleGAN training (2 G + 2 D per step, batch 1)")
    for col in ("side", "precision", "steps/s", "x fp32"):
        tr.add_column(col, justify="right")
    for size, row in report["train"].items():
        for name, r in row.items():
            if isinstance(r, dict):
                tr.add_row(size, name, f"{r['steps_per_s']:.3g}", f"{r['speedup_vs_fp32']:.2f}")
            else:
                tr.add_row(size, "skipped", r, "")
    out.append(tr)
    return out

