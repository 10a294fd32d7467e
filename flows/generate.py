"""Sharded pair generation as one Prefect flow: shards run as parallel Dask tasks, one pipeline per worker."""

# Where the workers come from:
#   - here / one machine: a LocalCluster of `generate.workers` processes, one thread each;
#   - many GPUs or nodes: an existing Dask scheduler (`generate.dask_address`, or env
#     FACEREALISM_DASK_ADDRESS), with one `dask worker --nworkers 1 --nthreads 1` per GPU started
#     with CUDA_VISIBLE_DEVICES=<gpu>; a worker that sees several GPUs puts shard i on GPU i % count.
# Each worker process keeps its loaded pipelines between shards (stages.generate.cached_backend).

from __future__ import annotations

import os

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_dask import DaskTaskRunner

from facerealism import faults
from facerealism.config import Config, load_config
from facerealism.stages import generate


def local_cluster(**kwargs):
    """A LocalCluster whose workers report to this flow's Prefect API: a temporary (ephemeral) server has no
    fixed address, and without it every worker process starts a temporary server of its own (~10 s each)."""
    import dask
    from distributed import LocalCluster
    from prefect.context import FlowRunContext

    from facerealism.servers import RENDER_WORKER_DASK_CONFIG

    ctx = FlowRunContext.get()
    env = {"PREFECT_API_URL": str(ctx.client.api_url)} if ctx and ctx.client else {}
    with dask.config.set(RENDER_WORKER_DASK_CONFIG):  # the nannies hand this config to their workers
        return LocalCluster(env=env, **kwargs)


def dask_runner(cfg: Config) -> DaskTaskRunner:
    address = os.environ.get("FACEREALISM_DASK_ADDRESS") or cfg.generate.dask_address
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_class=local_cluster,
                          cluster_kwargs={"n_workers": cfg.generate.workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


# A shard resumes from its finished pairs, so a retry after a transient fault (faults.is_transient) redoes no work.
@task(cache_policy=NO_CACHE, retries=faults.RETRIES, retry_delay_seconds=faults.RETRY_DELAYS_S,
      retry_condition_fn=faults.retry_transient)
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
    cfg = load_config(params, overrides)
    if cfg.generate.shards < cfg.generate.workers:
        cfg.generate.shards = cfg.generate.workers  # fewer shards than workers would leave workers idle
    return generate_shards.with_options(task_runner=dask_runner(cfg))(cfg)


if __name__ == "__main__":
    import sys

    print(run(overrides=sys.argv[1:]))
