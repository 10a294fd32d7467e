"""`facerealism gpu-bench --preset NAME`: each preset's fast T2I, slow I2I and slow T2I at full size, random weights."""

# What the FLUX.1 kit (bench/gpu.py) does for schnell/dev, per preset: the networks are built on the device from
# the shipped published architectures (the preset folders' configs, via preset_flops.build; "tiny": each preset's
# tiny_components
# for CPU tests), wired into the preset's own pipeline classes with its steps, guidance, strength, scheduler and
# full inpaint mask, then each call is timed after a warm-up that counts its FLOPs and its denoiser calls. The
# fast and slow denoisers are separate random networks; text encoders and VAE are one set shared by both, as the
# published pairs ship identical files. A LoRA is not applied (random LoRA weights would measure nothing that a
# fused LoRA costs); the Lightning preset is timed as the base with its fast scheduler and steps.

from __future__ import annotations

import time
from pathlib import Path

import torch

from facerealism import presets
from facerealism.backends.diffusers import denoiser
from facerealism.bench.gpu import PROMPT, Clock, _measure
from facerealism.config import load_config
from facerealism.errors import UserError
from facerealism.speed.preset_flops import build


def _full_components(preset: presets.Preset, device: str, dtype: torch.dtype) -> dict:
    """{"fast", "slow"}: pipeline components at full size; the two share every module but the denoiser."""
    fam = preset.family
    b = lambda name: build(name, device, dtype)  # noqa: E731
    encoders = {f"text_encoder{f'_{i + 1}' if i else ''}": fam.encoder_module(b(name))
                for i, name in enumerate(fam.encoders)}
    shared = {**encoders, "vae": b(fam.vae), **fam.pipeline_parts()}
    return {which: {**shared, fam.denoiser_key: b(fam.denoiser), **_distilled(preset, which)}
            for which in ("fast", "slow")}


def _distilled(preset: presets.Preset, which: str) -> dict:
    """The pipeline's own flag for a step-distilled model, where its family has one (FLUX.2 klein: is_distilled)."""
    flag = preset.family.distilled_flag
    return {flag: which in preset.distilled} if flag else {}


def _tiny_components(preset: presets.Preset) -> dict:
    """{"fast", "slow"} from the preset's tiny builder (CPU tests of this code path), sharing all but the denoiser."""
    fast, slow = preset.tiny_components(10, 0, True), preset.tiny_components(20, 0, False)
    key = preset.family.denoiser_key
    return {"fast": fast, "slow": {**fast, key: slow[key], **_distilled(preset, "slow")}}


def preset_pipelines(name: str, configs: str, device: str, dtype: torch.dtype):
    """{"fast", "slow_i2i", "slow_t2i"} pipelines of a preset and its generate.diffusers section.

    Args:
        name: preset name (facerealism.presets).
        configs: "full" (the presets' architecture configs, published sizes) or "tiny" (each preset's tiny builder).
        device, dtype: where and how the modules are built.
    """
    import diffusers

    preset = presets.get(name)
    d = load_config(preset.params).generate.diffusers
    torch.manual_seed(0)
    if configs == "full":
        comps = _full_components(preset, device, dtype)
    elif configs == "tiny":
        comps = _tiny_components(preset)
    else:
        raise UserError(f"--configs for presets must be full or tiny, got {configs!r}")
    fast = dict(comps["fast"])
    if d.fast_scheduler:
        cls = getattr(diffusers, d.fast_scheduler)
        fast["scheduler"] = cls.from_config(fast["scheduler"].config, **d.fast_scheduler_kwargs)
    fast_cls, slow_cls = getattr(diffusers, d.fast_pipeline), getattr(diffusers, d.slow_pipeline)
    pipes = {"fast": fast_cls(**fast), "slow_i2i": slow_cls(**comps["slow"]), "slow_t2i": fast_cls(**comps["slow"])}
    for p in pipes.values():
        p.to(device, dtype)
        p.set_progress_bar_config(disable=True)
    return pipes, d


