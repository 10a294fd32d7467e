"""The whole pipeline as one Prefect flow: the DAG of dvc.yaml, stages as concurrent tasks, up-to-date ones skipped."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from facerealism.config import load_config
from facerealism.mlops import approval as human
from facerealism.orchestration import approval, dag, retry


@task(cache_policy=NO_CACHE, retries=retry.RETRIES, retry_delay_seconds=retry.RETRY_DELAYS_S,
      retry_condition_fn=retry.retry_transient)
def stage(name: str, cfg, plan: dag.Plan) -> dict:
    return dag.run_or_skip(name, cfg, plan, log=get_run_logger().info)


@task(cache_policy=NO_CACHE, retries=retry.RETRIES, retry_delay_seconds=retry.RETRY_DELAYS_S,
      retry_condition_fn=retry.retry_transient)
def finish(cfg, plan: dag.Plan) -> dict:
    return dag.finish(cfg, plan)


@task(cache_policy=NO_CACHE, retries=retry.RETRIES, retry_delay_seconds=retry.RETRY_DELAYS_S,
      retry_condition_fn=retry.retry_transient)
def artifacts(cfg) -> list[str]:
    return dag.publish_artifacts(cfg)


# Threads, not processes: stages are long and few, and share one dvc.lock; at most audit, train and one more at once.
@flow(name="facerealism-pipeline", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=3))
def pipeline(params: str = "params.yaml", overrides: list[str] | None = None, force: bool = False) -> dict:
    cfg = load_config(params, overrides)
    # 1. the DAG from dvc.yaml, and whether DVC may skip and record stages
    plan = dag.plan(params, overrides, force)
    if plan.reason:
        print(plan.reason)
    # 2. every stage once the ones it waits for finished: audit ∥ train, evaluate ∥ benchmark where allowed
    futures = {}
    for name in plan.graph:
        futures[name] = stage.with_options(name=name, task_run_name=name).submit(
            name, cfg, plan, wait_for=[futures[n] for n in plan.wait_for(name)])
    results = {name: f.result() for name, f in futures.items()}
    # 3. report.html from evaluate + benchmark, then dvc push -> 4. Table 4, promotion, validation as artifacts
    results["record"] = finish(cfg, plan)
    results["artifacts"] = {"keys": artifacts(cfg)}
    # 5. register.human_approval: the run pauses for a person's approve/reject before @champion moves
    if cfg.register.human_approval:
        results["approval"] = approve(params, overrides)
    if plan.up_to_date:
        print(f"up to date (outputs reused): {', '.join(plan.up_to_date)}")
    return results


@flow(name="facerealism-approval", log_prints=True)
def approve(params: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    cfg = load_config(params, overrides)
    # 1. the register stage's decision, if it waits for a person
    decision = human.pending(cfg)
    if decision is None:
        return {"asked": False}
    # 2. pause: the Prefect UI shows the form with the gate's checks and people's ratings
    answer = approval.ask(human.summary(cfg, decision))
    # 3. approved -> @champion; rejected -> stays challenger, the reason kept as a tag
    return human.decide(cfg, decision["version"], answer.approve, answer.reason)


if __name__ == "__main__":
    pipeline()
