"""Dask clusters for sharded work: a LocalCluster of single-threaded worker processes, or a running scheduler."""

# Who uses it: flows/generate.py's render shards (through orchestration.scaleout, as Prefect tasks) and evaluate's
# feature shards (plain Dask tasks, stages.evaluate). Both read one address: env FACEREALISM_DASK_ADDRESS, else
# generate.dask_address; without one, a LocalCluster of the stage's `workers` processes.

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from facerealism.config import Config

ADDRESS_ENV = "FACEREALISM_DASK_ADDRESS"

# Dask settings for workers that run one long shard at a time: their periodic housekeeping only takes the GIL away
# from the shard's thread: a stack-sampling profiler every 10 ms, an event-loop tick every 20 ms, memory and system
# monitors every 0.1/0.5 s (`python -m facerealism.bench.shards` measures what that costs; docs/results.md gives the
# figures). The memory monitor stays on (it restarts a worker over its limit).
RENDER_WORKER_DASK_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
}

# glibc's allocator settings in the worker processes, before they start. Dask's nannies set MALLOC_TRIM_THRESHOLD_ to
# 64 KiB (to hand freed memory back at once), and any explicit value turns off glibc's sliding mmap threshold: every
# array above 128 KiB is then mmap'ed and page-faulted afresh, and the feature spaces ran ~1.6x the CPU time in a worker
# that they take in the evaluate process (2.2 s vs 3.5 s on one shard set, 2026-12-06). These two are where glibc's
# sliding thresholds settle after large frees (mmap 32 MiB, trim twice that), which gives back the evaluate process's
# speed. Workers started from a shell set the same two environment variables themselves (docs/scaling-out.md).
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": 32 * 2**20, "MALLOC_TRIM_THRESHOLD_": 64 * 2**20}


def dask_address(cfg: Config) -> str | None:
    """The scheduler of an existing Dask cluster (tcp://host:8786): env FACEREALISM_DASK_ADDRESS, else
    generate.dask_address; None: start a local cluster."""
    return os.environ.get(ADDRESS_ENV) or cfg.generate.dask_address


def local_cluster(env: dict[str, str] | None = None, **kwargs):
    """A distributed.LocalCluster whose workers run under RENDER_WORKER_DASK_CONFIG (the nannies hand it on) and
    WORKER_MALLOC_ENV."""
    import dask
    from distributed import LocalCluster

    malloc = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC_ENV.items()}
    with dask.config.set({**RENDER_WORKER_DASK_CONFIG, **malloc}):
        return LocalCluster(env=env or {}, **kwargs)


@contextlib.contextmanager
def client(cfg: Config, workers: int) -> Iterator[object | None]:
    """A distributed.Client for a stage's shards, closed on exit: to the configured scheduler (dask_address), else
    to a LocalCluster of `workers` single-threaded processes; None (shards run in this process) for 1 worker and
    no scheduler, so the default starts no cluster."""
    address = dask_address(cfg)
    if address is None and workers == 1:
        yield None
        return
    from distributed import Client

    if address:
        with Client(address) as c:
            yield c
        return
    with local_client(workers) as c:
        yield c


@contextlib.contextmanager
def local_client(workers: int) -> Iterator[object]:
    """A distributed.Client on a LocalCluster of `workers` single-threaded processes (any count, 1 included)."""
    from distributed import Client

    with local_cluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c
