"""Preflight: build every stage's objects from the resolved config, run none, and fail in seconds on a mismatch.

`facerealism check` prints what it found; `facerealism run` runs it before the first stage. Checked: the head, its
discriminators and one forward of a small image on the CPU (random init, no weights); the backend's model sources (local
folders, the Hugging Face cache: what a run would download); the metrics' weight files; the register gate's metric
names against those evaluate writes; one ceiling per photo rule; the controls; the registry settings; the resources
(facerealism.orchestration.resources): the disk, RAM and GPU-hours the profile needs against this machine, and the
dataset's size against the batch size and split fractions. The first inconsistency is a UserError of one line naming
the keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from facerealism.config import Config
from facerealism.errors import UserError
from facerealism.orchestration.resources import ASSUMED_TFLOPS, ASSUMED_UTILISATION, GB, Machine, estimate
from facerealism.precision import EMULATED_COST, resolve


@dataclass
class Findings:
    """What preflight saw, stage by stage (printed by `facerealism check`), and the problems it found."""

    lines: list[tuple[str, str]] = field(default_factory=list)  # (stage, what)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # allowed, but likely not what the user wants

    def note(self, stage: str, what: str) -> None:
        self.lines.append((stage, what))

    def error(self, message: str) -> None:
        self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def check_train(cfg: Config, f: Findings) -> None:
    """The head and its discriminators built, and one image through them (the shape check of the training side)."""
    import torch

    from facerealism.config.architectures import ARCHITECTURES, generator_kwargs, recipe
    from facerealism.models import build_discriminator, build_generator

    t = cfg.train
    p = resolve(t.mixed_precision)
    f.note("train", f"precision {p.label}: {p.why}")
    if p.name == "bf16" and not p.native_bf16:
        f.warn(f"train.mixed_precision=bf16 on a device that emulates bf16 ({p.why}): {EMULATED_COST}; "
               f"set train.mixed_precision=auto (fp32 here)")
    if t.detail and not t.residual_output and t.model != "unet_cbam":
        f.error(f"train.detail=true needs train.residual_output=true (the detail head adds gains to its input); "
                f"set train.detail=false for a free generator with tanh output (train.model={t.model})")
        return
    if t.lpips_weights and not Path(t.lpips_weights).exists():
        f.error(f"train.lpips_weights={t.lpips_weights!r} does not exist")
    side = t.crop or cfg.generate.size
    # One image through the CPU nets: the meta device would cost seconds of lazy setup on its first op. Sides above
    # 64 px are probed at 64 + side % 4, which keeps what the architecture checks (divisibility by 4) at a 64-px cost.
    probe = side if side <= 64 else 64 + side % 4
    for model in (t.model, *t.baseline_models):
        r = recipe(t.model_copy(update={"model": model}))
        try:
            with torch.no_grad():
                G = build_generator(model, **generator_kwargs(t.model_copy(update={"model": model})))
                x = torch.zeros(1, 3, probe, probe)
                y = G(x)
                if ARCHITECTURES[model].trainer == "cyclegan":  # the trainer with discriminators (D_A, D_B)
                    try:
                        build_discriminator(t.discriminator, ndf=t.ndf, n_layers=t.d_layers)(y)
                    except UserError as e:
                        raise UserError(f"train.discriminator={t.discriminator} with "
                                        f"train.d_layers={t.d_layers}: {e}") from None
        except UserError as e:
            f.error(f"train.model={model}: {e}")
            continue
        except RuntimeError as e:  # shapes that do not fit the architecture
            f.error(f"train.model={model} at {side}x{side} px (train.crop / generate.size): "
                    f"{str(e).splitlines()[0]}")
            continue
        if tuple(y.shape) != tuple(x.shape):
            f.error(f"train.model={model}: the head maps {tuple(x.shape)} to {tuple(y.shape)}; it must keep the shape")
        n = sum(p.numel() for p in G.parameters())
        f.note("train", f"{model}: {r.label} ({r.id}), {n:,} parameters, output {'tanh' if not t.residual_output else 'detail gains' if t.detail else 'residual'}, "
                        f"batch {t.batch_size} x {side}²; lambda_cyc {t.lambda_cyc:g}, lambda_paired {t.lambda_paired:g}, "
                        f"lr {t.lr:g}, {t.steps} steps")


def check_generate(cfg: Config, f: Findings) -> None:
    """The backend exists and its models can be found: local folders complete, hub ids cached or to download."""
    from facerealism.backends import BACKENDS
    from facerealism.backends.flux import local_model_problem, model_dir

    g = cfg.generate
    if g.backend not in BACKENDS:
        f.error(f"generate.backend: unknown backend {g.backend!r}; known: {sorted(BACKENDS)}")
        return
    if g.backend == "synthetic":
        f.note("generate", f"synthetic: procedural pairs at {g.size}² (no weights)")
        return
    section = getattr(g, g.backend)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    for key in ("fast_model", "slow_model"):
        model = getattr(section, key)
        problem = local_model_problem(model, key, g.backend)
        if problem:
            f.error(problem)
            continue
        if Path(model).expanduser().is_dir():
            f.note("generate", f"{g.backend}.{key}: local folder {model}")
        elif model_dir(model) is not None:
            f.note("generate", f"{g.backend}.{key}: hub id {model}, in the Hugging Face cache")
        elif offline:
            f.error(f"generate.{g.backend}.{key}: hub id {model} is not in the Hugging Face cache and HF_HUB_OFFLINE "
                    f"is set; download it first or point the key at a local folder")
        else:
            f.note("generate", f"{g.backend}.{key}: hub id {model}, not cached: the run downloads it")
    if g.size % 16:
        f.error(f"generate.size={g.size}: FLUX-style pipelines need a multiple of 16 (2x2 patches of 8x latents)")


def check_evaluate(cfg: Config, f: Findings) -> None:
    """Configured weight files exist; unset ones come from each library's cache (reported) or a download."""
    from facerealism.scoring import controls
    from facerealism.metrics.pretrained import torch_hub_dir

    e = cfg.evaluate
    unknown = [c for c in e.controls if c not in controls.CONTROLS]
    if unknown:
        f.error(f"evaluate.controls: unknown control(s) {unknown}; choose from {list(controls.CONTROLS)}")
    for key in ("inception_weights", "lpips_weights", "dinov2_weights", "clip_model"):
        value = getattr(e, key)
        if value is None:
            continue
        if not Path(value).exists():
            f.error(f"evaluate.{key}={value!r} does not exist (unset it to use the library's cache or download)")
        else:
            f.note("evaluate", f"{key}: {value}")
    cached = sorted(p.name for p in (torch_hub_dir() / "checkpoints").glob("*")) if (
        torch_hub_dir() / "checkpoints").is_dir() else []
    f.note("evaluate", f"torch hub cache {torch_hub_dir()}: {', '.join(cached) or 'empty'} (unset weights: cache, "
                       f"else download, else the column reads unavailable)")
    for label, folder in e.extra_heads.items():
        if not (Path(folder) / "head.json").is_file():
            f.error(f"evaluate.extra_heads.{label}: {folder} holds no trained head (head.json)")
    f.note("evaluate", f"{len(e.controls)} controls; spaces {', '.join(e.spaces)}; bootstrap {e.bootstrap}")


