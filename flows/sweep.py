"""The lambda_cyc x lr sweep as a Prefect flow: one task per trial, trials in parallel processes.

    python -m flows.sweep [--params params.yaml] [--set train.sweep.steps=300 ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from facerealism import env, sweep
from facerealism.config import load_config

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
    """Run the flow with train.sweep.workers single-threaded worker processes.

    Processes, not threads: torch's global RNG/threads and accelerate's state are per process.
    """
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    workers = load_config(params, overrides).train.sweep.workers
    if workers == 1:  # sequential: one thread, no cluster to start
        return sweep_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))(params, overrides)
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                            "dashboard_address": None})
    return sweep_flow.with_options(task_runner=runner)(params, overrides)


def main(params: Annotated[Path, typer.Option("--params", "-p")] = Path("params.yaml"),
         set_: Annotated[list[str] | None, typer.Option("--set", "-s", help="e.g. train.sweep.steps=300")] = None) -> None:
    """Run the sweep and print its table (the report is in reports/sweep.json)."""
    from rich.console import Console

    report = run_sweep(str(params), list(set_ or []))
    Console().print(sweep.table(report))


if __name__ == "__main__":
    typer.run(main)
