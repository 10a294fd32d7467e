"""Pairs/s of sharded generation (flows/generate.py) on tiny FLUX: 1 Dask worker vs 2, side by side in one run."""

# Run: python -m facerealism.bench.shards [--pairs 64] [--size 32] [--slow-steps 50]
# Two layouts, each with 1 and then 2 workers, all flows reporting to one Prefect server started here:
#   cold  - the flow starts its own LocalCluster (the default of `make run`): each new worker process imports
#           torch/diffusers and loads its pipelines before rendering;
#   warm  - a long-lived cluster (`dask scheduler` + `dask worker` processes, the scale-out layout of
#           infra/dask-cluster.yaml) whose workers loaded their pipelines in an earlier flow (discarded warm-up).
# Three figures per layout and worker count:
#   render pairs/s  = pairs / the slowest shard's render time (load excluded);
#   shard pairs/s   = pairs / the slowest shard's time including its load;
#   wall pairs/s    = pairs / the whole flow (cluster start if any, shards, manifest): what a run costs end to end.
# The load average before and after is printed too: on a shared machine other people's jobs take
# cores away from the second worker, and the ratio means little without it.

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def measure(root: Path, schnell: Path, dev: Path, workers: int, pairs: int, size: int, slow_steps: int,
            address: str | None = None, shards: int | None = None) -> dict:
    from facerealism.config import load_config
    from facerealism.stages import run_stage
    from flows.generate import run

    overrides = [
        "generate.backend=flux", f"generate.size={size}", f"train.crop={min(size, 32)}",
        f"prompts.n_enriched={pairs}", "prompts.n_baseline=0", f"generate.flux.fast_model={schnell}",
        f"generate.flux.slow_model={dev}", f"generate.flux.slow_steps={slow_steps}", f"generate.workers={workers}",
        f"generate.shards={shards or workers}", "generate.sample_pairs=0",
        f"paths.data={root}/w{workers}/data", f"paths.reports={root}/w{workers}/reports",
    ] + ([f"generate.dask_address={address}"] if address else [])
    params = str(Path(__file__).resolve().parents[3] / "params.yaml")
    run_stage("prompts", load_config(params, overrides))
    t = time.perf_counter()
    result = run(params, overrides)
    wall = time.perf_counter() - t
    assert result["pairs"] == pairs, result
    shards = result["shards"]
    return {
        "render": pairs / max(s["seconds"] - s["load_seconds"] for s in shards),
        "shard": pairs / max(s["seconds"] for s in shards),
        "wall": pairs / wall,
        "load_s": max(s["load_seconds"] for s in shards),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m facerealism.bench.shards", description=__doc__)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--slow-steps", type=int, default=50)
    args = parser.parse_args(argv)
    # One thread per worker process: 2 workers x 1 thread is the comparison, not thread oversubscription.
    os.environ["OMP_NUM_THREADS"] = "1"

    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from rich.console import Console
    from rich.table import Table

    from facerealism.bench import servers
    from facerealism.backends.tiny_flux import build_tiny_flux

    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        schnell = build_tiny_flux(root / "schnell", seed=0, variant="schnell")
        dev = build_tiny_flux(root / "dev", seed=10, variant="dev")
        prefect = servers.start_prefect_server(root / "prefect", postgres=False)
        try:
            with temporary_settings({PREFECT_API_URL: prefect.api_url}):
                # Warm-up, discarded: the first flow pays one-off costs (Prefect's database, cold file caches)
                # that would otherwise be charged to the 1-worker run and flatter the speed-up.
                measure(root / "warmup", schnell, dev, 1, 2, args.size, args.slow_steps)
                for w in (1, 2):
                    results["cold", w] = measure(root / "cold", schnell, dev, w, args.pairs, args.size,
                                                 args.slow_steps)
                for w in (1, 2):
                    with servers.start_dask_cluster(w, env={"PREFECT_API_URL": prefect.api_url}) as cluster:
                        # Every worker loads its pipelines in a discarded flow first (2 shards per worker).
                        measure(root / f"warm-up{w}", schnell, dev, w, 4 * w, args.size, args.slow_steps,
                                cluster.address, shards=2 * w)
                        results["warm", w] = measure(root / "warm", schnell, dev, w, args.pairs, args.size,
                                                     args.slow_steps, cluster.address)
                APILogWorker.drain_all(timeout=5)  # send the flows' last log lines while the server still listens
        finally:
            servers.stop_prefect_server(prefect)
    load_after = os.getloadavg()

    table = Table(title=f"sharded generation on tiny FLUX: {args.pairs} pairs, {args.size} px, fast 4 + slow "
                        f"{args.slow_steps} steps (strength 0.7); {os.cpu_count()} CPU cores; load average "
                        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after")
    for col in ("", "1 worker", "2 workers", "speed-up"):
        table.add_column(col, justify="right")
    for layout in ("cold", "warm"):
        for key, label in (("render", "render pairs/s (load excluded)"), ("shard", "shard pairs/s (incl. load)"),
                           ("wall", "wall pairs/s (whole flow)")):
            one, two = results[layout, 1][key], results[layout, 2][key]
            table.add_row(f"{layout}: {label}", f"{one:.2f}", f"{two:.2f}", f"{two / one:.2f}x")
        table.add_row(f"{layout}: pipeline load per worker (s)", f"{results[layout, 1]['load_s']:.1f}",
                      f"{results[layout, 2]['load_s']:.1f}", "", end_section=True)
    Console().print(table)


if __name__ == "__main__":
    main()
