"""The whole pipeline as one Prefect flow: one task per stage, in dependency order."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from facerealism.config import load_config
from facerealism.ops import record_outputs
from facerealism.stages import run_stage


@task(cache_policy=NO_CACHE)
def stage(name: str, cfg) -> dict:
    return run_stage(name, cfg)


@task(cache_policy=NO_CACHE)
def record(params: str, overrides: list[str] | None) -> dict:
    return record_outputs(params, overrides)


@flow(name="facerealism-pipeline", log_prints=True)
def pipeline(params: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    cfg = load_config(params, overrides)
    results = {}
    for name in ("prompts", "generate", "validate", "audit", "train", "evaluate", "benchmark", "register"):
        # 1. prompts -> 2. generate -> 3. validate -> 4. audit -> 5. train -> 6. evaluate -> 7. benchmark -> 8. register
        results[name] = stage.with_options(name=name, task_run_name=name)(name, cfg)
    # 9. record: only after every stage succeeded, dvc.lock takes the outputs and the DVC remote gets them.
    results["record"] = record(params, overrides)
    return results


if __name__ == "__main__":
    pipeline()
