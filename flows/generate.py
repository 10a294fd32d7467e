"""Sharded pair generation as one Prefect flow: shards run as parallel Dask tasks, one pipeline per worker.

Where the workers come from (a local cluster or a running scheduler): facerealism.orchestration.scaleout.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from facerealism.config import Config, load_config
from facerealism.orchestration import retry, scaleout
from facerealism.stages import generate


# A shard resumes from its finished pairs, so a retry after a transient fault (retry.is_transient) redoes no work.
@task(cache_policy=NO_CACHE, retries=retry.RETRIES, retry_delay_seconds=retry.RETRY_DELAYS_S,
      retry_condition_fn=retry.retry_transient)
def render_shard(cfg: Config, index: int) -> dict:
    return generate.run_shard(cfg, index, show_progress=False, log=get_run_logger().info)


@task(cache_policy=NO_CACHE)
def load_pipelines(cfg: Config, index: int) -> float:
    return generate.load_backend(cfg, index)


@flow(name="facerealism-generate", log_prints=True)
def generate_shards(cfg: Config) -> dict:
    # 1. (params changed) load the new models on a worker first, so a bad model id fails before old pairs go
    # 2. check output, drop stale renders, clean temporaries -> 3. shards in parallel -> 4. one manifest from disk
    if generate.has_stale_renders(cfg):
        load_pipelines.submit(cfg, 0).result()
    generate.prepare(cfg)
    futures = [render_shard.with_options(task_run_name=f"shard-{i}").submit(cfg, i)
               for i in range(cfg.generate.shards)]
    shards = [f.result() for f in futures]
    return {**generate.finalize(cfg), "shards": shards}


def run(params: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    """Load params, then run the flow on the configured Dask cluster."""
    cfg = scaleout.sharded(load_config(params, overrides))
    return generate_shards.with_options(task_runner=scaleout.generate_runner(cfg))(cfg)


if __name__ == "__main__":
    import sys

    print(run(overrides=sys.argv[1:]))