def check_register(cfg: Config, f: Findings) -> None:
    """Every metric the gate reads is one evaluate writes; each photo rule has a ceiling (and each ceiling a rule); the
    throughput it reads is one benchmark measures."""
    from facerealism.scoring.photo import photo_limits
    from facerealism.scoring.table4 import metric_names

    r, written = cfg.register, metric_names(cfg)
    read = [(f"register.required.{k}", k) for k in r.required]
    read += [(f"register.below.{k}", k) for k in r.below]
    read += [(f"register.below.{k}", v) for k, v in r.below.items() if isinstance(v, str)]
    read.append(("register.champion_metric", r.champion_metric))
    for key, metric in read:
        if metric not in written:
            near = sorted(n for n in written if n.split(".")[0] == metric.split(".")[0]) or sorted(written)[:6]
            f.error(f"{key}: metric {metric!r} is never written by evaluate (evaluate.spaces={list(cfg.evaluate.spaces)}, "
                    f"bootstrap={cfg.evaluate.bootstrap}); it writes e.g. {', '.join(near[:6])}")
    try:
        photo_limits(cfg)
    except UserError as e:
        f.error(str(e))
    size = r.throughput_size or cfg.benchmark.sizes[0]
    if size not in cfg.benchmark.sizes:
        f.error(f"register.throughput_size={size} is not one of benchmark.sizes {cfg.benchmark.sizes}: the gate "
                f"would find no throughput")
    uri = cfg.paths.mlflow_uri
    if not uri.startswith(("sqlite:///", "http://", "https://", "file:", "postgresql", "mysql")):
        f.error(f"paths.mlflow_uri={uri!r}: expected sqlite:///FILE, http(s)://HOST or a database URL")
    elif uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).resolve().parent.is_dir():
        f.error(f"paths.mlflow_uri={uri!r}: the folder of the database does not exist")
    if not r.model_name or any(c in r.model_name for c in "/:@"):
        f.error(f"register.model_name={r.model_name!r}: a registered model name without '/', ':' or '@'")
    f.note("register", f"model {r.model_name} at {uri}; gate reads {len(read)} metric(s), "
                       f"check_controls={r.check_controls}")


