"""The lambda_cyc x lr sweep as a Prefect flow: one task per trial, trials in parallel processes.

Run it with `facerealism sweep [--set sweep.steps=300 ...]`.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from facerealism import env, sweep
from facerealism.config import load_config
from facerealism.orchestration import scaleout

env.configure()


@task(cache_policy=NO_CACHE)
def trial(cfg, cell: dict, parent_run_id: str) -> dict:
    return sweep.run_trial(cfg, cell, parent_run_id)


@flow(name="facerealism-sweep", log_prints=True)
def sweep_flow(params: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    cfg = load_config(params, overrides)
    # 1. parent MLflow run -> 2. trials in parallel (nested runs) -> 3. report
    parent = sweep.start(cfg)
    futures = [trial.with_options(task_run_name=cell["name"]).submit(cfg, cell, parent) for cell in sweep.trials(cfg)]
    return sweep.finish(cfg, [f.result() for f in futures], parent)


def run_sweep(params: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    """Run the flow on sweep.workers single-threaded worker processes (facerealism.orchestration.scaleout.sweep_runner)."""
    workers = load_config(params, overrides).sweep.workers
    return sweep_flow.with_options(task_runner=scaleout.sweep_runner(workers))(params, overrides)
