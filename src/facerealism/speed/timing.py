"""Speed measurements: one clock and one memory probe for the head's inference variants and the FLUX pipelines."""

from __future__ import annotations

import contextlib
import copy
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import torch

from facerealism.config import Config
from facerealism.precision import EMULATED_COST, Precision, resolve
from facerealism.progress import progress


def device() -> str:
    """The device the stage measures on: the GPU when there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


@contextlib.contextmanager
def peak_memory(device: str):
    """Yields a dict that holds {"peak_memory_mb", "memory_method"} once the block exits.

    CUDA: torch.cuda.max_memory_allocated over the block. CPU: the resident set size is sampled every 2 ms by a
    thread and the peak growth over the block's start is reported (torch's CPU allocator is invisible to
    tracemalloc); where /proc is missing, the process-lifetime ru_maxrss is all there is, and it says so.
    """
    out: dict = {}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        yield out
        out["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out["peak_above_start_mb"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
        out["memory_method"] = "torch.cuda.max_memory_allocated"
        return
    base = _rss_bytes()
    if base is None:
        yield out
        out["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        out["memory_method"] = "ru_maxrss (process lifetime peak, not per measurement)"
        return
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes() or 0)
            stop.wait(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], _rss_bytes() or 0)
        out["peak_memory_mb"] = round(peak[0] / 2**20, 1)
        out["peak_above_start_mb"] = round((peak[0] - base) / 2**20, 1)
        out["memory_method"] = "process RSS sampled every 2 ms (peak; growth over the start in peak_above_start_mb)"


def _autocast(device: str, bf16: bool):
    return torch.autocast(device, dtype=torch.bfloat16, enabled=bf16)


def bf16_plan(requested: str, device: str) -> tuple[Precision, str | None]:
    """Whether the bf16 variants are timed: (the resolved precision, None) or (..., why they are skipped).

    auto times them only where bf16 is native: emulated bf16 costs minutes here and measures nothing a user would run.
    """
    p = resolve(requested, device)
    if p.name == "fp32":
        why = "benchmark.mixed_precision is fp32" if requested == "fp32" else (
            f"bf16 is emulated on this {device} ({p.why}): {EMULATED_COST}")
        return p, why
    return p, None


def head_variants(G: torch.nn.Module, compile: bool, batch_size: int, bf16: bool = True) -> dict[str, dict]:
    """name -> {"module", "bf16", "channels_last", "batch"}: the ways to run the same head for inference.

    All run under torch.inference_mode. eager fp32 ("fp32") is the baseline every ratio is taken against.
    bf16=False leaves out the bf16 variants (where bf16 is emulated); the batched variant is then fp32.
    """
    cl = copy.deepcopy(G).to(memory_format=torch.channels_last)
    variants = {
        "fp32": dict(module=G, bf16=False, channels_last=False, batch=1),
        "bf16": dict(module=G, bf16=True, channels_last=False, batch=1),
        "channels_last": dict(module=cl, bf16=False, channels_last=True, batch=1),
        "channels_last_bf16": dict(module=cl, bf16=True, channels_last=True, batch=1),
    }
    if compile:
        # One compiled object per precision: autocast changes the graph, and a shared one would recompile.
        variants["compile"] = dict(module=torch.compile(G), bf16=False, channels_last=False, batch=1)
        variants["compile_bf16"] = dict(module=torch.compile(copy.deepcopy(G)), bf16=True, channels_last=False,
                                        batch=1)
    if not bf16:
        variants = {name: v for name, v in variants.items() if not v["bf16"]}
    if batch_size > 1:
        # The fastest single-image variant this machine runs, batched.
        best = {(False, False): "fp32", (False, True): "bf16", (True, False): "compile", (True, True): "compile_bf16"}[
            (compile, bf16)]
        variants[f"{best}_batch{batch_size}"] = {**variants[best], "batch": batch_size}
    return variants


@torch.inference_mode()
def time_head(G: torch.nn.Module, size: int, batch: int, repeats: int, bf16: bool, channels_last: bool = False,
              device: str = "cpu") -> dict:
    """Best-of-`repeats` latency of one forward pass after a warm-up call (which also pays any compilation).

    Returns:
        {"ms_per_image", "images_per_s", "median_ms_per_image", "warmup_s", "batch"}.
    """
    x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with _autocast(device, bf16):
        t0 = time.perf_counter()
        G(x)  # warm-up: first call allocates, picks kernels, compiles
        sync(device)
        warmup = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            G(x)
            sync(device)
            times.append(time.perf_counter() - t0)
    # Best-of: on a shared machine the minimum is the measurement least disturbed by other load.
    best, median = min(times), sorted(times)[len(times) // 2]
    return {"ms_per_image": round(1000 * best / batch, 2), "images_per_s": round(batch / best, 2),
            "median_ms_per_image": round(1000 * median / batch, 2), "warmup_s": round(warmup, 2), "batch": batch}


def head_speed(G: torch.nn.Module, cfg: Config, device: str) -> tuple[dict, dict]:
    """Every variant at every benchmark size, with its ratio to eager fp32 measured in the same run.

    Returns:
        ({size: {variant: timing + "ratio_vs_eager_fp32"}}, {size: {"variant", "ratio_vs_eager_fp32"}} of the best).
    """
    b = cfg.benchmark
    _, skip_bf16 = bf16_plan(b.mixed_precision, device)
    variants = head_variants(G.to(device), b.compile, b.batch_size, bf16=skip_bf16 is None)
    speed, best = {}, {}
    with progress() as bar:
        task = bar.add_task("benchmark head variants", total=len(variants) * len(b.sizes))
        for size in b.sizes:
            row = {}
            for name, v in variants.items():
                row[name] = time_head(v["module"], size, v["batch"], b.repeats, v["bf16"], v["channels_last"], device)
                bar.advance(task)
            base = row["fp32"]["images_per_s"]
            for r in row.values():
                r["ratio_vs_eager_fp32"] = round(r["images_per_s"] / base, 2)
            if "bf16" in row:
                row["bf16_speedup"] = row["bf16"]["ratio_vs_eager_fp32"]  # kept for earlier readers of this report
            name = max((n for n in row if isinstance(row[n], dict)), key=lambda n: row[n]["images_per_s"])
            best[str(size)] = {"variant": name, "ratio_vs_eager_fp32": row[name]["ratio_vs_eager_fp32"]}
            speed[str(size)] = row
    return speed, best


# --- Fig. 8: dev vs schnell vs schnell + head, end to end ----------------------------------------------------


def _load_pipelines(cfg: Config, tmp: Path, dtype: str):
    """(schnell FluxPipeline, dev FluxPipeline, description) per benchmark.pipelines."""
    from diffusers import FluxPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from facerealism.backends.flux import load_pipeline

    for lib in (diffusers_logging, transformers_logging):
        lib.disable_progress_bar()  # per-component load bars would bury the stage's own bar
    f = cfg.generate.flux
    if cfg.benchmark.pipelines == "tiny":
        from facerealism.backends.tiny_flux import build_tiny_flux

        # Different seeds: the two stand-ins must not be the same random network (as in tiny_flux's CLI).
        fast, slow = build_tiny_flux(tmp / "schnell", 0, "schnell"), build_tiny_flux(tmp / "dev", 10, "dev")
        desc = "tiny random FLUX (plumbing scale: the transformer is ~80k parameters, not 12B)"
        fast, slow = str(fast), str(slow)
    else:
        fast, slow = f.fast_model, f.slow_model
        desc = f"{fast} / {slow}"
    # Dev as its own text-to-image pipeline: Fig. 8 times dev generating from scratch, not its img2img pass.
    pipes = [load_pipeline(FluxPipeline, m, k, dtype) for m, k in ((fast, "fast_model"), (slow, "slow_model"))]
    for p in pipes:
        p.set_progress_bar_config(disable=True)
    return pipes[0], pipes[1], f"{desc}, {dtype}"


def pipeline_speed(cfg: Config, G: torch.nn.Module, device: str) -> dict:
    """ms/image, images/s and peak memory of dev, schnell and schnell + head at each benchmark.pipeline_sizes.

    Steps and guidance come from generate.flux (schnell fast_steps/fast_guidance; dev slow_steps/slow_guidance),
    one prompt per call, batch 1, best of benchmark.pipeline_repeats after one warm-up per pipeline and size.
    """
    b, f = cfg.benchmark, cfg.generate.flux
    if b.pipelines == "skip":
        return {"available": False, "reason": "benchmark.pipelines is skip"}
    prompt = "A professional portrait of Ada Lovelace"
    # generate.flux.dtype, except bfloat16 where this device emulates it: all three pipelines share one dtype, so
    # their ratios stay fair, and the stage does not spend minutes in emulated kernels.
    _, skip_bf16 = bf16_plan(b.mixed_precision, device)
    dtype = "float32" if f.dtype == "bfloat16" and skip_bf16 else f.dtype
    with tempfile.TemporaryDirectory() as tmp:
        schnell, dev, desc = _load_pipelines(cfg, Path(tmp), dtype)
        schnell.to(device)
        dev.to(device)
        G = G.to(device)

        def call(pipe, size, steps, guidance):
            return pipe(prompt=prompt, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
                        max_sequence_length=f.max_sequence_length, output_type="pt",
                        generator=torch.Generator("cpu").manual_seed(0)).images

        def run_schnell(size):
            return call(schnell, size, f.fast_steps, f.fast_guidance)

        def run_dev(size):
            return call(dev, size, f.slow_steps, f.slow_guidance)

        @torch.inference_mode()
        def run_schnell_head(size):
            # Eager fp32 head: the conservative variant, so the measured saving is not flattered by it.
            return G(run_schnell(size).to(device).float() * 2 - 1)  # (1, 3, s, s): [0, 1] -> the head's [-1, 1]

        fns = {"dev": run_dev, "schnell": run_schnell, "schnell+head": run_schnell_head}
        by_size, method = {}, ""
        with progress() as bar:
            # One tick per image (warm-up included): a dev image at the larger sizes takes many seconds.
            task = bar.add_task("benchmark pipelines (Fig. 8)",
                                total=len(b.pipeline_sizes) * len(fns) * (1 + b.pipeline_repeats))
            for size in b.pipeline_sizes:
                row = {}
                for name, fn in fns.items():
                    bar.update(task, description=f"benchmark pipelines (Fig. 8): {name} at {size} px")
                    fn(size)  # warm-up
                    sync(device)
                    bar.advance(task)
                    times = []
                    with peak_memory(device) as mem:
                        for _ in range(b.pipeline_repeats):
                            t0 = time.perf_counter()
                            fn(size)
                            sync(device)
                            times.append(time.perf_counter() - t0)
                            bar.advance(task)
                    best = min(times)
                    method = mem.pop("memory_method")
                    row[name] = {"ms_per_image": round(1000 * best, 2), "images_per_s": round(1 / best, 3), **mem}
                row["cost_reduction_pct_vs_dev"] = round(
                    100 * (1 - row["schnell+head"]["ms_per_image"] / row["dev"]["ms_per_image"]), 2)
                by_size[str(size)] = row
    note = "schnell+head runs the head in eager fp32 (the conservative variant)."
    if dtype != f.dtype:
        note += f" Pipelines in {dtype}, not generate.flux.dtype {f.dtype}: {skip_bf16}."
    if b.pipelines == "tiny":
        note += (" Tiny FLUX has ~10^5 times fewer transformer parameters than FLUX.1 while the head keeps its "
                 "trained size, so the head's share here is far above its real share; the FLOPs model gives the "
                 "full-size ratio.")
    return {"available": True, "models": desc, "memory_method": method, "note": note,
            "steps": {"schnell": f.fast_steps, "dev": f.slow_steps}, "by_size": by_size}