def preset_row(pipes: dict, d, size: int, repeats: int, device: str) -> dict:
    """Fast T2I, slow I2I (the preset's strength) and slow T2I at one size, batch 1, and their ratios."""
    from PIL import Image

    gen = lambda: torch.Generator("cpu").manual_seed(0)  # noqa: E731
    init = Image.new("RGB", (size, size), (128, 110, 100))
    mask = {"mask_image": Image.new("L", (size, size), 255)} if d.slow_full_mask else {}
    common = {"prompt": PROMPT, "height": size, "width": size, "output_type": "pt"}
    calls = {
        "fast": lambda: pipes["fast"](**common, generator=gen(), **d.fast_kwargs).images,
        "slow_i2i": lambda: pipes["slow_i2i"](**common, image=init, strength=d.strength, generator=gen(), **mask,
                                              **d.slow_kwargs).images,
        "slow_t2i": lambda: pipes["slow_t2i"](**common, generator=gen(), **d.slow_kwargs).images,
    }
    row = {k: _measure(fn, repeats, device, denoiser(pipes[k])) for k, fn in calls.items()}
    for r in row.values():
        r["denoiser_calls"] = r.pop("transformer_calls")
    row["ratio"] = {f"fast/{ref}": {"measured_pct": round(100 * row["fast"]["ms_per_image"] / row[ref]["ms_per_image"], 2),
                                    "counted_flops_pct": round(100 * row["fast"]["flop"] / row[ref]["flop"], 2)}
                    for ref in ("slow_t2i", "slow_i2i")}
    return row


def run_presets(names: list[str], sizes: list[int] | None, configs: str, dtype: torch.dtype, device: str,
                repeats: int, clock: Clock) -> dict:
    """Every named preset at each size (default: the preset's generate.size), within the clock's budget."""
    from facerealism.backends.full_flux import parameter_counts

    out = {}
    for name in names or presets.names():
        if clock.left() < 60 and out:
            out[name] = {"skipped": f"time budget ({clock.left():.0f} s left)"}
            continue
        t0 = time.perf_counter()
        pipes, d = preset_pipelines(name, configs, device, dtype)
        build_s = time.perf_counter() - t0
        mods = {"fast_denoiser": denoiser(pipes["fast"]), "slow_denoiser": denoiser(pipes["slow_i2i"]),
                **{k: getattr(pipes["fast"], k) for k in ("text_encoder", "text_encoder_2", "text_encoder_3", "vae")
                   if getattr(pipes["fast"], k, None) is not None}}
        rows = {str(s): preset_row(pipes, d, s, repeats, device) for s in (sizes or [load_config(
            presets.get(name).params).generate.size])}
        out[name] = {"build_s": round(build_s, 2), "params": parameter_counts(mods),
                     "settings": {"fast_kwargs": d.fast_kwargs, "slow_kwargs": d.slow_kwargs, "strength": d.strength,
                                  "fast_pipeline": d.fast_pipeline, "slow_pipeline": d.slow_pipeline},
                     "sizes": rows}
        del pipes
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def run_preset_kit(out: str | Path, names: list[str], sizes: list[int] | None, configs: str = "full",
                   dtype: str = "auto", device: str = "auto", repeats: int = 2, budget_s: float = 480) -> dict:
    """Run the presets' pipelines and write the JSON report (beside each measured row, the FLOPs model's figures
    for the full-size configs).

    Returns:
        {"device", "dtype", "configs", "presets": {name: {"params", "settings", "sizes": {side: row}}},
         "flops_model": {name: {side: preset_flops.preset_cost}} (full configs only), "wall_s"}.
    """
    import platform

    from facerealism.bench.gpu import DTYPES
    from facerealism.precision import pipeline_dtype
    from facerealism.files import write_json
    from facerealism.speed.preset_flops import preset_cost

    clock = Clock(budget_s)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    dtype = pipeline_dtype(dtype, device)  # auto: bfloat16 only where the device computes it natively
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {list(DTYPES)}, got {dtype!r}")
    unknown = [n for n in names if n not in presets.registry()]
    if unknown:
        raise UserError(f"unknown preset(s) {unknown}; known: {presets.names()}")
    report = {"device": device, "device_name": torch.cuda.get_device_name() if device == "cuda"
              else platform.processor() or "cpu", "dtype": dtype, "configs": configs, "torch": torch.__version__,
              "weights": "random", "presets": run_presets(names, sizes, configs, DTYPES[dtype], device, repeats, clock)}
    if configs == "full":
        report["flops_model"] = {n: {s: preset_cost(n, int(s)) for s in r.get("sizes", {})}
                                 for n, r in report["presets"].items()}
    report["wall_s"] = round(clock.elapsed(), 1)
    report["within_budget"] = report["wall_s"] <= budget_s
    write_json(Path(out), report)
    return report
