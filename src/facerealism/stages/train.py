"""Stage `train`: the head, schnell-like (A) -> dev-like (B), by the trainer of train.model (facerealism.trainers)."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facerealism.config import Config, flatten
from facerealism.config.architectures import generator_kwargs, recipe
from facerealism.data import catalog
from facerealism.data.split import load_images, splits
from facerealism.errors import UserError
from facerealism.files import read_json, write_json
from facerealism.head import enhance_array, save_head
from facerealism.mlops import tracking
from facerealism.precision import Precision, resolve
from facerealism.report.grids import image_grid, save_grid
from facerealism.progress import log_line, progress
from facerealism.trainers import Trainer, build_trainer, checkpoint, make_accelerator, trainer_class
from facerealism.trainers.samplers import FileSampler, Sampler, image_size


def run(cfg: Config) -> dict:
    """Train train.model, then each of train.baselines with the same settings as nested MLflow runs."""
    summary = train(cfg)
    trained = {}
    for model in cfg.train.baseline_models:  # on every rank: each training is one DDP job
        b = train(baseline_config(cfg, model), parent_run_id=summary["mlflow_run_id"], run_name=f"baseline {model}")
        trained[model] = {"head": str(catalog.HEAD.path(baseline_config(cfg, model))), "seconds": b["seconds"],
                          "final_losses": b.get("final_losses")}
    if summary["rank"] != 0:  # rank 0 writes the reports
        return summary
    # Written even when empty: the DVC output exists, and evaluate reads which baselines belong to this run.
    write_json(baselines_dir(cfg) / catalog.BASELINES_JSON, {"model": cfg.train.model, "baselines": trained})
    report = catalog.TRAIN_JSON.path(cfg)
    write_json(report, {**read_json(report), "baselines": trained})
    return {**summary, "baselines": list(trained)}


def output_mode(cfg: Config) -> str:
    """How the head forms its output, in words (MLflow, head.json)."""
    if generator_kwargs(cfg.train).get("detail"):
        return "detail: x + sum_k [band_k(Y) (a_k x + b_k) + c_k band_k(x)]"
    return "residual: clamp(x + body(x))" if cfg.train.residual_output else "tanh: tanh(body(x))"


def recipe_tags(cfg: Config) -> dict[str, str]:
    """MLflow tags naming what this run trains (the run list shows them; mlflow.note.content is its description)."""
    r = recipe(cfg.train)
    return {"facerealism.recipe": r.id, "facerealism.recipe_label": r.label,
            "mlflow.note.content": f"{r.label}: {output_mode(cfg)}; lambda_cyc {cfg.train.lambda_cyc:g}, "
                                   f"lambda_paired {cfg.train.lambda_paired:g}, lr {cfg.train.lr:g}"}


def head_dir(cfg: Config) -> Path:
    return catalog.HEAD.path(cfg)


def checkpoint_dir(cfg: Config) -> Path:
    return catalog.CHECKPOINTS.path(cfg)


def architecture(cfg: Config) -> dict:
    """What a checkpoint must share with the run resuming it (tensor shapes and meaning)."""
    t = cfg.train
    return {"model": t.model, "kwargs": generator_kwargs(t),
            "ndf": t.ndf if trainer_class(t.model).has_discriminators else None}


def load_data(cfg: Config):
    """(train rows, validation rows): the manifest rows only, never the images (the samplers decode each batch from
    its files, so memory does not grow with the dataset); one image is read to check it against train.crop. The
    test split is never read here: only evaluate and register do; validation images feed only the monitoring
    figures (cycle SSIM, sample grids) the sweep ranks by."""
    parts = splits(cfg)
    train_rows, validation_rows = parts["train"], parts["validation"]
    if len(train_rows) < 2:
        raise UserError(f"only {len(train_rows)} training pairs after the held-out split; generate more")
    image_size(train_rows, cfg.train.crop)  # fails before anything is built: images smaller than train.crop
    return train_rows, validation_rows


# train.* keys a resume may change: how long the run goes and how it reports, not what each step computes. A change to
# any other key of the sections below would make the resumed head something neither config describes: refused.
RESUMABLE = {"train.steps", "train.resume", "train.log_every", "train.grid_every", "train.checkpoint_every",
             "train.threads", "train.num_workers", "train.baselines", "train.compile", "train.compile_backend"}
LEARNING_SECTIONS = ("seed", "split", "train")


def resume_changes(checkpointed: dict, current: dict) -> dict[str, list]:
    """key -> [checkpoint's value, this run's value] for every learning-relevant key that differs."""
    old, new = (flatten({k: c[k] for k in LEARNING_SECTIONS if k in c}) for c in (checkpointed, current))
    keys = sorted((old.keys() | new.keys()) - {"train.resume"})  # false when checkpointed, true now: not a change
    return {k: [old.get(k), new.get(k)] for k in keys if old.get(k) != new.get(k)}


def find_resume(cfg: Config) -> tuple[dict, dict, Path] | None:
    """The newest checkpoint, verified and checked against this run's architecture and config; None if there is none.

    Raises:
        UserError: the checkpoint builds another architecture, or this config changes a key outside RESUMABLE.
    """
    found = checkpoint.list_checkpoints(checkpoint_dir(cfg))
    if not found:
        return None
    tensors, meta = checkpoint.load(found[-1])
    mine, theirs = architecture(cfg), meta.get("architecture")
    if theirs != mine:
        raise UserError(f"checkpoint {found[-1]} is for {theirs}, but this run builds {mine}; "
                         f"set train.resume=false to start over or restore the matching train.* params")
    refused = {k: v for k, v in resume_changes(meta.get("config", {}), cfg.dump()).items() if k not in RESUMABLE}
    if refused:
        key, (was, now) = next(iter(refused.items()))
        more = f" (and {len(refused) - 1} more: {', '.join(list(refused)[1:])})" if len(refused) > 1 else ""
        raise UserError(f"train.resume: checkpoint {found[-1].name} was trained with {key}={was!r}, this config has "
                        f"{now!r}{more}; restore it or set train.resume=false to start over")
    return tensors, meta, found[-1]


@contextlib.contextmanager
def mlflow_run(cfg: Config, parent_run_id: str | None, resume_run_id: str | None, run_name: str = "train"):
    """The run this training logs into: the resumed one, a child of a sweep, or a new one."""
    if resume_run_id:
        mlflow = tracking.setup(cfg)
        if mlflow.tracking.MlflowClient().search_runs([mlflow.get_experiment_by_name(cfg.paths.experiment).experiment_id],
                                                     f"attributes.run_id = '{resume_run_id}'"):
            with tracking.run(cfg, "train", run_id=resume_run_id) as active:
                yield active
            return
    if parent_run_id:
        mlflow = tracking.setup(cfg)
        with mlflow.start_run(run_name=run_name, nested=True, parent_run_id=parent_run_id,
                              tags={"facerealism.stage": "train", "git_commit": tracking.git_commit()}) as active:
            yield active
        return
    with tracking.run(cfg, "train") as active:
        yield active


@dataclass
class RunState:
    """Where a run stands besides its nets and RNGs; a checkpoint carries it, a resume restores it."""

    step: int = 0
    run_token: str = field(default_factory=lambda: uuid.uuid4().hex)
    history: list[dict] = field(default_factory=list)
    cycle_tail: list[float] = field(default_factory=list)  # unweighted cycle L1 of the last steps/10 steps
    seconds: float = 0.0  # training time before this process started
    resumed_from: Path | None = None


def make_sampler(cfg: Config, accelerator, train_rows, resume) -> Sampler | FileSampler:
    """Each process draws its own batches; rank 0 keeps the seed so one process matches a plain run."""
    t = cfg.train
    seed = cfg.seed if accelerator.process_index == 0 else [cfg.seed, accelerator.process_index]
    if t.num_workers:
        start = resume[1]["step"] * t.grad_accum if resume else 0  # micro-batches already consumed
        return FileSampler(train_rows, cfg, accelerator.device, seed, start)
    return Sampler(train_rows, cfg, accelerator.device, seed)


def restore(resume, model: Trainer, sampler, accelerator) -> RunState:
    """Load a checkpoint into the trainer, the sampler and the RNGs; returns where the run stood."""
    tensors, meta, resumed_from = resume
    # Each rank continues its own batch stream and RNGs (rank 0's are the checkpoint's plain keys); the pools are shared.
    tensors, meta = checkpoint.for_rank(tensors, meta, accelerator.process_index, accelerator.num_processes)
    model.load_state(tensors, meta["trainer"])
    sampler.set_rng_state(meta["sampler_rng"])  # a FileSampler's data order is a function of the step: set already
    checkpoint.set_rng_state(tensors, meta["rng"])  # last: building the model above consumed RNG
    return RunState(meta["step"], meta["run_token"], meta["history"], meta["cycle_tail"], meta["seconds"],
                    resumed_from)


def save_checkpoint(cfg: Config, accelerator, model: Trainer, sampler, run: RunState, step: int, seconds: float,
                    mlflow_run_id: str | None) -> None:
    """On every rank (they send rank 0 their own RNGs and a digest of their pools); rank 0 alone writes."""
    ranks = checkpoint.gather_ranks(accelerator, *checkpoint.rank_state(model, sampler))
    if not accelerator.is_main_process:
        return
    tensors, trainer_meta = model.state()
    rng_tensors, rng_meta = checkpoint.rng_state()
    rank_tensors, rank_meta = checkpoint.pack_ranks(ranks)
    checkpoint.save(checkpoint_dir(cfg), step, {**tensors, **rng_tensors, **rank_tensors}, {
        **rank_meta, "run_token": run.run_token, "architecture": architecture(cfg), "trainer": trainer_meta,
        "sampler_rng": sampler.rng_state(), "rng": rng_meta, "history": run.history,
        "cycle_tail": run.cycle_tail, "seconds": seconds, "mlflow_run_id": mlflow_run_id, "config": cfg.dump()})


def fit(cfg: Config, accelerator, model: Trainer, sampler, run: RunState, sample: np.ndarray, train_pairs: int,
        mlflow_run_id: str | None) -> tuple[float, float]:
    """The loop: steps run.step+1 .. train.steps, logging, sample grids and checkpoints on the way.

    Returns:
        (seconds of this process's training, seconds of them spent waiting for batches).
    """
    t, is_main, start_step = cfg.train, accelerator.is_main_process, run.step
    window = max(1, t.steps // 10)
    grid_every = t.grid_every or -(-train_pairs // (t.batch_size * t.grad_accum))  # 0: once per epoch
    start = time.perf_counter()
    data_seconds = 0.0
    with progress() as bar:
        task = bar.add_task(f"train [{t.model}]", total=t.steps, completed=start_step)
        for step in range(start_step + 1, t.steps + 1):
            micro = []
            for _ in range(t.grad_accum):
                t0 = time.perf_counter()
                real_A, real_B = sampler.next()
                data_seconds += time.perf_counter() - t0
                with accelerator.accumulate(*model.nets.values()):
                    micro.append(model.optimize_parameters(real_A, real_B))
            losses = {k: float(np.mean([m[k] for m in micro])) for k in micro[0]}
            if is_main and step % grid_every == 0 and step < t.steps:
                tracking.log_image(image_grid([sample, model.preview(sample)], ["schnell", "G(schnell)"]),
                                   "train_samples", step)
            if "cycle_l1" in losses and step > t.steps - window:
                run.cycle_tail.append(losses["cycle_l1"])
            if step % t.log_every == 0 or step == t.steps:
                losses["lr"] = model.schedulers["G"].get_last_lr()[0]
                losses["steps_per_s"] = (step - start_step) / (time.perf_counter() - start)
                run.history.append({"step": step, **losses})
                if is_main:
                    tracking.log_metrics({f"train.{k}": v for k, v in losses.items()}, step=step)
            if step % t.checkpoint_every == 0 and step < t.steps:
                save_checkpoint(cfg, accelerator, model, sampler, run, step,
                                run.seconds + time.perf_counter() - start, mlflow_run_id)
                accelerator.wait_for_everyone()
            bar.advance(task)
    return time.perf_counter() - start, data_seconds


def default_threads() -> int:
    """What train.threads 0 means: OMP_NUM_THREADS where it is set (a machine shared with other jobs, one pytest-xdist
    worker per core), else every CPU this process may use. Two processes of two threads on two cores train ~4x
    slower than they would with one thread each (OpenMP threads spin waiting for each other)."""
    fixed = os.environ.get("OMP_NUM_THREADS", "")
    return int(fixed) if fixed.isdigit() and int(fixed) > 0 else len(os.sched_getaffinity(0))


def train(cfg: Config, parent_run_id: str | None = None, run_name: str = "train") -> dict:
    """Train the configured head, checkpointing full state; save it under models/head.

    Args:
        cfg: the resolved config (train.* picks the model, losses, schedule, resume).
        parent_run_id: log as a nested MLflow run under this one (the sweep).
        run_name: the MLflow run name of a nested run.
    Returns:
        A short summary; the full history goes to reports/train.json.
    """
    from accelerate.utils import set_seed

    t = cfg.train
    # Always set, also for 0: OpenMP's thread count is per calling thread, and the pipeline runs this stage in a
    # worker thread of its own, which otherwise trains on one core.
    torch.set_num_threads(t.threads or default_threads())
    train_rows, validation_rows = load_data(cfg)
    resume = find_resume(cfg) if t.resume else None  # verified before anything is built or written
    set_seed(cfg.seed)
    precision = resolve(t.mixed_precision)
    accelerator = make_accelerator(precision, t.grad_accum, t.compile_backend if t.compile else None)
    model = build_trainer(cfg, accelerator)
    sampler = make_sampler(cfg, accelerator, train_rows, resume)
    run = restore(resume, model, sampler, accelerator) if resume else RunState()
    start_step = run.step

    is_main = accelerator.is_main_process
    resume_run = resume[1].get("mlflow_run_id") if resume else None
    run_ctx = mlflow_run(cfg, parent_run_id, resume_run, run_name) if is_main else contextlib.nullcontext()
    with run_ctx as mlrun:
        run_id = mlrun.info.run_id if is_main else None
        changed = resume_changes(resume[1].get("config", {}), cfg.dump()) if resume else {}
        if is_main:
            log_line(f"train [{t.model}]: precision {precision.label}: {precision.why}")
            log_start(cfg, model, run, changed, len(train_rows), len(validation_rows), precision,
                      continued=resume_run is not None and run_id == resume_run)
        held = validation_rows if len(validation_rows) else train_rows
        sample = load_images(held["schnell_path"][:8])
        elapsed, data_seconds = fit(cfg, accelerator, model, sampler, run, sample, len(train_rows), run_id)
        sampler.close()
        summary = run_summary(cfg, accelerator, model, run, start_step, resume is not None, elapsed, data_seconds,
                              len(train_rows), len(validation_rows), run_id, precision)
        if not is_main:
            return summary
        G = model.head()
        log_outcome(cfg, model, G, held, sample, run, summary)
        save_head(G, head_dir(cfg), t.model, generator_kwargs(t),
                  {"config": cfg.dump(), "mlflow_run_id": run_id, "train_pairs": len(train_rows),
                   "validation_pairs": len(validation_rows), "residual_output": t.residual_output,
                   "output_mode": output_mode(cfg), "recipe": recipe(t).id, "recipe_label": recipe(t).label,
                   "loss_terms": model.loss_names, "steps": t.steps, **precision.as_params(""), "resumed_from_step": summary["resumed_from_step"],
                   "resume_changes": changed, **model.params()})
    last = run.history[-1] if run.history else {}
    summary["final_losses"] = {k: round(v, 4) for k, v in last.items() if k in model.loss_names}
    write_json(catalog.TRAIN_JSON.path(cfg), {**summary, "history": run.history})
    return summary


def log_start(cfg: Config, model: Trainer, run: RunState, changed: dict, train_pairs: int, validation_pairs: int,
              precision: Precision, continued: bool) -> None:
    """MLflow, rank 0, before the first step: a new run's config, data sizes and recipe; a resumed run's changes.

    Args:
        changed: {key: (checkpointed value, current value)} of a resume.
        continued: the resume continues the checkpoint's own MLflow run, which already holds the params.
    """
    t = cfg.train
    if not continued:
        tracking.log_config(cfg)
        tracking.log_params({"train_pairs": train_pairs, "validation_pairs": validation_pairs,
                             "output_mode": output_mode(cfg), "recipe": recipe(t).id,
                             **precision.as_params("train.")})
        tracking.set_tags(recipe_tags(cfg))
        if model.params():
            tracking.log_params(model.params())
    if run.resumed_from:
        tracking.log_params({f"resumed_from_step_{run.step}": str(run.resumed_from)})
        # MLflow params are write-once: the run keeps the values it started with; the tags say what changed.
        tracking.set_tags({f"resume.step_{run.step}.{k}": f"{was!r} -> {now!r}" for k, (was, now) in changed.items()})


def run_summary(cfg: Config, accelerator, model: Trainer, run: RunState, start_step: int, resumed: bool,
                elapsed: float, data_seconds: float, train_pairs: int, validation_pairs: int,
                run_id: str | None, precision: Precision) -> dict:
    """The run's short summary, on every rank, once every rank is shown to hold the same weights.

    Every rank must end with rank 0's weights: DDP averaged the same gradients into each. The check gathers from
    all ranks, so every rank calls this.
    """
    t = cfg.train
    trained = t.steps - start_step
    ranks = checkpoint.check_ranks_agree([r for _, r in checkpoint.gather_ranks(accelerator, {}, {
        "rank": accelerator.process_index, "steps": trained, "digest": checkpoint.state_digest(
            {k: model.plain(v) for k, v in model.nets.items()})})])
    return {"model": t.model, "recipe": recipe(t).id, "output_mode": output_mode(cfg), "steps": t.steps,
            "rank": accelerator.process_index, "ranks": ranks, "mlflow_run_id": run_id,
            "resumed_from_step": start_step if resumed else None,
            "seconds": round(run.seconds + elapsed, 1),
            "steps_per_s": round(trained / elapsed, 2) if trained else None,
            "data_wait_fraction": round(data_seconds / elapsed, 4) if trained else None,
            "train_pairs": train_pairs, "validation_pairs": validation_pairs, "precision": precision.label}


def log_outcome(cfg: Config, model: Trainer, G: torch.nn.Module, held, sample: np.ndarray, run: RunState,
                summary: dict) -> None:
    """Rank 0, after the last step: the trainer's final metrics into `summary` and MLflow, and the sample grid.

    Args:
        G: the shipped head (model.head()); held: the rows the previews and final metrics use; sample: (8, h, w, 3).
    """
    rows, labels = [sample, enhance_array(G, sample)], ["schnell", "G(schnell)"]
    for images, label in model.preview_targets(held):
        rows, labels = rows + [images], labels + [label]
    summary.update(model.params())
    final = model.final_metrics(held, run.cycle_tail)
    if final:
        summary.update(final)
        tracking.log_metrics({f"train.{k}": v for k, v in final.items()})
    grid = save_grid(catalog.TRAIN_SAMPLES.path(cfg), rows, labels)
    tracking.log_artifact(grid)
    if summary["data_wait_fraction"] is not None:
        tracking.log_metrics({"train.data_wait_fraction": summary["data_wait_fraction"]})


def baseline_config(cfg: Config, model: str) -> Config:
    """The same training settings with another architecture, in models/baselines/MODEL and reports/baselines/MODEL."""
    out = cfg.model_copy(deep=True)
    out.train.model, out.train.baselines = model, []
    out.paths.models = str(baselines_dir(cfg) / model)
    out.paths.reports = str(Path(cfg.paths.reports) / "baselines" / model)
    return out


def baselines_dir(cfg: Config) -> Path:
    return catalog.BASELINES.path(cfg)
