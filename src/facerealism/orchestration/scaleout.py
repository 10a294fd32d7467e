"""Where Prefect tasks run: the Dask task runners of the generate and sweep flows, and their worker settings."""

# Where the generate workers come from:
#   - here / one machine: a LocalCluster of `generate.workers` processes, one thread each;
#   - many GPUs or nodes: an existing Dask scheduler (`generate.dask_address`, or env
#     FACEREALISM_DASK_ADDRESS), with one `dask worker --nworkers 1 --nthreads 1` per GPU started
#     with CUDA_VISIBLE_DEVICES=<gpu>; a worker that sees several GPUs puts shard i on GPU i % count.
# Each worker process keeps its loaded pipelines between shards (stages.generate.cached_backend).
# The address, the workers' Dask settings and the LocalCluster are facerealism.cluster's, shared with evaluate.

from __future__ import annotations

from facerealism import cluster
from facerealism.cluster import RENDER_WORKER_DASK_CONFIG
from facerealism.config import Config


def dask_env(config: dict = RENDER_WORKER_DASK_CONFIG) -> dict[str, str]:
    """The same settings as DASK_* environment variables, for worker processes started from a shell or a pod."""
    return {"DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value) for key, value in config.items()}


def local_cluster(**kwargs):
    """A LocalCluster whose workers report to this flow's Prefect API: a temporary (ephemeral) server has no
    fixed address, and without it every worker process starts a temporary server of its own (~10 s each)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    env = {"PREFECT_API_URL": str(ctx.client.api_url)} if ctx and ctx.client else {}
    return cluster.local_cluster(env=env, **kwargs)


def generate_runner(cfg: Config):
    """The Dask task runner for generate's shards: the configured scheduler, else a local cluster of
    `generate.workers` single-threaded processes."""
    from prefect_dask import DaskTaskRunner

    address = cluster.dask_address(cfg)
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_class=local_cluster,
                          cluster_kwargs={"n_workers": cfg.generate.workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


def sharded(cfg: Config) -> Config:
    """cfg with at least one shard per worker: fewer shards than workers would leave workers idle."""
    if cfg.generate.shards >= cfg.generate.workers:
        return cfg
    return cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"shards": cfg.generate.workers})})


def sweep_runner(workers: int):
    """One thread for a sequential sweep, else `workers` single-threaded worker processes.

    Processes, not threads: torch's global RNG/threads and accelerate's state are per process.
    """
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    if workers == 1:  # no cluster to start
        return ThreadPoolTaskRunner(max_workers=1)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})
