"""Pairs/s of the flux backend on tiny FLUX: pipelines loaded once per backend vs reloaded for every pair."""

# Run: python -m facerealism.bench.flux [--pairs 16] [--size 32] [--batch 8 16] [--threads 1]
# What it shows: the cost the backend avoids by loading each pipeline once and reusing it, and
# what reuse makes possible on top: batching prompts (generate.flux.batch_size), which a worker
# that reloads per pair cannot do. On tiny models a render is cheap, so the reload ratio is mostly
# load overhead (reading safetensors, building modules); with real 12B weights the load (tens of
# seconds) dwarfs a render even more.

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd


def _rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"b{i}" for i in range(n)],
                         "prompt": [f"A professional portrait of person {i}" for i in range(n)],
                         "seed": list(range(n))})


def measure(schnell: Path, dev: Path, pairs: int = 8, size: int = 32, batches: tuple[int, ...] = (8,)) -> dict:
    """Pairs/s for each strategy with the paper's step counts (fast 4, slow 50 at strength 0.7).

    Returns:
        {"loaded_once": pairs/s one pair per call, "batched": {prompts per call: pairs/s} for each of `batches`,
         "reloaded_per_pair": pairs/s, "load_s": seconds per reload of both pipelines,
         "render_s": seconds per pair with loaded pipelines, one pair per call}
    """
    from facerealism.backends.flux import FluxBackend
    from facerealism.config import Config

    cfg = Config()
    cfg.generate.size = size
    cfg.generate.flux.fast_model, cfg.generate.flux.slow_model = str(schnell), str(dev)
    rows = _rows(pairs)
    list(FluxBackend(cfg).generate(rows.iloc[:1]))  # warm-up: first-call costs belong to neither side

    t = time.perf_counter()
    backend = FluxBackend(cfg)
    for i in range(pairs):
        list(backend.generate(rows.iloc[i:i + 1]))
    once = pairs / (time.perf_counter() - t)

    t = time.perf_counter()
    load = 0.0
    for i in range(pairs):
        backend = FluxBackend(cfg)  # a fresh backend loads both pipelines again
        t_load = time.perf_counter()
        backend.load()
        load += time.perf_counter() - t_load
        list(backend.generate(rows.iloc[i:i + 1]))
    reloaded = pairs / (time.perf_counter() - t)

    batched = {}
    for batch in batches:
        batched_cfg = cfg.model_copy(deep=True)
        batched_cfg.generate.flux.batch_size = batch
        backend = FluxBackend(batched_cfg)
        backend.load()
        t = time.perf_counter()
        assert len(list(backend.generate(rows))) == pairs
        batched[batch] = pairs / (time.perf_counter() - t)
    # Where the reload time goes: the ratio is (load + render) / render per pair.
    return {"loaded_once": once, "batched": batched, "reloaded_per_pair": reloaded,
            "load_s": load / pairs, "render_s": 1 / once}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m facerealism.bench.flux", description=__doc__)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 16], help="prompts per call, one row each")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; tiny ops are too small to split (0: torch's default)")
    args = parser.parse_args(argv)

    import torch
    from diffusers.utils import logging as diffusers_logging
    from rich.console import Console
    from rich.table import Table
    from transformers.utils import logging as transformers_logging

    from facerealism.backends.tiny_flux import build_tiny_flux

    if args.threads:
        torch.set_num_threads(args.threads)
    for lib in (diffusers_logging, transformers_logging):
        lib.disable_progress_bar()  # one load bar per pair would bury the table
    with tempfile.TemporaryDirectory() as tmp:
        schnell = build_tiny_flux(Path(tmp) / "schnell", seed=0, variant="schnell")
        dev = build_tiny_flux(Path(tmp) / "dev", seed=10, variant="dev")
        r = measure(schnell, dev, args.pairs, args.size, args.batch)

    table = Table(title=f"flux backend on tiny FLUX, {args.size} px, {args.pairs} pairs, "
                        f"{torch.get_num_threads()} thread(s), fast 4 + slow 50 steps (strength 0.7)")
    for col in ("strategy", "pairs/s", "vs reloaded per pair"):
        table.add_column(col, justify="right")
    reload = r["reloaded_per_pair"]
    rows = [("reloaded per pair", reload), ("loaded once, 1 prompt per call", r["loaded_once"])]
    rows += [(f"loaded once, {b} prompts per call", v) for b, v in r["batched"].items()]
    for name, value in rows:
        table.add_row(name, f"{value:.2f}", f"{value / reload:.1f}x")
    table.caption = f"one reload of both pipelines: {r['load_s']:.3f} s; one render, 1 prompt: {r['render_s']:.3f} s"
    Console().print(table)


if __name__ == "__main__":
    main()