def check_resources(cfg: Config, f: Findings, machine: Machine) -> None:
    """The dataset's size against the batch size and the split fractions; disk and RAM against `machine`; the
    GPU-hours printed (at an assumed speed, ASSUMED_TFLOPS)."""
    t, s, n = cfg.train, cfg.split, estimate(cfg)
    dataset = (f"{n.pairs} pairs (prompts.n_enriched + prompts.n_baseline) x (1 - split.holdout_fraction "
               f"{s.holdout_fraction:g} - split.validation_fraction {s.validation_fraction:g})")
    if n.train_pairs < 2:
        f.error(f"{dataset} leave ~{n.train_pairs:.1f} training pairs; train needs at least 2: raise prompts.n_enriched")
    if t.batch_size > n.train_pairs:
        f.error(f"train.batch_size={t.batch_size} is larger than the ~{n.train_pairs:.0f} training pairs ({dataset}); "
                f"lower train.batch_size or raise prompts.n_enriched")
    if n.test_pairs < 2:
        f.error(f"{n.pairs} pairs (prompts.n_enriched + prompts.n_baseline) x split.holdout_fraction "
                f"{s.holdout_fraction:g} leave ~{n.test_pairs:.1f} test pairs; evaluate's C2ST needs at least 2: "
                f"raise split.holdout_fraction or prompts.n_enriched")
    side = f"{n.side} px"
    if n.train_ram_bytes > machine.ram_bytes:
        if t.num_workers == 0:
            f.error(f"batches of train.batch_size={t.batch_size} at {side} need ~{n.train_ram_bytes / GB:,.1f} GB, "
                    f"this machine has {machine.ram_bytes / GB:,.0f} GB; lower train.batch_size")
        else:
            f.error(f"train.num_workers={t.num_workers} worker processes with batches of train.batch_size="
                    f"{t.batch_size} at {side} need ~{n.train_ram_bytes / GB:,.1f} GB, this machine has "
                    f"{machine.ram_bytes / GB:,.0f} GB; lower train.num_workers")
    if n.disk_bytes > machine.disk_free_bytes:
        f.error(f"the {n.images_to_render:,} images still to render (PNG, {cfg.generate.size} px) and two checkpoints need "
                f"~{n.disk_bytes / GB:,.0f} GB, {machine.disk_where} has {machine.disk_free_bytes / GB:,.0f} GB free; "
                f"point paths.data at a larger disk or lower prompts.n_enriched")
    gpu = n.generate_gpu_hours
    f.note("resources", f"{n.pairs:,} pairs at {cfg.generate.size} px (~{n.train_pairs:,.0f} train, ~{n.test_pairs:,.0f}"
                        f" test); disk ~{n.disk_bytes / GB:,.1f} GB ({machine.disk_free_bytes / GB:,.0f} GB free at "
                        f"{machine.disk_where}); train RAM ~{n.train_ram_bytes / GB:,.1f} GB "
                        f"({'decoded per batch' if t.num_workers == 0 else f'{t.num_workers} decode workers'}; "
                        f"machine {machine.ram_bytes / GB:,.0f} GB)")
    f.note("resources", f"GPU-hours at an assumed {ASSUMED_TFLOPS:g} TFLOP/s ({ASSUMED_UTILISATION:.0%} of an H100's "
                        f"bf16 peak): generate "
                        + (f"~{gpu:,.1f} ({n.generate_tflop_per_pair:,.0f} TFLOP a pair)" if gpu is not None else
                           f"not estimated for backend {cfg.generate.backend}")
                        + (f", train ~{n.train_gpu_hours(t.steps):,.1f} ({t.steps:,} steps x "
                           f"{n.train_tflop_per_step:,.2f} TFLOP)" if n.train_tflop_per_step is not None else
                           ", train not estimated (the head does not build)"))


CHECKS = (("generate", check_generate), ("train", check_train), ("evaluate", check_evaluate),
          ("register", check_register))


def preflight(cfg: Config, machine: Machine | None = None) -> Findings:
    """Run every check; returns the findings (errors included, none raised).

    Args:
        machine: what the run may use; None: this machine (Machine.this).
    """
    f = Findings()
    for _, check in CHECKS:
        check(cfg, f)
    check_resources(cfg, f, machine or Machine.this(cfg))
    return f


def require(cfg: Config, machine: Machine | None = None) -> Findings:
    """preflight, raising the first error as one line (and how many more there are)."""
    f = preflight(cfg, machine)
    if f.errors:
        more = f" (+{len(f.errors) - 1} more: run facerealism check)" if len(f.errors) > 1 else ""
        raise UserError(f"preflight: {f.errors[0]}{more}")
    return f
