"""The paper's hyper-parameter sweep over lambda_cyc x lr: trial configs, one trial, and the report."""

from __future__ import annotations

import itertools
from pathlib import Path

from rich.table import Table

from facerealism.config import Config
from facerealism.config.architectures import CYCLE_MODELS, recipe
from facerealism.data import catalog
from facerealism.errors import UserError
from facerealism.files import write_json
from facerealism.mlops import tracking


def trials(cfg: Config) -> list[dict]:
    """The grid, one dict per cell: {"name", "lambda_cyc", "lr"}."""
    s = cfg.sweep
    return [{"name": f"cyc{cyc:g}_lr{lr:g}", "lambda_cyc": cyc, "lr": lr}
            for cyc, lr in itertools.product(s.lambda_cyc, s.lr)]


def trial_config(cfg: Config, trial: dict) -> Config:
    """The base config with this cell's values; each trial gets its own models/ and reports/ folders."""
    out = cfg.model_copy(deep=True)
    out.train.lambda_cyc, out.train.lr = trial["lambda_cyc"], trial["lr"]
    out.train.steps = cfg.sweep.steps or cfg.train.steps
    out.train.resume = False
    out.paths.models = str(Path(cfg.paths.models) / "sweep" / trial["name"])
    out.paths.reports = str(Path(cfg.paths.reports) / "sweep" / trial["name"])
    return out


def start(cfg: Config) -> str:
    """Open the parent MLflow run the trials nest under; returns its id."""
    if cfg.train.model not in CYCLE_MODELS:
        raise UserError(f"the sweep tunes the CycleGAN losses; train.model={cfg.train.model!r} has no cycle loss")
    mlflow = tracking.setup(cfg)
    r = recipe(cfg.train)  # the recipe every trial varies lambda_cyc x lr around
    run = mlflow.start_run(run_name="sweep", tags={"facerealism.stage": "sweep", "git_commit": tracking.git_commit(),
                                                   "facerealism.recipe": r.id, "facerealism.recipe_label": r.label})
    tracking.log_config(cfg)
    mlflow.end_run()  # children attach by parent_run_id from other processes; the parent need not stay active
    return run.info.run_id


def run_trial(cfg: Config, trial: dict, parent_run_id: str) -> dict:
    """Train one cell as a nested MLflow run; returns its selection metrics."""
    from facerealism.stages.train import train

    tcfg = trial_config(cfg, trial)
    summary = train(tcfg, parent_run_id=parent_run_id, run_name=trial["name"])
    ssim = summary["validation_cycle_ssim"]
    return {**trial, "steps": tcfg.train.steps, "final_cycle_l1": summary["final_cycle_l1"],
            "validation_cycle_ssim": ssim, "failed": ssim < cfg.sweep.min_cycle_ssim,
            "head": str(catalog.HEAD.path(tcfg))}


def finish(cfg: Config, results: list[dict], parent_run_id: str) -> dict:
    """Pick the winner (lowest final cycle loss among trials that kept the content) and write reports/sweep.json."""
    ok = [r for r in results if not r["failed"]]
    best = min(ok, key=lambda r: r["final_cycle_l1"]) if ok else None
    report = {"criterion": "lowest final cycle L1 (unweighted) among trials with "
                           f"holdout SSIM(x, F(G(x))) >= {cfg.sweep.min_cycle_ssim}",
              "best": best, "trials": results, "mlflow_parent_run_id": parent_run_id}
    write_json(catalog.SWEEP_JSON.path(cfg), report)
    mlflow = tracking.setup(cfg)
    with mlflow.start_run(run_id=parent_run_id):
        tracking.log_metrics({"failed_trials": len(results) - len(ok)})
        if best:
            tracking.log_params({"best": best["name"]})
            tracking.log_metrics({"best.final_cycle_l1": best["final_cycle_l1"],
                                  "best.validation_cycle_ssim": best["validation_cycle_ssim"]})
    return report


def table(report: dict) -> Table:
    t = Table(title="sweep: lambda_cyc x lr")
    for col in ("trial", "lambda_cyc", "lr", "final cycle L1", "cycle SSIM", "status"):
        t.add_column(col)
    best = (report["best"] or {}).get("name")
    for r in report["trials"]:
        status = "failed (SSIM)" if r["failed"] else ("best" if r["name"] == best else "ok")
        t.add_row(r["name"], f"{r['lambda_cyc']:g}", f"{r['lr']:g}", f"{r['final_cycle_l1']:.4f}",
                  f"{r['validation_cycle_ssim']:.3f}", status)
    return t
