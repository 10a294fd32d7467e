"""Pairs/s of sharded generation (flows/generate.py) on tiny FLUX: 1 Dask worker vs 2, side by side in one run."""

# Run: python -m facerealism.backends.shard_bench [--pairs 32] [--size 32] [--slow-steps 50]
# Each worker process loads its own pipelines (import + from_pretrained) before rendering, so
# three figures are printed per worker count:
#   render pairs/s  = pairs / the slowest shard's render time (load excluded): what scaling buys
#                     in a long run, where the one-off load is amortised;
#   shard pairs/s   = pairs / the slowest shard's time including its load;
#   wall pairs/s    = pairs / the whole flow (temporary Prefect server, Dask cluster start, shards,
#                     manifest): what a short run costs end to end.
# The load average before and after is printed too: on a shared machine other people's jobs take
# cores away from the second worker, and the ratio means little without it.

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def measure(root: Path, schnell: Path, dev: Path, workers: int, pairs: int, size: int, slow_steps: int) -> dict:
    from facerealism.config import load_config
    from facerealism.stages import run_stage
    from flows.generate import run

    overrides = [
        "generate.backend=flux", f"generate.size={size}", f"train.crop={min(size, 32)}",
        f"prompts.n_enriched={pairs}", "prompts.n_baseline=0", f"generate.flux.fast_model={schnell}",
        f"generate.flux.slow_model={dev}", f"generate.flux.slow_steps={slow_steps}", f"generate.workers={workers}",
        f"generate.shards={workers}", "generate.sample_pairs=0",
        f"paths.data={root}/w{workers}/data", f"paths.reports={root}/w{workers}/reports",
    ]
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
    parser = argparse.ArgumentParser(prog="python -m facerealism.backends.shard_bench", description=__doc__)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--slow-steps", type=int, default=50)
    args = parser.parse_args(argv)
    # One thread per worker process: 2 workers x 1 thread is the comparison, not thread oversubscription.
    os.environ["OMP_NUM_THREADS"] = "1"

    from rich.console import Console
    from rich.table import Table

    from facerealism.backends.tiny_flux import build_tiny_flux

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        schnell = build_tiny_flux(root / "schnell", seed=0, variant="schnell")
        dev = build_tiny_flux(root / "dev", seed=10, variant="dev")
        # Warm-up, discarded: the first flow pays one-off costs (Prefect's database, cold file caches)
        # that would otherwise be charged to the 1-worker run and flatter the speed-up.
        measure(root / "warmup", schnell, dev, 1, 2, args.size, args.slow_steps)
        results = {w: measure(root, schnell, dev, w, args.pairs, args.size, args.slow_steps) for w in (1, 2)}
    load_after = os.getloadavg()

    table = Table(title=f"sharded generation on tiny FLUX: {args.pairs} pairs, {args.size} px, fast 4 + slow "
                        f"{args.slow_steps} steps (strength 0.7); {os.cpu_count()} CPU cores; load average "
                        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after")
    for col in ("", "1 worker", "2 workers", "speed-up"):
        table.add_column(col, justify="right")
    for key, label in (("render", "render pairs/s (load excluded)"), ("shard", "shard pairs/s (incl. load)"),
                       ("wall", "wall pairs/s (whole flow)")):
        one, two = results[1][key], results[2][key]
        table.add_row(label, f"{one:.2f}", f"{two:.2f}", f"{two / one:.2f}x")
    table.add_row("pipeline load per worker (s)", f"{results[1]['load_s']:.1f}", f"{results[2]['load_s']:.1f}", "")
    Console().print(table)


if __name__ == "__main__":
    main()
